package bridge

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

func newTestKeys(t *testing.T) *KeyStore {
	t.Helper()
	keys, err := NewKeyStore(t.TempDir())
	require.NoError(t, err)
	return keys
}

func newTestStore(t *testing.T) (*scdb.Database, string) {
	t.Helper()
	raw, path := testdb.New(t)
	store := scdb.New(raw, dbutil.NoopLogger)
	require.NoError(t, store.Upgrade(context.Background()))
	return store, path
}

func newTestConversation(t *testing.T, store *scdb.Database, transcript *Transcript) (*Conversation, string, string) {
	t.Helper()
	now := time.UnixMilli(time.Now().UnixMilli())
	conv := &Conversation{
		ID: randomID(10), GhostID: randomID(10), Status: StatusCreated, CreatedBy: "@officer:example.org",
		CreatedAt: now, InviteExpiresAt: now.Add(time.Hour),
	}
	token, hash, err := NewInviteToken()
	require.NoError(t, err)
	require.NoError(t, transcript.CreateKey(conv.ID))
	inv := &Invite{TokenHash: hash, ConversationID: conv.ID, CodeMAC: CodeMAC(token, "tiger 47"), CreatedAt: now, ExpiresAt: conv.InviteExpiresAt}
	require.NoError(t, store.Conversation.Insert(context.Background(), conv, inv))
	return conv, token, "tiger 47"
}

func TestConversationRoundTrip(t *testing.T) {
	ctx := context.Background()
	store, _ := newTestStore(t)
	keys := newTestKeys(t)
	transcript := NewTranscript(store, keys, bytes.Repeat([]byte{7}, 32))
	conv, token, code := newTestConversation(t, store, transcript)

	got, err := store.Conversation.Get(ctx, conv.ID)
	require.NoError(t, err)
	require.Equal(t, conv, got)
	require.NoError(t, store.Conversation.SetRoom(ctx, conv.ID, "!room:example.org"))
	got, err = store.Conversation.GetByRoom(ctx, "!room:example.org")
	require.NoError(t, err)
	require.Equal(t, conv.ID, got.ID)

	inv, err := store.Invite.Get(ctx, HashInviteToken(token))
	require.NoError(t, err)
	require.True(t, CheckCode(token, code, inv.CodeMAC))
	missing, err := store.Invite.Get(ctx, HashInviteToken("nope"))
	require.NoError(t, err)
	require.Nil(t, missing)

	count, err := store.Conversation.CountOpenByOfficer(ctx, "@officer:example.org")
	require.NoError(t, err)
	require.Equal(t, 1, count)
}

