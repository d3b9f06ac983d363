package bridge

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
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

// infLocalEntry is a stored entry's local header and data, as a ZIP writer
// lays them down.
func infLocalEntry(name string, data []byte) []byte {
	var h [30]byte
	copy(h[:], "PK\x03\x04")
	binary.LittleEndian.PutUint16(h[4:], 20)
	binary.LittleEndian.PutUint32(h[14:], crc32.ChecksumIEEE(data))
	binary.LittleEndian.PutUint32(h[18:], uint32(len(data)))
	binary.LittleEndian.PutUint32(h[22:], uint32(len(data)))
	binary.LittleEndian.PutUint16(h[26:], uint16(len(name)))
	return append(append(h[:], name...), data...)
}

// infRecord is a central-directory record as a forger writes it: any name,
// any local-header offset, any size.
type infRecord struct {
	name   string
	offset int
	size   int
}

// infCraftZip appends a central directory of the given records, and its end
// record, to the entries' bytes.
func infCraftZip(entries []byte, records []infRecord) []byte {
	out := bytes.Clone(entries)
	for _, r := range records {
		var h [46]byte
		copy(h[:], "PK\x01\x02")
		binary.LittleEndian.PutUint16(h[4:], 20)
		binary.LittleEndian.PutUint16(h[6:], 20)
		binary.LittleEndian.PutUint32(h[20:], uint32(r.size))
		binary.LittleEndian.PutUint32(h[24:], uint32(r.size))
		binary.LittleEndian.PutUint16(h[28:], uint16(len(r.name)))
		binary.LittleEndian.PutUint32(h[42:], uint32(r.offset))
		out = append(append(out, h[:]...), r.name...)
	}
	var end [22]byte
	copy(end[:], "PK\x05\x06")
	binary.LittleEndian.PutUint16(end[8:], uint16(len(records)))
	binary.LittleEndian.PutUint16(end[10:], uint16(len(records)))
	binary.LittleEndian.PutUint32(end[12:], uint32(len(out)-len(entries)))
	binary.LittleEndian.PutUint32(end[16:], uint32(len(entries)))
	return append(out, end[:]...)
}

// infSharedEntryZip is one stored entry of size bytes with count directory
// records, each under its own name, all pointing at it.
func infSharedEntryZip(size, count int) []byte {
	entry := infLocalEntry("files/001-video.mp4", bytes.Repeat([]byte{'v'}, size))
	records := make([]infRecord, count)
	for i := range records {
		records[i] = infRecord{fmt.Sprintf("files/%03d-video.mp4", i+1), 0, size}
	}
	return infCraftZip(entry, records)
}

// Every entry of a package lies after the one before it, within the file:
// many directory records that point at one stored entry (each under a name
// of its own, so none is "in the package twice") would otherwise each be
// read again, and a package of 1 MiB would cost 64 MiB to check.
func TestVerifyExportRefusesEntriesThatShareBytes(t *testing.T) {
	const size = 1 << 20
	shared := infSharedEntryZip(size, 64)
	_, err := zip.NewReader(bytes.NewReader(shared), int64(len(shared)))
	require.NoError(t, err, "archive/zip itself accepts it")

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	problems := VerifyExportBytes(shared)
	runtime.ReadMemStats(&after)
	require.Equal(t, []string{"the ZIP file's entries are not laid out as sikkerchat writes them, so the package was changed: " +
		"files/002-video.mp4 does not begin after the end of the entry before it"}, problems)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("checking a %d-byte package allocated %d bytes", len(shared), allocated)
	require.Less(t, allocated, uint64(2*len(shared)))

	// The same through io.ReaderAt, as verify-export reads a file.
	require.Equal(t, problems, VerifyExport(bytes.NewReader(shared), int64(len(shared))))

	a := infLocalEntry("files/001-a.png", []byte("\x89PNG\r\n\x1a\naaaa"))
	b := infLocalEntry("files/002-b.png", []byte("\x89PNG\r\n\x1a\nbbbb"))
	inner := infLocalEntry("files/002-b.png", []byte("bbbb"))
	outer := infLocalEntry("files/001-a.png", append([]byte("aaaa"), inner...))
	for _, tc := range []struct {
		name    string
		entries []byte
		records []infRecord
		want    string
	}{
		{"an entry inside the one before", outer, []infRecord{
			{"files/001-a.png", 0, len(outer) - 30 - 15},
			{"files/002-b.png", 30 + 15 + 4, 4},
		}, "files/002-b.png does not begin after the end of the entry before it"},
		{"entries out of order", append(bytes.Clone(a), b...), []infRecord{
			{"files/002-b.png", len(a), len(b) - 30 - 15},
			{"files/001-a.png", 0, len(a) - 30 - 15},
		}, "files/001-a.png does not begin after the end of the entry before it"},
		{"an entry running into the directory", a, []infRecord{
			{"files/001-a.png", 0, len(a) - 30 - 15 + 40},
		}, "files/001-a.png runs past the end of the files"},
		{"a local header past the end", a, []infRecord{
			{"files/001-a.png", 0, len(a) - 30 - 15},
			{"files/002-b.png", len(a) + 200, 4},
		}, "files/002-b.png lies outside the file"},
		{"no local header where the directory says", a, []infRecord{
			{"files/001-a.png", 1, len(a) - 30 - 15 - 1},
		}, "files/001-a.png has no local header where the directory says"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems := VerifyExportBytes(infCraftZip(tc.entries, tc.records))
			require.Len(t, problems, 1)
			require.Contains(t, problems[0], tc.want)
		})
	}

	// A package as sikkerchat writes it, and one rebuilt by another writer,
	// pass the layout check.
	pkg := sampleExport(t)
	require.NoError(t, checkEntryLayout(bytes.NewReader(pkg), int64(len(pkg)), infZipFiles(t, pkg)))
	relaid := infRepack(t, pkg, func(e []infEntry) []infEntry { return e })
	require.NoError(t, checkEntryLayout(bytes.NewReader(relaid), int64(len(relaid)), infZipFiles(t, relaid)))
}

func infZipFiles(t *testing.T, data []byte) []*zip.File {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	return zr.File
}
