package bridge

import (
	"archive/zip"
	"bytes"
	"io"
	"strings"
	"testing"

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
		w, err := zw.Create(f.Name)
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
