package bridge

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// VerifyExport checks an evidence package and lists every problem found:
// files whose bytes changed, files added or missing, messages whose content
// no longer matches their hash, and breaks in the message chain.
func VerifyExport(r io.ReaderAt, size int64) []string {
	return verifyExport(r, size, nil)
}

func verifyExport(r io.ReaderAt, size int64, whole []byte) []string {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return []string{fmt.Sprintf("not a readable ZIP file: %v", err)}
	}
	// Before any entry is read: archive/zip accepts any number of directory
	// records that point at the same bytes, and read one by one they would
	// make a small file cost its size again for every record.
	if err = checkEntryLayout(r, size, zr.File); err != nil {
		return []string{fmt.Sprintf("the ZIP file's entries are not laid out as sikkerchat writes them, so the package was changed: %v", err)}
	}
	contents := map[string][]byte{}
	for _, f := range zr.File {
		// sikkerchat stores every entry uncompressed. A compressed one is
		// refused unread: it could inflate to any size (a ZIP bomb).
		if f.Method != zip.Store {
			return []string{fmt.Sprintf("%s is compressed; sikkerchat stores every file of a package uncompressed, so the package was changed", f.Name)}
		}
		if _, dup := contents[f.Name]; dup {
			return []string{fmt.Sprintf("%s is in the package twice", f.Name)}
		}
		// Read raw, past the ZIP's own CRC check, so that a change is reported
		// by name against the manifest, not as "damaged". A stored entry's raw
		// bytes are in the file itself, so this reads no more than was given.
		rc, err := f.OpenRaw()
		if err != nil {
			return []string{fmt.Sprintf("%s cannot be read: %v", f.Name, err)}
		}
		data, err := io.ReadAll(rc)
		if err != nil {
			return []string{fmt.Sprintf("%s cannot be read (damaged?): %v", f.Name, err)}
		}
		contents[f.Name] = data
	}
	var problems []string
	var manifest Manifest
	if err = json.Unmarshal(contents["manifest.json"], &manifest); err != nil || manifest.Format != exportFormat {
		return []string{"manifest.json is missing or not a sikkerchat manifest"}
	}
	names := make([]string, 0, len(contents))
	for name := range contents {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "manifest.json" {
			continue
		}
		want, listed := manifest.Files[name]
		if !listed {
			problems = append(problems, fmt.Sprintf("%s is not in the manifest (added after export)", name))
		} else if got := sha256Hex(contents[name]); got != want {
			problems = append(problems, fmt.Sprintf("%s was changed: SHA-256 is %s, the manifest says %s", name, got, want))
		}
	}
	for name := range manifest.Files {
		if _, ok := contents[name]; !ok {
			problems = append(problems, fmt.Sprintf("%s is listed in the manifest but missing", name))
		}
	}
	var messages []*ExportMessage
	if err = json.Unmarshal(contents["transcript.json"], &messages); err != nil {
		return append(problems, "transcript.json cannot be read")
	}
	if len(messages) != len(manifest.Messages) {
		problems = append(problems, fmt.Sprintf("transcript.json has %d messages, the manifest %d", len(messages), len(manifest.Messages)))
	}
	chain := ""
	for i, entry := range manifest.Messages {
		chain = chainNext(chain, entry.SHA256)
		if chain != entry.Chain {
			problems = append(problems, fmt.Sprintf("the message chain breaks at message %d (%s)", i+1, entry.EventID))
			break
		}
		if i < len(messages) {
			m := messages[i]
			if m.EventID != entry.EventID {
				problems = append(problems, fmt.Sprintf("message %d is %s in transcript.json but %s in the manifest", i+1, m.EventID, entry.EventID))
			} else if got := sha256Hex(canonicalJSON(m)); got != entry.SHA256 {
				problems = append(problems, fmt.Sprintf("message %d (%s) was changed", i+1, m.EventID))
			}
			if m.File != "" && m.FileSHA != sha256Hex(contents[m.File]) {
				problems = append(problems, fmt.Sprintf("message %d (%s): its file %s does not match the hash in the message", i+1, m.EventID, m.File))
			}
		}
	}
	if chain != manifest.ChainHead {
		problems = append(problems, "the manifest's chain head does not match its messages")
	}
	if whole != nil && len(problems) == 0 {
		others := map[string][]byte{}
		for name, data := range contents {
			if name != "manifest.json" {
				others[name] = data
			}
		}
		canonical, err := writeExportZip(contents["manifest.json"], others, manifest.ExportedAt)
		if err != nil || !bytes.Equal(canonical, whole) {
			problems = append(problems, "the ZIP file itself was changed (bytes outside the files differ from how sikkerchat wrote it)")
		}
	}
	return problems
}

