package bridge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// A session cookie works only while its session and conversation live:
// anything else is refused, with "not open" for a closed conversation so
// that the page can say the conversation has ended.
func TestCheckSessionRefusesWhatIsNotALiveSession(t *testing.T) {
	for _, tc := range []struct {
		name string
		// cookie returns what the browser sends after doing its part.
		cookie func(tb *testBridge, inv testInvite, session string) string
		want   error
	}{
		{"no cookie", func(*testBridge, testInvite, string) string { return "" }, bridge.ErrNoSession},
		{"cookie nobody issued", func(*testBridge, testInvite, string) string { return "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, bridge.ErrNoSession},
		{"quick exit", func(tb *testBridge, _ testInvite, s string) string {
			require.NoError(t, tb.Guests.EndSession(tb.ctx, s))
			return s
		}, bridge.ErrNoSession},
		{"link reissued", func(tb *testBridge, inv testInvite, s string) string {
			_, err := tb.Conversations.Reissue(tb.ctx, tb.conv(inv.conv.ID), "@officer:example.org")
			require.NoError(t, err)
			return s
		}, bridge.ErrNoSession},
		{"conversation closed", func(tb *testBridge, inv testInvite, s string) string {
			require.NoError(t, tb.Conversations.Close(tb.ctx, tb.conv(inv.conv.ID), "@officer:example.org", bridge.CloseByOfficer))
			return s
		}, bridge.ErrConversationNotOpen},
		{"conversation expired", func(tb *testBridge, inv testInvite, s string) string {
			_, err := tb.DB.Exec(tb.ctx, `UPDATE sikkerchat_conversation SET status='expired' WHERE id=$1`, inv.conv.ID)
			require.NoError(t, err)
			return s
		}, bridge.ErrConversationNotOpen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestBridge(t, newTestConfig(t))
			inv := tb.newInvite(time.Hour)
			session := tb.join(inv)
			_, _, err := tb.Guests.CheckSession(tb.ctx, session)
			require.NoError(t, err, "the session works before")
			sess, conv, err := tb.Guests.CheckSession(tb.ctx, tc.cookie(tb, inv, session))
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, sess)
			require.Nil(t, conv)
		})
	}
}

// A guest who did nothing for session_idle_timeout is let out, for good:
// the session is revoked, so the next request has no session at all.
func TestIdleGuestSessionExpiresForGood(t *testing.T) {
	cfg := newTestConfig(t)
	tb := newTestBridge(t, cfg)
	inv := tb.newInvite(time.Hour)
	session := tb.join(inv)
	idle := tb.Config.Guest.SessionIdle
	_, err := tb.DB.Exec(tb.ctx, `UPDATE sikkerchat_guest_session SET last_seen_at=$2 WHERE conversation_id=$1`,
		inv.conv.ID, time.Now().Add(-idle-time.Minute).UnixMilli())
	require.NoError(t, err)
	_, _, err = tb.Guests.CheckSession(tb.ctx, session)
	require.ErrorIs(t, err, bridge.ErrSessionIdle)
	require.Equal(t, 1, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_guest_session WHERE conversation_id=$1 AND revoked_at IS NOT NULL`, inv.conv.ID))

	// Bringing the clock back (a clock jump, a copied cookie) does not revive it.
	_, err = tb.DB.Exec(tb.ctx, `UPDATE sikkerchat_guest_session SET last_seen_at=$2 WHERE conversation_id=$1`, inv.conv.ID, time.Now().UnixMilli())
	require.NoError(t, err)
	_, _, err = tb.Guests.CheckSession(tb.ctx, session)
	require.ErrorIs(t, err, bridge.ErrNoSession)
	require.Equal(t, bridge.StatusActive, tb.conv(inv.conv.ID).Status, "the conversation stays open for the police")
}

// Activity keeps a session alive: a request moves the idle clock forward,
// so a guest who keeps talking is never let out. Requests a few seconds
// apart do not each write to the database.
func TestGuestActivityKeepsTheSessionAlive(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	session := tb.join(inv)
	lastSeen := func() time.Time {
		var ms int64
		require.NoError(t, tb.DB.QueryRow(tb.ctx, `SELECT last_seen_at FROM sikkerchat_guest_session WHERE conversation_id=$1`, inv.conv.ID).Scan(&ms))
		return time.UnixMilli(ms)
	}
	setLastSeen := func(at time.Time) {
		_, err := tb.DB.Exec(tb.ctx, `UPDATE sikkerchat_guest_session SET last_seen_at=$2 WHERE conversation_id=$1`, inv.conv.ID, at.UnixMilli())
		require.NoError(t, err)
	}
	idle := tb.Config.Guest.SessionIdle

	// Most of the idle time has passed: the request counts as activity.
	setLastSeen(time.Now().Add(-idle + time.Minute))
	before := time.Now().Add(-time.Second)
	sess, _, err := tb.Guests.CheckSession(tb.ctx, session)
	require.NoError(t, err)
	require.True(t, lastSeen().After(before), "the idle clock starts again")
	require.True(t, sess.LastSeenAt.After(before))

	// Five seconds ago is recent enough: no write.
	recent := time.UnixMilli(time.Now().Add(-5 * time.Second).UnixMilli())
	setLastSeen(recent)
	_, _, err = tb.Guests.CheckSession(tb.ctx, session)
	require.NoError(t, err)
	require.True(t, recent.Equal(lastSeen()))
}

// Quick exit ends the browser's access only: the conversation stays open
// for the police, and a new link from them lets the guest back in.
func TestQuickExitLeavesTheConversationOpen(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	session := tb.join(inv)
	require.NoError(t, tb.Guests.EndSession(tb.ctx, session))
	require.NoError(t, tb.Guests.EndSession(tb.ctx, session), "leaving twice is fine")
	require.NoError(t, tb.Guests.EndSession(tb.ctx, "never-issued"), "an unknown cookie is no error")
	_, _, err := tb.Guests.CheckSession(tb.ctx, session)
	require.ErrorIs(t, err, bridge.ErrNoSession)
	conv := tb.conv(inv.conv.ID)
	require.Equal(t, bridge.StatusActive, conv.Status)

	created, err := tb.Conversations.Reissue(tb.ctx, conv, "@officer:example.org")
	require.NoError(t, err)
	again, _, err := tb.Guests.Join(tb.ctx, created.URL[strings.LastIndex(created.URL, "#")+1:], created.Code)
	require.NoError(t, err)
	_, back, err := tb.Guests.CheckSession(tb.ctx, again)
	require.NoError(t, err)
	require.Equal(t, inv.conv.ID, back.ID)
}