func TestTranscriptIsSealedAndDeduplicated(t *testing.T) {
	ctx := context.Background()
	store, path := newTestStore(t)
	keys := newTestKeys(t)
	transcript := NewTranscript(store, keys, bytes.Repeat([]byte{9}, 32))
	conv, _, _ := newTestConversation(t, store, transcript)

	const secret = "MARKER-hemmelig-melding-42"
	entry := &TranscriptEntry{Direction: ToGuest, MatrixEventID: "$event1", CreatedAt: time.Now(), Kind: "text", Text: secret}
	isNew, err := transcript.Append(ctx, conv.ID, entry)
	require.NoError(t, err)
	require.True(t, isNew)
	require.EqualValues(t, 1, entry.Seq)

	// The same Matrix event delivered again adds nothing.
	isNew, err = transcript.Append(ctx, conv.ID, &TranscriptEntry{Direction: ToGuest, MatrixEventID: "$event1", CreatedAt: time.Now(), Kind: "text", Text: secret})
	require.NoError(t, err)
	require.False(t, isNew)
	_, err = transcript.Append(ctx, conv.ID, &TranscriptEntry{Direction: FromGuest, MatrixEventID: "$event2", CreatedAt: time.Now(), Kind: "text", Text: "svar"})
	require.NoError(t, err)

	entries, err := transcript.Since(ctx, conv.ID, 0)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	require.Equal(t, secret, entries[0].Text)
	require.Equal(t, "svar", entries[1].Text)
	require.Equal(t, FromGuest, entries[1].Direction)
	later, err := transcript.Since(ctx, conv.ID, 1)
	require.NoError(t, err)
	require.Len(t, later, 1)

	// No plaintext anywhere in the database file (WAL checkpointed first).
	if path != "" {
		_, err = store.Exec(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
		require.NoError(t, err)
		requireFileLacks(t, path, secret)
	}

	// A sealed row moved to another position no longer opens.
	_, err = store.Exec(ctx, "UPDATE sikkerchat_transcript SET seq=seq+10 WHERE seq=1")
	require.NoError(t, err)
	_, err = transcript.Since(ctx, conv.ID, 0)
	require.Error(t, err)
}

func TestWrongMasterKeyCannotOpenTranscript(t *testing.T) {
	ctx := context.Background()
	store, _ := newTestStore(t)
	keys := newTestKeys(t)
	transcript := NewTranscript(store, keys, bytes.Repeat([]byte{1}, 32))
	conv, _, _ := newTestConversation(t, store, transcript)
	_, err := transcript.Append(ctx, conv.ID, &TranscriptEntry{Direction: ToGuest, MatrixEventID: "$e", CreatedAt: time.Now(), Kind: "text", Text: "x"})
	require.NoError(t, err)
	_, err = NewTranscript(store, keys, bytes.Repeat([]byte{2}, 32)).Since(ctx, conv.ID, 0)
	require.ErrorContains(t, err, "unwrap")
}

func TestDeleteConversationCascades(t *testing.T) {
	ctx := context.Background()
	store, _ := newTestStore(t)
	keys := newTestKeys(t)
	transcript := NewTranscript(store, keys, bytes.Repeat([]byte{3}, 32))
	conv, token, _ := newTestConversation(t, store, transcript)
	_, err := transcript.Append(ctx, conv.ID, &TranscriptEntry{Direction: ToGuest, MatrixEventID: "$e", CreatedAt: time.Now(), Kind: "text", Text: "x"})
	require.NoError(t, err)
	require.NoError(t, store.Conversation.Delete(ctx, conv.ID))
	require.NoError(t, transcript.DestroyKey(conv.ID))
	for _, table := range []string{"sikkerchat_invite", "sikkerchat_transcript"} {
		var n int
		require.NoError(t, store.QueryRow(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n))
		require.Zero(t, n, table)
	}
	inv, err := store.Invite.Get(ctx, HashInviteToken(token))
	require.NoError(t, err)
	require.Nil(t, inv)
	_, err = transcript.Since(ctx, conv.ID, 0)
	require.ErrorIs(t, err, errNoKey)
}

func requireFileLacks(t *testing.T, path, needle string) {
	t.Helper()
	for _, p := range []string{path, path + "-wal"} {
		data, err := readFileIfExists(p)
		require.NoError(t, err)
		require.False(t, bytes.Contains(data, []byte(needle)), "%s contains plaintext", p)
	}
}

func TestCheckMasterKeyAtStart(t *testing.T) {
	store, _ := newTestStore(t)
	keys := newTestKeys(t)
	right := NewTranscript(store, keys, bytes.Repeat([]byte{7}, 32))
	wrong := NewTranscript(store, keys, bytes.Repeat([]byte{8}, 32))

	// No keys yet: nothing to check, nothing wrong.
	checked, unreadable, err := wrong.CheckMasterKey()
	require.NoError(t, err)
	require.Equal(t, 0, checked+unreadable)

	require.NoError(t, right.CreateKey("aaaa"))
	require.NoError(t, right.CreateKey("bbbb"))
	checked, unreadable, err = right.CheckMasterKey()
	require.NoError(t, err)
	require.Equal(t, [2]int{2, 0}, [2]int{checked, unreadable})

	// The wrong master key opens none: the bridge must not start.
	checked, unreadable, err = wrong.CheckMasterKey()
	require.ErrorIs(t, err, ErrWrongMasterKey)
	require.Equal(t, [2]int{2, 2}, [2]int{checked, unreadable})

	// One key from elsewhere among good ones: reported, not fatal.
	require.NoError(t, wrong.CreateKey("cccc"))
	checked, unreadable, err = right.CheckMasterKey()
	require.NoError(t, err)
	require.Equal(t, [2]int{3, 1}, [2]int{checked, unreadable})
}

func TestKeyFolderIsClosedToOthers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	_, err := NewKeyStore(dir)
	require.NoError(t, err)
	info, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm())
}
