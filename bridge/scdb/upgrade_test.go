package scdb

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"

	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

// A database made by the first release (schema v1, testdata/schema-v1.sql)
// upgrades to the latest schema and keeps its conversations and transcript.
func TestUpgradeFromV1KeepsData(t *testing.T) {
	if testdb.IsPostgres() {
		t.Skip("the v1 fixture is an SQLite database; the Postgres run upgrades from empty")
	}
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
	now := time.Now().UnixMilli()
	_, err = raw.Exec(ctx, `INSERT INTO sikkerchat_conversation (id, room_id, ghost_id, status, created_by, created_at, invite_expires_at)
		VALUES ('c1', '!r:x', 'g1', 'active', '@o:x', $1, $1)`, now)
	require.NoError(t, err)
	_, err = raw.Exec(ctx, `INSERT INTO sikkerchat_conversation_key (conversation_id, wrapped_key) VALUES ('c1', $1)`, []byte("wrapped"))
	require.NoError(t, err)
	_, err = raw.Exec(ctx, `INSERT INTO sikkerchat_transcript (conversation_id, seq, direction, matrix_event_id, created_at, sealed)
		VALUES ('c1', 1, 'to_guest', '$e1', $1, $2)`, now, []byte("sealed"))
	require.NoError(t, err)

	db := New(raw, dbutil.NoopLogger)
	require.NoError(t, db.Upgrade(ctx))

	conv, err := db.Conversation.Get(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, StatusActive, conv.Status)
	require.Zero(t, conv.OfficerReadSeq)
	var n int
	require.NoError(t, db.QueryRow(ctx, "SELECT COUNT(*) FROM sikkerchat_transcript WHERE conversation_id='c1' AND status=''").Scan(&n))
	require.Equal(t, 1, n, "transcript rows survive")
	exists, err := db.TableExists(ctx, "sikkerchat_conversation_key")
	require.NoError(t, err)
	require.False(t, exists, "keys no longer live in the database")
	// The later features work on the upgraded database.
	require.NoError(t, db.Session.Insert(ctx, []byte("h"), "c1", time.UnixMilli(now)))
	require.NoError(t, db.File.Begin(ctx, "c1", "f1", time.UnixMilli(now)))
	require.NoError(t, db.Audit.Insert(ctx, &AuditRow{Seq: 1, At: time.UnixMilli(now), Actor: "system", Action: "create", ConversationID: "c1",
		PrevHash: make([]byte, 32), Hash: make([]byte, 32)}))
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
