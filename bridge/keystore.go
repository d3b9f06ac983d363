package bridge

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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

// NewKeyStore opens (and creates, 0700) the key folder.
func NewKeyStore(dir string) (*KeyStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create key folder: %w", err)
	}
	return &KeyStore{dir: dir}, nil
}

func (k *KeyStore) path(conversationID string) (string, error) {
	if !keyNamePattern.MatchString(conversationID) {
		return "", fmt.Errorf("invalid conversation ID for a key file")
	}
	return filepath.Join(k.dir, conversationID+".key"), nil
}

// Put writes a wrapped key durably (temp file, fsync, rename).
func (k *KeyStore) Put(conversationID string, wrapped []byte) error {
	path, err := k.path(conversationID)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(k.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write conversation key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err = tmp.Chmod(0o600); err == nil {
		if _, err = tmp.Write(wrapped); err == nil {
			err = tmp.Sync()
		}
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("failed to write conversation key: %w", err)
	}
	return nil
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
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("failed to destroy conversation key: %w", err)
	}
	if info, statErr := f.Stat(); statErr == nil {
		junk := make([]byte, info.Size())
		_, _ = rand.Read(junk)
		_, _ = f.WriteAt(junk, 0)
		_ = f.Sync()
	}
	_ = f.Close()
	if err = os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to destroy conversation key: %w", err)
	}
	return nil
}