const (
	zipLocalHeaderLen     = 30
	zipDirectoryHeaderLen = 46
	zipDirectoryEndLen    = 22
	zip64LocatorLen       = 20
	zip64DirectoryEndLen  = 56
)

// checkEntryLayout makes sure that every entry's local header and data lie
// in the file after the previous entry's, in the central directory's order,
// and before the central directory: so the entries together are no larger
// than the file, and reading them all reads each byte at most once. The
// local-header offsets come from the central directory itself (archive/zip
// keeps them to itself), read a record at a time so that this check
// allocates next to nothing whatever the directory holds.
func checkEntryLayout(r io.ReaderAt, size int64, files []*zip.File) error {
	dirOffset, dirSize, err := zipDirectory(r, size)
	if err != nil {
		return err
	}
	dir := bufio.NewReaderSize(io.NewSectionReader(r, dirOffset, dirSize), 4096)
	var header [zipDirectoryHeaderLen]byte
	var local [zipLocalHeaderLen]byte
	var extra []byte
	end := int64(0) // where the previous entry's data ends
	for _, f := range files {
		if _, err = io.ReadFull(dir, header[:]); err != nil || string(header[:4]) != "PK\x01\x02" {
			return errors.New("the central directory cannot be read")
		}
		nameLen := int(binary.LittleEndian.Uint16(header[28:]))
		extraLen := int(binary.LittleEndian.Uint16(header[30:]))
		commentLen := int(binary.LittleEndian.Uint16(header[32:]))
		offset := int64(binary.LittleEndian.Uint32(header[42:]))
		if _, err = dir.Discard(nameLen); err != nil {
			return errors.New("the central directory cannot be read")
		}
		if cap(extra) < extraLen {
			extra = make([]byte, extraLen)
		}
		extra = extra[:extraLen]
		if _, err = io.ReadFull(dir, extra); err != nil {
			return errors.New("the central directory cannot be read")
		}
		if offset == 0xffffffff {
			if offset, err = zip64HeaderOffset(extra, header[:]); err != nil {
				return err
			}
		}
		if _, err = dir.Discard(commentLen); err != nil {
			return errors.New("the central directory cannot be read")
		}
		if offset < end {
			return fmt.Errorf("%s does not begin after the end of the entry before it", f.Name)
		}
		if offset > size-zipLocalHeaderLen {
			return fmt.Errorf("%s lies outside the file", f.Name)
		}
		if _, err = r.ReadAt(local[:], offset); err != nil || string(local[:4]) != "PK\x03\x04" {
			return fmt.Errorf("%s has no local header where the directory says", f.Name)
		}
		dataOffset := offset + zipLocalHeaderLen +
			int64(binary.LittleEndian.Uint16(local[26:])) + int64(binary.LittleEndian.Uint16(local[28:]))
		// The data archive/zip would read is the data checked here.
		if got, err := f.DataOffset(); err != nil || got != dataOffset {
			return fmt.Errorf("%s has no local header where the directory says", f.Name)
		}
		if dataOffset > dirOffset || f.CompressedSize64 > uint64(dirOffset-dataOffset) {
			return fmt.Errorf("%s runs past the end of the files", f.Name)
		}
		end = dataOffset + int64(f.CompressedSize64)
	}
	return nil
}

