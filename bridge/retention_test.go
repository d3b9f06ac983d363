package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/bridge/scdb"
	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

func TestUnusedInviteExpiresAndCloses(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(50 * time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	tb.Conversations.CloseDue(tb.ctx)
	require.Equal(t, bridge.StatusExpired, tb.conv(inv.conv.ID).Status)
	_, _, err := tb.Guests.Join(tb.ctx, inv.token, inv.code)
	require.ErrorIs(t, err, bridge.ErrInviteRevoked)
	_, notices := tb.matrix.Snapshot()
	require.NotEmpty(t, notices)
	require.Contains(t, notices[len(notices)-1], "lenken ble ikke brukt")
}

// A conversation quiet for longer than idle_close is closed.
func TestIdleConversationCloses(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.IdleClose = "50ms"
	tb := newTestBridge(t, cfg)
	inv := tb.newInvite(time.Hour)
	tb.join(inv)
	tb.Conversations.CloseDue(tb.ctx)
	require.Equal(t, bridge.StatusActive, tb.conv(inv.conv.ID).Status, "not idle yet")
	time.Sleep(100 * time.Millisecond)
	tb.Conversations.CloseDue(tb.ctx)
	require.Equal(t, bridge.StatusClosed, tb.conv(inv.conv.ID).Status)
	rows, err := tb.Audit.ForConversation(tb.ctx, inv.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.CloseIdle, rows[len(rows)-1].Detail)
}

func TestAuditChainDetectsTampering(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	_, _, err := tb.Guests.Join(tb.ctx, inv.token, "feil 11")
	require.Error(t, err)
	tb.join(inv)
	require.NoError(t, tb.Audit.Verify(tb.ctx))
	_, err = tb.DB.Exec(tb.ctx, "UPDATE sikkerchat_audit SET actor='@someone:else' WHERE seq=1")
	require.NoError(t, err)
	require.ErrorContains(t, tb.Audit.Verify(tb.ctx), "audit row 1 was changed")
	_, err = tb.DB.Exec(tb.ctx, "UPDATE sikkerchat_audit SET actor='guest' WHERE seq=1")
	require.NoError(t, err)
	require.NoError(t, tb.Audit.Verify(tb.ctx))
	_, err = tb.DB.Exec(tb.ctx, "UPDATE sikkerchat_audit SET prev_hash=hash WHERE seq=2")
	require.NoError(t, err)
	require.ErrorContains(t, tb.Audit.Verify(tb.ctx), "does not follow")
	_, err = tb.DB.Exec(tb.ctx, "DELETE FROM sikkerchat_audit WHERE seq=1")
	require.NoError(t, err)
	require.ErrorContains(t, tb.Audit.Verify(tb.ctx), "missing")
}

type fakePurger struct{ purged []id.RoomID }

func (f *fakePurger) PurgeRoom(ctx context.Context, roomID id.RoomID) error {
	f.purged = append(f.purged, roomID)
	return nil
}

func TestPurgeAfterRetentionUnlessHeld(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.Retention = "50ms"
	tb := newTestBridge(t, cfg)
	purger := &fakePurger{}
	tb.Purger = purger
	held, free := tb.newInvite(time.Hour), tb.newInvite(time.Hour)
	for _, inv := range []testInvite{held, free} {
		require.NoError(t, tb.Conversations.Close(tb.ctx, tb.conv(inv.conv.ID), "@officer:example.org", bridge.CloseByOfficer))
	}
	heldConv := tb.conv(held.conv.ID)
	require.NoError(t, tb.Conversations.SetHold(tb.ctx, heldConv, "@lead:example.org", true, ""))
	require.ErrorIs(t, tb.Conversations.Purge(tb.ctx, heldConv), bridge.ErrOnHold)

	tb.Conversations.PurgeDue(tb.ctx)
	require.Empty(t, purger.purged, "nothing is due before retention ends")
	time.Sleep(80 * time.Millisecond)
	tb.Conversations.PurgeDue(tb.ctx)
	require.Equal(t, []id.RoomID{free.conv.RoomID}, purger.purged, "the held room survives")
	tb.matrix.Lock()
	require.Equal(t, []string{free.conv.ID}, tb.matrix.Forgot, "the bridge forgot the purged room")
	tb.matrix.Unlock()

	require.Nil(t, tb.conv(free.conv.ID), "the bridge keeps no rows of a purged conversation")
	rows, err := tb.Audit.ForConversation(tb.ctx, free.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.AuditPurge, rows[len(rows)-1].Action, "the audit trail outlives the purge")
	require.NoError(t, tb.Audit.Verify(tb.ctx))

	require.NoError(t, tb.Conversations.SetHold(tb.ctx, heldConv, "@lead:example.org", false, "saken er henlagt"))
	rows, err = tb.Audit.ForConversation(tb.ctx, held.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.AuditUnhold, rows[len(rows)-1].Action)
	require.Equal(t, "saken er henlagt", rows[len(rows)-1].Detail, "the reason is in the trail")
	tb.Conversations.PurgeDue(tb.ctx)
	require.Len(t, purger.purged, 2, "unhold lets the purge happen")
}

// Without an admin token nothing is purged, and the rows stay.
func TestPurgeWithoutAdminTokenKeepsEverything(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.Retention = "1ms"
	tb := newTestBridge(t, cfg)
	inv := tb.newInvite(time.Hour)
	require.NoError(t, tb.Conversations.Close(tb.ctx, tb.conv(inv.conv.ID), "@officer:example.org", bridge.CloseByOfficer))
	time.Sleep(5 * time.Millisecond)
	require.ErrorIs(t, tb.Conversations.Purge(tb.ctx, tb.conv(inv.conv.ID)), bridge.ErrNoPurger)
	tb.Conversations.PurgeDue(tb.ctx)
	require.NotNil(t, tb.conv(inv.conv.ID))
}

// A copy of the database taken before close, read after close, yields nothing:
// the rows were always sealed, and the only key is destroyed outside the database.
func TestDatabaseCopyIsUnreadableAfterClose(t *testing.T) {
	if testdb.IsPostgres() {
		t.Skip("copies the SQLite file; on Postgres the key store is the same code")
	}
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	tb.join(inv)
	const marker = "MARKER-kopi-av-databasen"
	_, _, err := tb.Guests.QueueText(tb.ctx, tb.conv(inv.conv.ID), strings.Repeat("k", 16), marker)
	require.NoError(t, err)
	entry := &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: "$o", CreatedAt: time.Now(), Kind: "text", Text: marker + "-svar"}
	_, err = tb.Transcript.Append(tb.ctx, inv.conv.ID, entry)
	require.NoError(t, err)

	copyPath := filepath.Join(t.TempDir(), "copy.db")
	_, err = tb.DB.Exec(tb.ctx, "VACUUM INTO '"+copyPath+"'")
	require.NoError(t, err)
	require.NoError(t, tb.Conversations.Close(tb.ctx, tb.conv(inv.conv.ID), "@officer:example.org", bridge.CloseByOfficer))

	data, err := os.ReadFile(copyPath)
	require.NoError(t, err)
	require.False(t, bytes.Contains(data, []byte(marker)), "no plaintext in the copy")
	raw, err := dbutil.NewWithDialect("file:"+copyPath+"?mode=ro", "sqlite3")
	require.NoError(t, err)
	defer raw.Close()
	var sealedRows int
	require.NoError(t, raw.QueryRow(tb.ctx, "SELECT COUNT(*) FROM sikkerchat_transcript WHERE conversation_id=$1", inv.conv.ID).Scan(&sealedRows))
	require.Equal(t, 2, sealedRows, "the copy still has the sealed rows")
	copied := bridge.NewTranscript(scdb.New(raw, dbutil.NoopLogger), tb.Transcript.Keys(), []byte(strings.Repeat("\x00", 32)))
	_, err = copied.Since(tb.ctx, inv.conv.ID, 0)
	require.ErrorContains(t, err, "conversation key not found", "with the bridge's own keys and master key, nothing opens")
}

