package bridge

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"
)

// A database made by the first release (schema v1, testdata/schema-v1.sql)
// upgrades to the latest schema and keeps its conversations and transcript.
func TestUpgradeFromV1KeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	raw, err := dbutil.NewWithDialect("file:"+path+"?_txlock=immediate&_foreign_keys=on", "sqlite3")
	require.NoError(t, err)
	defer raw.Close()
	v1, err := os.ReadFile("testdata/schema-v1.sql")
	require.NoError(t, err)
	for _, stmt := range strings.Split(string(v1), ";") {
		if strings.TrimSpace(stripComments(stmt)) == "" {
			continue
		}
		_, err = raw.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	_, err = raw.Exec(ctx, "CREATE TABLE sikkerchat_version (version INTEGER, compat INTEGER)")
	require.NoError(t, err)
	_, err = raw.Exec(ctx, "INSERT INTO sikkerchat_version (version, compat) VALUES (1, 1)")
	require.NoError(t, err)
	masterKey := bytes.Repeat([]byte{5}, 32)
	old := &Transcript{store: &Store{Database: raw}, masterKey: masterKey}
	wrapped, err := old.NewWrappedKey("c1")
	require.NoError(t, err)
	now := time.Now().UnixMilli()
	_, err = raw.Exec(ctx, `INSERT INTO sikkerchat_conversation (id, room_id, ghost_id, status, created_by, created_at, invite_expires_at)
		VALUES ('c1', '!r:x', 'g1', 'active', '@o:x', $1, $1)`, now)
	require.NoError(t, err)
	_, err = raw.Exec(ctx, `INSERT INTO sikkerchat_conversation_key (conversation_id, wrapped_key) VALUES ('c1', $1)`, wrapped)
	require.NoError(t, err)
	key, err := old.conversationKey(ctx, "c1")
	require.NoError(t, err)
	sealed, err := seal(key, []byte(`{"kind":"text","text":"fra v1"}`), entryAAD("c1", 1, ToGuest))
	require.NoError(t, err)
	_, err = raw.Exec(ctx, `INSERT INTO sikkerchat_transcript (conversation_id, seq, direction, matrix_event_id, created_at, sealed)
		VALUES ('c1', 1, 'to_guest', '$e1', $1, $2)`, now, sealed)
	require.NoError(t, err)

	store := NewStore(raw, dbutil.NoopLogger)
	require.NoError(t, store.Upgrade(ctx))

	conv, err := store.GetConversation(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, StatusActive, conv.Status)
	require.Zero(t, conv.OfficerReadSeq)
	transcript := NewTranscript(store, masterKey)
	entries, err := transcript.Since(ctx, "c1", 0)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "fra v1", entries[0].Text)
	// The v2 features work on the upgraded database.
	_, err = transcript.Append(ctx, "c1", &TranscriptEntry{Direction: FromGuest, ClientID: "client-id-123456789", Status: EntryStored, CreatedAt: time.Now(), Kind: "text", Text: "ny"})
	require.NoError(t, err)
	_, err = store.Exec(ctx, insertSessionQuery, []byte("h"), "c1", now)
	require.NoError(t, err)
}

func stripComments(stmt string) string {
	var out []string
	for _, line := range strings.Split(stmt, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
