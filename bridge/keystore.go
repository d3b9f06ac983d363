package bridge

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// KeyStore keeps the wrapped per-conversation transcript keys apart from the
// database, so that a copy of the database (a backup, a stolen disk image of
// the database server) never holds what it takes to read a transcript, and so
// that closing a conversation destroys its key in one place.
type KeyStore struct {
	dir string
}

var errNoKey = errors.New("conversation key not found")

var keyNamePattern = regexp.MustCompile(`^[a-z2-7]{1,64}$|^[A-Za-z0-9_-]{1,80}$`)

// NewKeyStore opens (and creates, 0700) the key folder. A folder that others
// can read or enter is closed to them first.
func NewKeyStore(dir string) (*KeyStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create key folder: %w", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("failed to check key folder: %w", err)
	} else if !info.IsDir() {
		return nil, fmt.Errorf("key folder %s is not a folder", dir)
	}
	if info.Mode().Perm()&0o077 != 0 {
		if err = os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("key folder %s is open to other users and could not be closed: %w", dir, err)
		}
	}
	return &KeyStore{dir: dir}, nil
}

// List names the conversations that have a key file.
func (k *KeyStore) List() ([]string, error) {
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return nil, fmt.Errorf("failed to list key folder: %w", err)
	}
	var ids []string
	for _, e := range entries {
		name, isKey := strings.CutSuffix(e.Name(), ".key")
		if isKey && e.Type().IsRegular() && keyNamePattern.MatchString(name) {
			ids = append(ids, name)
		}
	}
	return ids, nil
}

func (k *KeyStore) path(conversationID string) (string, error) {
	if !keyNamePattern.MatchString(conversationID) {
		return "", fmt.Errorf("invalid conversation ID for a key file")
	}
	return filepath.Join(k.dir, conversationID+".key"), nil
}

// Put writes a wrapped key durably (temp file, fsync, rename, fsync of the
// folder): once it returns, a crash cannot leave the conversation without it.
func (k *KeyStore) Put(conversationID string, wrapped []byte) error {
	path, err := k.path(conversationID)
	if err != nil {
		return err
	}
	if err = writeFileAtomic(k.dir, path, wrapped); err != nil {
		return fmt.Errorf("failed to write conversation key: %w", err)
	}
	return nil
}

// tempPrefix names files that are being written; a key file name can never
// start with it (keyNamePattern has no dot), so a leftover is recognisable.
const tempPrefix = ".tmp-"

// writeFileAtomic replaces path (in dir) with data, mode 0600: either the old
// content or the new one is there after a crash, never a mix or nothing.
func writeFileAtomic(dir, path string, data []byte) error {
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err = tmp.Chmod(0o600); err == nil {
		if _, err = tmp.Write(data); err == nil {
			err = tmp.Sync()
		}
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// syncDir makes a rename or removal in dir survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if closeErr := d.Close(); err == nil {
		err = closeErr
	}
	return err
}

// Get reads a wrapped key.
func (k *KeyStore) Get(conversationID string) ([]byte, error) {
	path, err := k.path(conversationID)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoKey
	}
	return data, err
}

// Destroy overwrites the key file with random bytes, syncs, and removes it.
// Overwriting is best effort on journaling and copy-on-write file systems; the
// key is in any case useless without the master key.
func (k *KeyStore) Destroy(conversationID string) error {
	path, err := k.path(conversationID)
	if err != nil {
		return err
	}
	if err = shredFile(path); err != nil {
		return fmt.Errorf("failed to destroy conversation key: %w", err)
	}
	return nil
}

// shredFile overwrites a file with random bytes, removes it and syncs the
// folder, so that the removal survives a crash. A missing file is no error.
func shredFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	overwrite(f)
	_ = f.Close()
	if err = os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// overwrite fills an open file with random bytes and syncs it, best effort.
func overwrite(f *os.File) {
	if info, err := f.Stat(); err == nil && info.Size() > 0 {
		junk := make([]byte, info.Size())
		_, _ = rand.Read(junk)
		_, _ = f.WriteAt(junk, 0)
		_ = f.Sync()
	}
}
