package bridge

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A conversation ID never names a file outside the key folder, or anything
// but a key file in it.
func TestKeyFilesCannotBeNamedOutsideTheKeyFolder(t *testing.T) {
	parent := t.TempDir()
	keys, err := NewKeyStore(filepath.Join(parent, "keys"))
	require.NoError(t, err)
	for _, bad := range []string{"", "../escape", "a/b", "..", "x.key", ".tmp-123", "with space", "æøå", strings.Repeat("a", 81), "a\x00b"} {
		require.Error(t, keys.Put(bad, []byte("wrapped")), "%q", bad)
		_, err := keys.Get(bad)
		require.Error(t, err, "%q", bad)
		require.Error(t, keys.Destroy(bad), "%q", bad)
	}
	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing was written beside the key folder")
	entries, err = os.ReadDir(keys.dir)
	require.NoError(t, err)
	require.Empty(t, entries)

	// The two shapes of conversation ID the bridge makes (and has made) are fine.
	for _, good := range []string{randomID(10), "Conv_ID-1", strings.Repeat("z", 80)} {
		require.NoError(t, keys.Put(good, []byte("wrapped "+good)), good)
		got, err := keys.Get(good)
		require.NoError(t, err)
		require.Equal(t, []byte("wrapped "+good), got)
	}
}

