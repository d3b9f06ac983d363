package web

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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

func TestCloseRevokesEverythingAndShredsGuestData(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	ctx := context.Background()
	res := ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("z", 16), "text": "MARKER-før-lukking"}, nil, cookie)
	require.Equal(t, http.StatusAccepted, res.Code)
	ts.officerFile(inv.conv.ID, "bilde.png", pngBytes)

	// An open event stream ends with "closed".
	srv := httptest.NewServer(ts.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/api/events", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Eventually(t, func() bool { return ts.sc.Hub.Subscribers(inv.conv.ID) == 1 }, 5*time.Second, 10*time.Millisecond)

	conv, err := ts.sc.DB.Conversation.Get(ctx, inv.conv.ID)
	require.NoError(t, err)
	require.NoError(t, ts.sc.Close(ctx, conv, "@officer:example.org", bridge.CloseByOfficer))
	body := make([]byte, 64<<10)
	n, _ := readAll(resp.Body, body)
	require.Contains(t, string(body[:n]), "event: closed")
	require.Contains(t, string(body[:n]), `"reason":"officer"`)

	// Every guest call is refused now.
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/session"}, {"GET", "/api/events"}, {"POST", "/api/messages"}, {"POST", "/api/typing"}, {"POST", "/api/read"},
	} {
		res := ts.request(c.method, c.path, map[string]any{"client_id": strings.Repeat("y", 16), "text": "x", "typing": true, "seq": 1}, nil, cookie)
		require.Contains(t, []int{http.StatusGone, http.StatusUnauthorized}, res.Code, c.path)
		require.Contains(t, []string{errConversationClosed, errNoSession}, res.errcode(), c.path)
	}
	res = ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": inv.code}, nil)
	require.Equal(t, http.StatusGone, res.Code)

	// The guest side is gone: key, transcript, files.
	_, err = ts.sc.Transcript.Since(ctx, inv.conv.ID, 0)
	require.ErrorContains(t, err, "conversation key not found")
	for _, table := range []string{"sikkerchat_transcript", "sikkerchat_file"} {
		var count int
		require.NoError(t, ts.sc.DB.QueryRow(ctx, "SELECT COUNT(*) FROM "+table+" WHERE conversation_id=$1", inv.conv.ID).Scan(&count))
		require.Zero(t, count, table)
	}
	conv, err = ts.sc.DB.Conversation.Get(ctx, inv.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.StatusClosed, conv.Status)
	require.False(t, conv.ClosedAt.IsZero())
	require.True(t, conv.PurgeAfter.After(conv.ClosedAt))
	_, notices := ts.matrix.Snapshot()
	require.Contains(t, notices[len(notices)-1], "avsluttet")

	require.ErrorIs(t, ts.sc.Close(ctx, conv, "@officer:example.org", bridge.CloseByOfficer), bridge.ErrAlreadyClosed)

	rows, err := ts.sc.Audit.ForConversation(ctx, inv.conv.ID)
	require.NoError(t, err)
	var actions []string
	for _, r := range rows {
		actions = append(actions, r.Action)
	}
	require.Equal(t, []string{bridge.AuditJoin, bridge.AuditClose}, actions)
	require.NoError(t, ts.sc.Audit.Verify(ctx))
}

