package bridge

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func sampleExport(t *testing.T) []byte {
	t.Helper()
	png := []byte("\x89PNG\r\n\x1a\nbilde")
	messages := []*ExportMessage{
		{EventID: "$1", Sender: "@sikkerchat_g:x", Timestamp: 1, Type: "m.text", Body: "Hei, jeg trenger hjelp", Encrypted: true},
		{EventID: "$2", Sender: "@officer:x", Timestamp: 2, Type: "m.text", Body: "Hei! Du snakker med politiet", Encrypted: true},
		{EventID: "$3", Sender: "@sikkerchat_g:x", Timestamp: 3, Type: "m.image", Body: "bilde.png", File: "files/001-bilde.png", FileSHA: sha256Hex(png), Encrypted: true},
	}
	audit := []*AuditRow{{Seq: 1, Actor: "@officer:x", Action: AuditCreate, ConversationID: "c1"}}
	data, err := AssembleExport(&Conversation{ID: "c1", RoomID: "!r:x"}, "@officer:x", messages, map[string][]byte{"files/001-bilde.png": png}, audit)
	require.NoError(t, err)
	return data
}

// rewrite changes one file of a package the way a forger would: a valid ZIP
// with different contents.
func rewrite(t *testing.T, data []byte, name string, change func([]byte) []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		content, err := io.ReadAll(rc)
		require.NoError(t, err)
		if f.Name == name {
			content = change(content)
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Store})
		require.NoError(t, err)
		_, err = w.Write(content)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func TestVerifyExport(t *testing.T) {
	data := sampleExport(t)
	require.Empty(t, VerifyExportBytes(data))

	edited := rewrite(t, data, "transcript.json", func(b []byte) []byte {
		return bytes.Replace(b, []byte("trenger hjelp"), []byte("trenger ingen"), 1)
	})
	problems := strings.Join(VerifyExportBytes(edited), "\n")
	require.Contains(t, problems, "transcript.json was changed")
	require.Contains(t, problems, "message 1 ($1) was changed")

	swapped := rewrite(t, data, "files/001-bilde.png", func(b []byte) []byte { return append(b, '!') })
	require.Contains(t, strings.Join(VerifyExportBytes(swapped), "\n"), "files/001-bilde.png was changed")

	for i := range data {
		flipped := bytes.Clone(data)
		flipped[i] ^= 0x01
		require.NotEmpty(t, VerifyExportBytes(flipped), "a change of byte %d must be caught", i)
	}
	require.NotEmpty(t, VerifyExportBytes([]byte("not a zip")))
}

// A compressed entry is refused unread: sikkerchat stores everything, and a
// deflated entry could be a ZIP bomb.
func TestVerifyExportRefusesCompressedEntries(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "manifest.json", Method: zip.Deflate})
	require.NoError(t, err)
	// 1 GiB of zeros deflates to about 1 MiB; far less is enough to show it is never inflated.
	zeros := make([]byte, 1<<20)
	for range 64 {
		_, err = w.Write(zeros)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	require.Less(t, buf.Len(), 1<<20)
	problems := VerifyExportBytes(buf.Bytes())
	require.Len(t, problems, 1)
	require.Contains(t, problems[0], "manifest.json is compressed")

	// A real package with one entry recompressed.
	data := sampleExport(t)
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	buf.Reset()
	zw = zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		content, err := io.ReadAll(rc)
		require.NoError(t, err)
		method := zip.Store
		if f.Name == "transcript.json" {
			method = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: method})
		require.NoError(t, err)
		_, err = w.Write(content)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	require.Contains(t, strings.Join(VerifyExportBytes(buf.Bytes()), "\n"), "transcript.json is compressed")
}

// The export row of the audit trail tells whether a package is the one the
// bridge made; a changed row is not believed.
func TestFindExportRecord(t *testing.T) {
	row := &AuditRow{Seq: 7, At: time.UnixMilli(1_700_000_000_000), Actor: "@officer:x", Action: AuditExport, ConversationID: "c1",
		Detail: "sha256 abc123", PrevHash: make([]byte, 32)}
	row.Hash = hashOf(row)
	other := &AuditRow{Seq: 6, At: time.UnixMilli(1), Actor: "system", Action: AuditCreate, ConversationID: "c1", PrevHash: make([]byte, 32)}
	other.Hash = hashOf(other)
	asList, err := json.Marshal([]*AuditRow{other, row})
	require.NoError(t, err)
	asProvisioning, err := json.Marshal(map[string]any{"conversation_id": "c1", "rows": []*AuditRow{other, row}, "chain_ok": true})
	require.NoError(t, err)
	for _, trail := range [][]byte{asList, asProvisioning} {
		rec, err := FindExportRecord(trail, "abc123")
		require.NoError(t, err)
		require.Equal(t, &ExportRecord{Seq: 7, At: 1_700_000_000_000, Actor: "@officer:x"}, rec)
		rec, err = FindExportRecord(trail, "def456")
		require.NoError(t, err)
		require.Nil(t, rec, "no export row for another package")
	}
	forged := bytes.Replace(asList, []byte("@officer:x"), []byte("@someone:x"), 1)
	_, err = FindExportRecord(forged, "abc123")
	require.ErrorContains(t, err, "changed")
	_, err = FindExportRecord([]byte("not json"), "abc123")
	require.Error(t, err)
}