// Only regular files with a key's name are keys: a leftover temporary file,
// a folder or a link that someone put there are not listed (the start-up
// check and the rotation would otherwise read through them).
func TestKeyStoreListsOnlyKeyFiles(t *testing.T) {
	keys := newTestKeys(t)
	require.NoError(t, keys.Put("abcd", []byte("k")))
	require.NoError(t, os.WriteFile(filepath.Join(keys.dir, "README"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(keys.dir, tempPrefix+"99"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(keys.dir, "bad name.key"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(keys.dir, "abcd.key.bak"), nil, 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(keys.dir, "folder.key"), 0o700))
	require.NoError(t, os.Symlink(filepath.Join(keys.dir, "abcd.key"), filepath.Join(keys.dir, "link.key")))
	ids, err := keys.List()
	require.NoError(t, err)
	require.Equal(t, []string{"abcd"}, ids)
}

// A key is written whole or not at all, closed to other users, and leaves
// no temporary file behind; writing it again replaces it.
func TestKeyPutReplacesTheFileWholeAndClosedToOthers(t *testing.T) {
	keys := newTestKeys(t)
	require.NoError(t, keys.Put("abcd", []byte("first")))
	require.NoError(t, keys.Put("abcd", []byte("second")))
	got, err := keys.Get("abcd")
	require.NoError(t, err)
	require.Equal(t, []byte("second"), got)
	info, err := os.Stat(filepath.Join(keys.dir, "abcd.key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	require.Equal(t, []string{"abcd.key"}, keysOf(snapshotDir(t, keys.dir)))

	_, err = keys.Get("missing")
	require.ErrorIs(t, err, errNoKey)
}

// Closing a conversation overwrites its wrapped key before removing it: a
// second name for the same file (a hard link, a backup tool's snapshot of
// the inode) is left holding noise, not the key.
func TestDestroyedKeyIsOverwrittenBeforeItIsRemoved(t *testing.T) {
	keys := newTestKeys(t)
	wrapped := bytes.Repeat([]byte("K"), 60)
	require.NoError(t, keys.Put("abcd", wrapped))
	other := filepath.Join(t.TempDir(), "same-inode")
	require.NoError(t, os.Link(filepath.Join(keys.dir, "abcd.key"), other))

	require.NoError(t, keys.Destroy("abcd"))
	_, err := keys.Get("abcd")
	require.ErrorIs(t, err, errNoKey)
	left, err := os.ReadFile(other)
	require.NoError(t, err)
	require.Len(t, left, len(wrapped))
	require.NotEqual(t, wrapped, left)
	require.False(t, bytes.Contains(left, []byte("KKKK")))

	require.NoError(t, keys.Destroy("abcd"), "destroying twice (a close run again) is no error")
}

// A key folder path that is a file is refused at start-up; a missing folder
// is made closed to others.
func TestKeyFolderMustBeAFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err := NewKeyStore(file)
	require.Error(t, err)

	nested := filepath.Join(t.TempDir(), "a", "b", "keys")
	_, err = NewKeyStore(nested)
	require.NoError(t, err)
	info, err := os.Stat(nested)
	require.NoError(t, err)
	require.True(t, info.IsDir())
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm())
}

// Rotation retires the old wrapping: the old file's bytes are overwritten,
// so a second name for it does not keep a key the old master key opens.
func TestRotationOverwritesTheOldWrapping(t *testing.T) {
	store, keys, convs := newRotateFixture(t, 1)
	path := filepath.Join(keys.dir, convs[0].ID+".key")
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	other := filepath.Join(t.TempDir(), "same-inode")
	require.NoError(t, os.Link(path, other))

	_, err = RotateMasterKey(keys.dir, rotateOldKey, rotateNewKey)
	require.NoError(t, err)
	require.True(t, opensWith(t, store, keys, rotateNewKey, convs[0]))
	left, err := os.ReadFile(other)
	require.NoError(t, err)
	require.NotEqual(t, before, left)
	_, err = open(rotateOldKey, left, wrapAAD(convs[0].ID))
	require.Error(t, err, "the old wrapping no longer opens")
}

// A temporary file left by a crash may hold a key under the old master key;
// the rotation destroys it like a closed conversation's key.
func TestRotationShredsLeftoverTemporaryFiles(t *testing.T) {
	_, keys, _ := newRotateFixture(t, 1)
	temp := filepath.Join(keys.dir, tempPrefix+"crash")
	half := bytes.Repeat([]byte("W"), 48)
	require.NoError(t, os.WriteFile(temp, half, 0o600))
	other := filepath.Join(t.TempDir(), "same-inode")
	require.NoError(t, os.Link(temp, other))

	res, err := RotateMasterKey(keys.dir, rotateOldKey, rotateNewKey)
	require.NoError(t, err)
	require.Equal(t, 1, res.StaleTemp)
	_, err = os.Stat(temp)
	require.ErrorIs(t, err, os.ErrNotExist)
	left, err := os.ReadFile(other)
	require.NoError(t, err)
	require.NotEqual(t, half, left)
}

// Something with a key file's name that is not a regular file stops the
// rotation before anything is written.
func TestRotationRefusesAKeyThatIsNotARegularFile(t *testing.T) {
	_, keys, _ := newRotateFixture(t, 2)
	require.NoError(t, os.Mkdir(filepath.Join(keys.dir, "zzzz.key"), 0o700))
	before := infSnapshotDirFiles(t, keys.dir)
	_, err := RotateMasterKey(keys.dir, rotateOldKey, rotateNewKey)
	require.ErrorContains(t, err, "zzzz.key is not a regular file; nothing was changed")
	require.Equal(t, before, infSnapshotDirFiles(t, keys.dir))

	file := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = RotateMasterKey(file, rotateOldKey, rotateNewKey)
	require.ErrorContains(t, err, "not a folder")
}

// infSnapshotDirFiles is snapshotDir for a folder that may hold folders.
func infSnapshotDirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			out[e.Name()] = nil
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = data
	}
	return out
}

// The refusal names the conversations whose keys open with neither master
// key (ten at most, then how many more), and never any key material.
func TestUnreadableKeysErrorNamesConversationsNotKeys(t *testing.T) {
	ids := make([]string, 13)
	for i := range ids {
		ids[i] = fmt.Sprintf("conv%02d", i)
	}
	err := &UnreadableKeysError{ConversationIDs: ids, Total: 20}
	msg := err.Error()
	require.True(t, strings.HasPrefix(msg, "13 of 20 key files open with neither"), msg)
	require.Contains(t, msg, "conv09 and 3 more")
	require.NotContains(t, msg, "conv10")
	require.Contains(t, msg, "nothing was changed")

	short := (&UnreadableKeysError{ConversationIDs: []string{"abcd"}, Total: 1}).Error()
	require.Contains(t, short, "(conversations abcd)")
}
