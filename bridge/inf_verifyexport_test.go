package bridge

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// infEntry is one file of a package as a forger rebuilds it.
type infEntry struct {
	name string
	data []byte
}

// infRepack rebuilds a package after change, as a valid stored ZIP.
func infRepack(t *testing.T, pkg []byte, change func(entries []infEntry) []infEntry) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	require.NoError(t, err)
	var entries []infEntry
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		entries = append(entries, infEntry{f.Name, data})
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range change(entries) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Store})
		require.NoError(t, err)
		_, err = w.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// infEdit changes the named file's bytes.
func infEdit(name string, fn func([]byte) []byte) func([]infEntry) []infEntry {
	return func(entries []infEntry) []infEntry {
		for i := range entries {
			if entries[i].name == name {
				entries[i].data = fn(entries[i].data)
			}
		}
		return entries
	}
}

// infEditManifest changes the manifest as a forger would, then re-encodes it.
func infEditManifest(t *testing.T, fn func(m *Manifest)) func([]infEntry) []infEntry {
	return infEdit("manifest.json", func(data []byte) []byte {
		var m Manifest
		require.NoError(t, json.Unmarshal(data, &m))
		fn(&m)
		out, err := json.Marshal(&m)
		require.NoError(t, err)
		return out
	})
}

// verify-export names what was done to a copy of a package, in words an
// investigator can put in a report: files added, taken out, changed;
// messages changed, reordered or removed; a broken chain.
func TestVerifyExportNamesEachKindOfTampering(t *testing.T) {
	pkg := sampleExport(t)
	png := exportFile(t, pkg, "files/001-bilde.png")
	for _, tc := range []struct {
		name   string
		change func([]infEntry) []infEntry
		want   []string
	}{
		{"file added", func(e []infEntry) []infEntry { return append(e, infEntry{"files/002-extra.png", png}) },
			[]string{"files/002-extra.png is not in the manifest (added after export)"}},
		{"file taken out", func(e []infEntry) []infEntry {
			var out []infEntry
			for _, x := range e {
				if x.name != "files/001-bilde.png" {
					out = append(out, x)
				}
			}
			return out
		}, []string{"files/001-bilde.png is listed in the manifest but missing",
			"message 3 ($3): its file files/001-bilde.png does not match the hash in the message"}},
		{"file twice", func(e []infEntry) []infEntry { return append(e, infEntry{"files/001-bilde.png", png}) },
			[]string{"files/001-bilde.png is in the package twice"}},
		{"no manifest", func(e []infEntry) []infEntry { return e[1:] },
			[]string{"manifest.json is missing or not a sikkerchat manifest"}},
		{"foreign manifest", infEditManifest(t, func(m *Manifest) { m.Format = "no.other.export.v1" }),
			[]string{"manifest.json is missing or not a sikkerchat manifest"}},
		{"chain head", infEditManifest(t, func(m *Manifest) { m.ChainHead = strings.Repeat("0", 64) }),
			[]string{"the manifest's chain head does not match its messages"}},
		{"chain link", infEditManifest(t, func(m *Manifest) { m.Messages[1].Chain = strings.Repeat("0", 64) }),
			[]string{"the message chain breaks at message 2 ($2)", "the manifest's chain head does not match its messages"}},
		{"message removed from the manifest", infEditManifest(t, func(m *Manifest) {
			m.Messages = m.Messages[:2]
			m.ChainHead = m.Messages[1].Chain
		}), []string{"transcript.json has 3 messages, the manifest 2"}},
		{"messages swapped in the manifest", infEditManifest(t, func(m *Manifest) {
			m.Messages[0].EventID, m.Messages[1].EventID = m.Messages[1].EventID, m.Messages[0].EventID
		}), []string{"message 1 is $1 in transcript.json but $2 in the manifest", "message 2 is $2 in transcript.json but $1 in the manifest"}},
		{"unreadable transcript", infEdit("transcript.json", func([]byte) []byte { return []byte("[{") }),
			[]string{"transcript.json was changed", "transcript.json cannot be read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems := strings.Join(VerifyExportBytes(infRepack(t, pkg, tc.change)), "\n")
			for _, want := range tc.want {
				require.Contains(t, problems, want)
			}
		})
	}
}

// The manifest is inside the package, so a forger who rewrites the
// transcript and recomputes every hash makes a package that checks out on
// its own; it is the audit trail's record of the package's SHA-256 that
// shows it is not the one the bridge made.
func TestAConsistentForgeryIsCaughtOnlyByTheAuditRecord(t *testing.T) {
	pkg := sampleExport(t)
	sum := sha256.Sum256(pkg)
	row := &AuditRow{Seq: 1, Actor: "@officer:x", Action: AuditExport, ConversationID: "c1", Detail: "sha256 " + hex.EncodeToString(sum[:]), PrevHash: make([]byte, 32)}
	row.Hash = hashOf(row)
	trail, err := json.Marshal([]*AuditRow{row})
	require.NoError(t, err)

	var messages []*ExportMessage
	require.NoError(t, json.Unmarshal(exportFile(t, pkg, "transcript.json"), &messages))
	var manifest Manifest
	require.NoError(t, json.Unmarshal(exportFile(t, pkg, "manifest.json"), &manifest))
	messages[0].Body = "Jeg trenger ingen hjelp"
	files := map[string][]byte{"files/001-bilde.png": exportFile(t, pkg, "files/001-bilde.png")}
	audit := []*AuditRow{}
	require.NoError(t, json.Unmarshal(exportFile(t, pkg, "audit.json"), &audit))
	forged, err := AssembleExport(&Conversation{ID: manifest.ConversationID, RoomID: manifest.RoomID}, manifest.ExportedBy, messages, files, audit)
	require.NoError(t, err)

	require.Empty(t, VerifyExportBytes(forged), "self-consistent")
	forgedSum := sha256.Sum256(forged)
	record, err := FindExportRecord(trail, hex.EncodeToString(forgedSum[:]))
	require.NoError(t, err)
	require.Nil(t, record, "no export of the bridge has this SHA-256")
	record, err = FindExportRecord(trail, hex.EncodeToString(sum[:]))
	require.NoError(t, err)
	require.NotNil(t, record, "the real package is recorded")
}

// verify-export on a file reads it through io.ReaderAt: every change to
// the files in it is caught there too, while the check of the ZIP's own
// bytes (layout, timestamps) needs the whole package in memory.
func TestVerifyExportOfAFileOnDisk(t *testing.T) {
	pkg := sampleExport(t)
	check := func(data []byte) []string {
		path := filepath.Join(t.TempDir(), "pakke.zip")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		f, err := os.Open(path)
		require.NoError(t, err)
		defer f.Close()
		info, err := f.Stat()
		require.NoError(t, err)
		return VerifyExport(f, info.Size())
	}
	require.Empty(t, check(pkg))
	edited := infRepack(t, pkg, infEdit("transcript.html", func(b []byte) []byte {
		return bytes.Replace(b, []byte("Hei"), []byte("Hai"), 1)
	}))
	require.Contains(t, strings.Join(check(edited), "\n"), "transcript.html was changed")

	// Same files, laid out anew (other timestamps): only the in-memory check sees it.
	relaid := infRepack(t, pkg, func(e []infEntry) []infEntry { return e })
	require.Empty(t, check(relaid))
	require.Equal(t, []string{"the ZIP file itself was changed (bytes outside the files differ from how sikkerchat wrote it)"},
		VerifyExportBytes(relaid))
	require.Equal(t, []string{"not a readable ZIP file: zip: not a valid zip file"}, check([]byte("PK not really")))
}
