package bridge

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
)

var (
	rotateOldKey = bytes.Repeat([]byte{0x11}, 32)
	rotateNewKey = bytes.Repeat([]byte{0x22}, 32)
)

// newRotateFixture makes n conversations, each with one transcript entry
// sealed under a key wrapped by rotateOldKey.
func newRotateFixture(t *testing.T, n int) (*scdb.Database, *KeyStore, []*Conversation) {
	t.Helper()
	store, _ := newTestStore(t)
	keys := newTestKeys(t)
	transcript := NewTranscript(store, keys, rotateOldKey)
	convs := make([]*Conversation, n)
	for i := range convs {
		convs[i], _, _ = newTestConversation(t, store, transcript)
		_, err := transcript.Append(context.Background(), convs[i].ID, &TranscriptEntry{
			Direction: ToGuest, MatrixEventID: "$e", CreatedAt: time.Now(), Kind: "text", Text: "hei " + convs[i].ID,
		})
		require.NoError(t, err)
	}
	return store, keys, convs
}

// opensWith reports whether the conversation's transcript opens under master.
func opensWith(t *testing.T, store *scdb.Database, keys *KeyStore, master []byte, conv *Conversation) bool {
	t.Helper()
	entries, err := NewTranscript(store, keys, master).Since(context.Background(), conv.ID, 0)
	if err != nil {
		require.ErrorContains(t, err, "unwrap")
		return false
	}
	require.Len(t, entries, 1)
	require.Equal(t, "hei "+conv.ID, entries[0].Text)
	return true
}

func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = data
	}
	return out
}

func TestRotateMasterKey(t *testing.T) {
	store, keys, convs := newRotateFixture(t, 4)
	closed := convs[3]
	require.NoError(t, NewTranscript(store, keys, rotateOldKey).DestroyKey(closed.ID))
	require.NoError(t, os.WriteFile(filepath.Join(keys.dir, "README"), []byte("not a key"), 0o600))

	res, err := RotateMasterKey(keys.dir, rotateOldKey, rotateNewKey)
	require.NoError(t, err)
	require.Equal(t, RotateResult{Rotated: 3, Ignored: 1}, res)

	for _, conv := range convs[:3] {
		require.True(t, opensWith(t, store, keys, rotateNewKey, conv), conv.ID)
		require.False(t, opensWith(t, store, keys, rotateOldKey, conv), conv.ID)
		info, err := os.Stat(filepath.Join(keys.dir, conv.ID+".key"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	}
	// The closed conversation stays destroyed: no key file comes back.
	_, err = os.Stat(filepath.Join(keys.dir, closed.ID+".key"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = NewTranscript(store, keys, rotateNewKey).Since(context.Background(), closed.ID, 0)
	require.ErrorIs(t, err, errNoKey)
	require.ElementsMatch(t, []string{"README", convs[0].ID + ".key", convs[1].ID + ".key", convs[2].ID + ".key"},
		keysOf(snapshotDir(t, keys.dir)), "no temporary files may stay behind")

	// Running it again finds nothing to do.
	res, err = RotateMasterKey(keys.dir, rotateOldKey, rotateNewKey)
	require.NoError(t, err)
	require.Equal(t, RotateResult{AlreadyNew: 3, Ignored: 1}, res)
}

func TestRotateMasterKeyInterrupted(t *testing.T) {
	store, keys, convs := newRotateFixture(t, 5)
	crash := errors.New("simulated crash")
	res, err := rotateMasterKey(keys.dir, rotateOldKey, rotateNewKey, func(rotated int) error {
		if rotated == 2 {
			return crash
		}
		return nil
	})
	require.ErrorIs(t, err, crash)
	require.Equal(t, 2, res.Rotated)
	underNew, underOld := 0, 0
	for _, conv := range convs {
		switch {
		case opensWith(t, store, keys, rotateNewKey, conv):
			underNew++
		case opensWith(t, store, keys, rotateOldKey, conv):
			underOld++
		}
	}
	require.Equal(t, 2, underNew)
	require.Equal(t, 3, underOld)

	// A crash can also leave a temporary file behind.
	require.NoError(t, os.WriteFile(filepath.Join(keys.dir, tempPrefix+"12345"), []byte("half a key"), 0o600))

	res, err = RotateMasterKey(keys.dir, rotateOldKey, rotateNewKey)
	require.NoError(t, err)
	require.Equal(t, RotateResult{Rotated: 3, AlreadyNew: 2, StaleTemp: 1}, res)
	for _, conv := range convs {
		require.True(t, opensWith(t, store, keys, rotateNewKey, conv), conv.ID)
	}
	require.Len(t, snapshotDir(t, keys.dir), 5)
}

func TestRotateMasterKeyWrongOldKeyChangesNothing(t *testing.T) {
	store, keys, convs := newRotateFixture(t, 3)
	before := snapshotDir(t, keys.dir)

	wrong := bytes.Repeat([]byte{0x33}, 32)
	_, err := RotateMasterKey(keys.dir, wrong, rotateNewKey)
	var unreadable *UnreadableKeysError
	require.ErrorAs(t, err, &unreadable)
	require.Len(t, unreadable.ConversationIDs, 3)
	require.NotContains(t, err.Error(), string(rotateOldKey))
	require.Equal(t, before, snapshotDir(t, keys.dir))

	// One file from another master key (say, restored from an old backup) is
	// enough to refuse the whole run.
	stray := &Conversation{ID: randomID(10)}
	require.NoError(t, NewTranscript(store, keys, wrong).CreateKey(stray.ID))
	before = snapshotDir(t, keys.dir)
	_, err = RotateMasterKey(keys.dir, rotateOldKey, rotateNewKey)
	require.ErrorAs(t, err, &unreadable)
	require.Equal(t, []string{stray.ID}, unreadable.ConversationIDs)
	require.Equal(t, before, snapshotDir(t, keys.dir))

	for _, conv := range convs {
		require.True(t, opensWith(t, store, keys, rotateOldKey, conv), conv.ID)
	}
}

func TestRotateMasterKeyRefusesBadInput(t *testing.T) {
	keys := newTestKeys(t)
	_, err := RotateMasterKey(keys.dir, rotateOldKey, rotateOldKey)
	require.ErrorIs(t, err, ErrSameMasterKey)
	_, err = RotateMasterKey(keys.dir, rotateOldKey, rotateNewKey[:16])
	require.Error(t, err)

	missing := filepath.Join(t.TempDir(), "keys")
	_, err = RotateMasterKey(missing, rotateOldKey, rotateNewKey)
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(missing)
	require.ErrorIs(t, err, os.ErrNotExist, "rotation must not create the key folder")

	res, err := RotateMasterKey(keys.dir, rotateOldKey, rotateNewKey)
	require.NoError(t, err)
	require.Zero(t, res)
}

func TestParseMasterKey(t *testing.T) {
	key, err := ParseMasterKey(" ERERERERERERERERERERERERERERERERERERERERERE= \n")
	require.NoError(t, err)
	require.Equal(t, rotateOldKey, key)
	for _, bad := range []string{"", "generate", "ERERERERERERERERERERERERERERERERERERERER", "not base64!"} {
		_, err = ParseMasterKey(bad)
		require.Error(t, err, bad)
	}
}

func keysOf(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
