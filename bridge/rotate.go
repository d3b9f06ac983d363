package bridge

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Rotating the master key re-wraps every conversation key in key_dir. The
// conversation keys themselves do not change, so the sealed transcript rows in
// the database are not touched. The bridge must be stopped: it reads and
// writes key files, and it only knows one master key.
//
// A run can be interrupted anywhere and simply run again with the same two
// keys: each file is tried with the new key first, then with the old one, and
// each is replaced atomically, so every file is always wholly under one of
// the two keys. Nothing is written until every key file has been opened with
// one of them.

// ErrSameMasterKey refuses a "rotation" that would change nothing.
var ErrSameMasterKey = errors.New("the new master key is the same as the current one")

// RotateResult counts what RotateMasterKey did. It never holds key material.
type RotateResult struct {
	// Rotated key files were re-wrapped from the old master key to the new one by this run.
	Rotated int
	// AlreadyNew key files were under the new key already: an earlier run was interrupted.
	AlreadyNew int
	// StaleTemp leftover temporary files (from a crash in the middle of a write) were removed.
	StaleTemp int
	// Ignored entries are not key files; they were left alone.
	Ignored int
}

// UnreadableKeysError is returned when some key files open with neither
// master key (a wrong current key, or files restored from a time when another
// master key was in use). Nothing has been changed when it is returned.
type UnreadableKeysError struct {
	ConversationIDs []string
	Total           int
}

func (e *UnreadableKeysError) Error() string {
	ids := e.ConversationIDs
	more := ""
	if len(ids) > 10 {
		ids, more = ids[:10], fmt.Sprintf(" and %d more", len(e.ConversationIDs)-10)
	}
	return fmt.Sprintf("%d of %d key files open with neither the current nor the new master key "+
		"(conversations %s%s); nothing was changed", len(e.ConversationIDs), e.Total, strings.Join(ids, ", "), more)
}

// ParseMasterKey decodes a master key as network.master_key holds it: 32
// bytes in standard base64.
func ParseMasterKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(key) != 32 {
		return nil, errors.New("a master key must be 32 bytes in standard base64 (44 characters)")
	}
	return key, nil
}

// wrapAAD binds a wrapped key to its conversation, exactly as
// Transcript.CreateKey and Transcript.conversationKey do.
func wrapAAD(conversationID string) []byte {
	return []byte("key:" + conversationID)
}

// RotateMasterKey re-wraps every conversation key in dir from oldKey to
// newKey. Run it only while the bridge is stopped. If it fails part-way, run
// it again with the same keys: it finishes the job.
func RotateMasterKey(dir string, oldKey, newKey []byte) (RotateResult, error) {
	return rotateMasterKey(dir, oldKey, newKey, nil)
}

type keyFile struct {
	conversationID string
	path           string
}

// rotateMasterKey calls afterEach (tests: a simulated crash) after each file
// it re-wraps, with the number re-wrapped so far.
func rotateMasterKey(dir string, oldKey, newKey []byte, afterEach func(rotated int) error) (RotateResult, error) {
	var res RotateResult
	if len(oldKey) != 32 || len(newKey) != 32 {
		return res, errors.New("master keys must be 32 bytes")
	} else if string(oldKey) == string(newKey) {
		return res, ErrSameMasterKey
	}
	// Never create the folder: a missing one means a wrong path (a relative
	// key_dir read from another working directory), not an empty store.
	if info, err := os.Stat(dir); err != nil {
		return res, fmt.Errorf("failed to open key folder: %w", err)
	} else if !info.IsDir() {
		return res, fmt.Errorf("key folder %s is not a folder", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return res, fmt.Errorf("failed to list key folder: %w", err)
	}
	var files []keyFile
	var stale []string
	for _, entry := range entries {
		name := entry.Name()
		id, isKey := strings.CutSuffix(name, ".key")
		switch {
		case strings.HasPrefix(name, tempPrefix) && entry.Type().IsRegular():
			stale = append(stale, filepath.Join(dir, name))
		case isKey && keyNamePattern.MatchString(id):
			if !entry.Type().IsRegular() {
				return res, fmt.Errorf("key file %s is not a regular file; nothing was changed", name)
			}
			files = append(files, keyFile{conversationID: id, path: filepath.Join(dir, name)})
		default:
			res.Ignored++
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].conversationID < files[j].conversationID })

	// First pass, read only: every file must open with one of the two keys.
	var unreadable []string
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return res, fmt.Errorf("failed to read key file: %w", err)
		}
		if _, under := unwrapEither(f.conversationID, data, oldKey, newKey); under == nil {
			unreadable = append(unreadable, f.conversationID)
		}
	}
	if len(unreadable) > 0 {
		return res, &UnreadableKeysError{ConversationIDs: unreadable, Total: len(files)}
	}

	// A temporary file left by a crash may hold a wrapped key under the old
	// master key: it goes, overwritten like a destroyed key.
	for _, path := range stale {
		if err = shredFile(path); err != nil {
			return res, fmt.Errorf("failed to remove leftover temporary file: %w", err)
		}
		res.StaleTemp++
	}

	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // destroyed since the first pass: it stays destroyed
		} else if err != nil {
			return res, fmt.Errorf("failed to read key file: %w", err)
		}
		key, under := unwrapEither(f.conversationID, data, oldKey, newKey)
		if under == nil {
			return res, fmt.Errorf("key file of conversation %s changed during the rotation", f.conversationID)
		} else if string(under) == string(newKey) {
			clear(key)
			res.AlreadyNew++
			continue
		}
		wrapped, err := seal(newKey, key, wrapAAD(f.conversationID))
		clear(key)
		if err != nil {
			return res, fmt.Errorf("failed to wrap conversation key: %w", err)
		}
		if err = replaceKeyFile(dir, f.path, wrapped); err != nil {
			return res, fmt.Errorf("failed to rewrite key file of conversation %s: %w", f.conversationID, err)
		}
		res.Rotated++
		if afterEach != nil {
			if err = afterEach(res.Rotated); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// unwrapEither opens a wrapped key with the new master key first, so that a
// re-run after an interruption recognises what is already done. It returns
// the master key that opened it, or nil.
func unwrapEither(conversationID string, wrapped, oldKey, newKey []byte) (key, under []byte) {
	for _, master := range [][]byte{newKey, oldKey} {
		if key, err := open(master, wrapped, wrapAAD(conversationID)); err == nil {
			return key, master
		}
	}
	return nil, nil
}

// replaceKeyFile writes the re-wrapped key atomically, then overwrites the
// old file's blocks (best effort, as Destroy), because the old wrapping is
// exactly what the rotation is meant to retire.
func replaceKeyFile(dir, path string, wrapped []byte) error {
	old, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer old.Close()
	if err = writeFileAtomic(dir, path, wrapped); err != nil {
		return err
	}
	// The name now points at the new file; this handle still reaches the old one.
	overwrite(old)
	return nil
}
