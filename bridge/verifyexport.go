package bridge

import (
	"archive/zip"
	"bytes"
	"encoding/json"
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