func TestStatisticsAreAnonymousCounts(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	require.NoError(t, tb.Audit.Append(tb.ctx, "@officer:example.org", bridge.AuditCreate, inv.conv.ID, ""))
	tb.join(inv)
	for i := range 3 {
		_, _, err := tb.Guests.QueueText(tb.ctx, tb.conv(inv.conv.ID), strings.Repeat("s", 16)+string(rune('a'+i)), "MARKER-stat")
		require.NoError(t, err)
	}
	tb.officerFile(inv.conv.ID, "svar.pdf", pdfBytes)
	tb.Outbox.RunOnce(tb.ctx)
	unused := tb.newInvite(time.Hour)
	require.NoError(t, tb.Audit.Append(tb.ctx, "@officer:example.org", bridge.AuditCreate, unused.conv.ID, ""))
	for _, c := range []testInvite{inv, unused} {
		reason := bridge.CloseByOfficer
		if c.conv.ID == unused.conv.ID {
			reason = bridge.CloseInviteExpired
		}
		require.NoError(t, tb.Conversations.Close(tb.ctx, tb.conv(c.conv.ID), "system", reason))
	}
	st, err := bridge.Statistics(tb.ctx, tb.DB, 7)
	require.NoError(t, err)
	require.Equal(t, 2, st.Created)
	require.Equal(t, 1, st.Opened)
	require.Equal(t, 1, st.Closed)
	require.Equal(t, 1, st.Expired)
	require.Equal(t, 3, st.Messages["from_guest"], "counts survive the close that shredded the messages")
	require.Equal(t, 1, st.Files["to_guest"])
	require.NotNil(t, st.MedianSecondsToOpen)
	require.NotNil(t, st.MedianSecondsToClose)
	data, err := json.Marshal(st)
	require.NoError(t, err)
	for _, identifying := range []string{inv.conv.ID, "@officer", "MARKER", "svar.pdf"} {
		require.NotContains(t, string(data), identifying)
	}
	for _, days := range []int{0, -1, 3661} {
		_, err = bridge.Statistics(tb.ctx, tb.DB, days)
		require.Error(t, err)
	}
}