// zipDirectory finds the central directory as archive/zip does: the end
// record in the last 64 KiB, or its ZIP64 form when the end record says so.
func zipDirectory(r io.ReaderAt, size int64) (offset, length int64, err error) {
	tailLen := min(size, zipDirectoryEndLen+0xffff)
	tail := make([]byte, tailLen)
	if _, err = r.ReadAt(tail, size-tailLen); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, errors.New("the end of the file cannot be read")
	}
	if tailLen < zipDirectoryEndLen {
		return 0, 0, errors.New("the central directory's end record is missing")
	}
	at := bytes.LastIndex(tail[:tailLen-zipDirectoryEndLen+4], []byte("PK\x05\x06"))
	if at < 0 {
		return 0, 0, errors.New("the central directory's end record is missing")
	}
	end := tail[at:]
	endOffset := size - tailLen + int64(at)
	records := uint64(binary.LittleEndian.Uint16(end[10:]))
	dirSize := uint64(binary.LittleEndian.Uint32(end[12:]))
	dirOffset := uint64(binary.LittleEndian.Uint32(end[16:]))
	if records == 0xffff || dirSize == 0xffff || dirSize == 0xffffffff || dirOffset == 0xffffffff {
		var locator [zip64LocatorLen]byte
		if endOffset >= zip64LocatorLen {
			if _, err = r.ReadAt(locator[:], endOffset-zip64LocatorLen); err == nil && string(locator[:4]) == "PK\x06\x07" {
				var end64 [zip64DirectoryEndLen]byte
				at64 := binary.LittleEndian.Uint64(locator[8:])
				if at64 > uint64(size-zip64DirectoryEndLen) {
					return 0, 0, errors.New("the ZIP64 end record lies outside the file")
				}
				if _, err = r.ReadAt(end64[:], int64(at64)); err != nil || string(end64[:4]) != "PK\x06\x06" {
					return 0, 0, errors.New("the ZIP64 end record cannot be read")
				}
				endOffset = int64(at64)
				dirSize = binary.LittleEndian.Uint64(end64[40:])
				dirOffset = binary.LittleEndian.Uint64(end64[48:])
			}
		}
	}
	if dirOffset > uint64(endOffset) || dirSize > uint64(endOffset)-dirOffset {
		return 0, 0, errors.New("the central directory lies outside the file")
	}
	return int64(dirOffset), int64(dirSize), nil
}

// zip64HeaderOffset reads a local-header offset from a directory record's
// ZIP64 extra field, where it follows the sizes that are themselves there.
func zip64HeaderOffset(extra, header []byte) (int64, error) {
	for len(extra) >= 4 {
		tag := binary.LittleEndian.Uint16(extra)
		n := int(binary.LittleEndian.Uint16(extra[2:]))
		if len(extra)-4 < n {
			break
		}
		field := extra[4 : 4+n]
		extra = extra[4+n:]
		if tag != 0x0001 {
			continue
		}
		skip := 0
		if binary.LittleEndian.Uint32(header[24:]) == 0xffffffff { // uncompressed size
			skip += 8
		}
		if binary.LittleEndian.Uint32(header[20:]) == 0xffffffff { // compressed size
			skip += 8
		}
		if len(field) < skip+8 {
			break
		}
		offset := binary.LittleEndian.Uint64(field[skip:])
		if offset > 1<<62 {
			break
		}
		return int64(offset), nil
	}
	return 0, errors.New("a ZIP64 directory record has no local-header offset")
}

// VerifyExportBytes is VerifyExport for data in memory.
func VerifyExportBytes(data []byte) []string {
	return verifyExport(bytes.NewReader(data), int64(len(data)), data)
}

// ExportRecord is the audit row that recorded an export with the package's SHA-256.
type ExportRecord struct {
	Seq   int64
	At    int64
	Actor string
}

// FindExportRecord looks in an audit trail, as the provisioning API's audit
// answer ({"rows": [...]}) or as a package's audit.json (a list of rows), for
// the export row of a package with the given SHA-256. Rows whose hash does not
// match their fields are not believed.
func FindExportRecord(auditJSON []byte, packageSHA256 string) (*ExportRecord, error) {
	var rows []*AuditRow
	if err := json.Unmarshal(auditJSON, &rows); err != nil {
		var wrapped struct {
			Rows []*AuditRow `json:"rows"`
		}
		if err = json.Unmarshal(auditJSON, &wrapped); err != nil {
			return nil, fmt.Errorf("not an audit trail: %w", err)
		}
		rows = wrapped.Rows
	}
	for _, r := range rows {
		if r.Action != AuditExport || r.Detail != "sha256 "+packageSHA256 {
			continue
		}
		if !bytes.Equal(r.Hash, hashOf(r)) {
			return nil, fmt.Errorf("audit row %d names this package but its hash does not match its fields (changed)", r.Seq)
		}
		return &ExportRecord{Seq: r.Seq, At: r.At.UnixMilli(), Actor: r.Actor}, nil
	}
	return nil, nil
}