func TestUnusedInviteExpiresAndCloses(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(50 * time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	ts.sc.CloseDue(context.Background())
	conv, err := ts.sc.DB.Conversation.Get(context.Background(), inv.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.StatusExpired, conv.Status)
	res := ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": inv.code}, nil)
	require.Equal(t, http.StatusGone, res.Code)
	_, notices := ts.matrix.Snapshot()
	require.NotEmpty(t, notices)
	require.Contains(t, notices[len(notices)-1], "lenken ble ikke brukt")
}

func TestAuditChainDetectsTampering(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	ctx := context.Background()
	inv := ts.newInvite(time.Hour)
	ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": "feil 11"}, nil)
	ts.join(inv)
	require.NoError(t, ts.sc.Audit.Verify(ctx))
	_, err := ts.sc.DB.Exec(ctx, "UPDATE sikkerchat_audit SET actor='@someone:else' WHERE seq=1")
	require.NoError(t, err)
	require.ErrorContains(t, ts.sc.Audit.Verify(ctx), "audit row 1 was changed")
	_, err = ts.sc.DB.Exec(ctx, "UPDATE sikkerchat_audit SET actor='guest' WHERE seq=1")
	require.NoError(t, err)
	require.NoError(t, ts.sc.Audit.Verify(ctx))
	_, err = ts.sc.DB.Exec(ctx, "DELETE FROM sikkerchat_audit WHERE seq=1")
	require.NoError(t, err)
	require.ErrorContains(t, ts.sc.Audit.Verify(ctx), "missing")
}

func readAll(r interface{ Read([]byte) (int, error) }, buf []byte) (int, error) {
	total := 0
	deadline := time.Now().Add(5 * time.Second)
	for total < len(buf) && time.Now().Before(deadline) {
		n, err := r.Read(buf[total:])
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

type fakePurger struct{ purged []id.RoomID }

func (f *fakePurger) PurgeRoom(ctx context.Context, roomID id.RoomID) error {
	f.purged = append(f.purged, roomID)
	return nil
}

func TestPurgeAfterRetentionUnlessHeld(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.Retention = "50ms"
	ts := newTestServer(t, cfg)
	purger := &fakePurger{}
	ts.sc.Purger = purger
	ctx := context.Background()
	held, free := ts.newInvite(time.Hour), ts.newInvite(time.Hour)
	for _, inv := range []createdInvite{held, free} {
		conv, err := ts.sc.DB.Conversation.Get(ctx, inv.conv.ID)
		require.NoError(t, err)
		require.NoError(t, ts.sc.Close(ctx, conv, "@officer:example.org", bridge.CloseByOfficer))
	}
	heldConv, err := ts.sc.DB.Conversation.Get(ctx, held.conv.ID)
	require.NoError(t, err)
	require.NoError(t, ts.sc.SetHold(ctx, heldConv, "@lead:example.org", true, ""))

	ts.sc.PurgeDue(ctx)
	require.Empty(t, purger.purged, "nothing is due before retention ends")
	time.Sleep(80 * time.Millisecond)
	ts.sc.PurgeDue(ctx)
	require.Equal(t, []id.RoomID{free.conv.RoomID}, purger.purged, "the held room survives")

	gone, err := ts.sc.DB.Conversation.Get(ctx, free.conv.ID)
	require.NoError(t, err)
	require.Nil(t, gone, "the bridge keeps no rows of a purged conversation")
	rows, err := ts.sc.Audit.ForConversation(ctx, free.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.AuditPurge, rows[len(rows)-1].Action, "the audit trail outlives the purge")
	require.NoError(t, ts.sc.Audit.Verify(ctx))

	require.NoError(t, ts.sc.SetHold(ctx, heldConv, "@lead:example.org", false, "saken er henlagt"))
	ts.sc.PurgeDue(ctx)
	require.Len(t, purger.purged, 2, "unhold lets the purge happen")
}

// A copy of the database taken before close, read after close, yields nothing:
// the rows were always sealed, and the only key is destroyed outside the database.
func TestDatabaseCopyIsUnreadableAfterClose(t *testing.T) {
	if testdb.IsPostgres() {
		t.Skip("copies the SQLite file; on Postgres the key store is the same code")
	}
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	ctx := context.Background()
	const marker = "MARKER-kopi-av-databasen"
	res := ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("k", 16), "text": marker}, nil, cookie)
	require.Equal(t, http.StatusAccepted, res.Code)
	entry := &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: "$o", CreatedAt: time.Now(), Kind: "text", Text: marker + "-svar"}
	_, err := ts.sc.Transcript.Append(ctx, inv.conv.ID, entry)
	require.NoError(t, err)

	copyPath := filepath.Join(t.TempDir(), "copy.db")
	_, err = ts.sc.DB.Exec(ctx, "VACUUM INTO '"+copyPath+"'")
	require.NoError(t, err)

	conv, err := ts.sc.DB.Conversation.Get(ctx, inv.conv.ID)
	require.NoError(t, err)
	require.NoError(t, ts.sc.Close(ctx, conv, "@officer:example.org", bridge.CloseByOfficer))

	data, err := os.ReadFile(copyPath)
	require.NoError(t, err)
	require.False(t, bytes.Contains(data, []byte(marker)), "no plaintext in the copy")
	raw, err := dbutil.NewWithDialect("file:"+copyPath+"?mode=ro", "sqlite3")
	require.NoError(t, err)
	defer raw.Close()
	var sealedRows int
	require.NoError(t, raw.QueryRow(ctx, "SELECT COUNT(*) FROM sikkerchat_transcript WHERE conversation_id=$1", inv.conv.ID).Scan(&sealedRows))
	require.Equal(t, 2, sealedRows, "the copy still has the sealed rows")
	copied := bridge.NewTranscript(scdb.New(raw, dbutil.NoopLogger), ts.sc.Transcript.Keys(), []byte(strings.Repeat("\x00", 32)))
	_, err = copied.Since(ctx, inv.conv.ID, 0)
	require.ErrorContains(t, err, "conversation key not found", "with the bridge's own keys and master key, nothing opens")
}

func TestStatisticsAreAnonymousCounts(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	ctx := context.Background()
	inv := ts.newInvite(time.Hour)
	require.NoError(t, ts.sc.Audit.Append(ctx, "@officer:example.org", bridge.AuditCreate, inv.conv.ID, ""))
	cookie := ts.join(inv)
	for i := range 3 {
		ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("s", 16) + string(rune('a'+i)), "text": "MARKER-stat"}, nil, cookie)
	}
	ts.officerFile(inv.conv.ID, "svar.pdf", pdfBytes)
	unused := ts.newInvite(time.Hour)
	require.NoError(t, ts.sc.Audit.Append(ctx, "@officer:example.org", bridge.AuditCreate, unused.conv.ID, ""))
	for _, c := range []createdInvite{inv, unused} {
		conv, err := ts.sc.DB.Conversation.Get(ctx, c.conv.ID)
		require.NoError(t, err)
		reason := bridge.CloseByOfficer
		if c.conv.ID == unused.conv.ID {
			reason = bridge.CloseInviteExpired
		}
		require.NoError(t, ts.sc.Close(ctx, conv, "system", reason))
	}
	st, err := ts.sc.Statistics(ctx, 7)
	require.NoError(t, err)
	require.Equal(t, 2, st.Created)
	require.Equal(t, 1, st.Opened)
	require.Equal(t, 1, st.Closed)
	require.Equal(t, 1, st.Expired)
	require.Equal(t, 3, st.Messages["from_guest"], "counts survive the close that shredded the messages")
	require.Equal(t, 1, st.Files["to_guest"])
	require.NotNil(t, st.MedianSecondsToOpen)
	data, err := json.Marshal(st)
	require.NoError(t, err)
	for _, identifying := range []string{inv.conv.ID, "@officer", "MARKER", "svar.pdf"} {
		require.NotContains(t, string(data), identifying)
	}
	_, err = ts.sc.Statistics(ctx, 0)
	require.Error(t, err)
}
