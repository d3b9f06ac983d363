package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
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
	require.NoError(t, ts.sc.Conversations.Close(ctx, conv, "@officer:example.org", bridge.CloseByOfficer))
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

	require.ErrorIs(t, ts.sc.Conversations.Close(ctx, conv, "@officer:example.org", bridge.CloseByOfficer), bridge.ErrAlreadyClosed)

	rows, err := ts.sc.Audit.ForConversation(ctx, inv.conv.ID)
	require.NoError(t, err)
	var actions []string
	for _, r := range rows {
		actions = append(actions, r.Action)
	}
	require.Equal(t, []string{bridge.AuditJoin, bridge.AuditClose}, actions)
	require.NoError(t, ts.sc.Audit.Verify(ctx))
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
