package bridge_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// Every way a link can be unusable gives the guest its own answer, and none
// of them lets a code word be checked (or counted as a wrong guess).
func TestJoinRefusesUnusableLinksWithTheirOwnReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		// prepare returns the token and code the guest sends.
		prepare func(tb *testBridge) (token, code string)
		want    error
	}{
		{"malformed token", func(tb *testBridge) (string, string) {
			return "not-a-token", tb.newInvite(time.Hour).code
		}, bridge.ErrBadToken},
		{"no code word", func(tb *testBridge) (string, string) {
			return tb.newInvite(time.Hour).token, " -. "
		}, bridge.ErrCodeMissing},
		{"token nobody issued", func(tb *testBridge) (string, string) {
			token, _, err := bridge.NewInviteToken()
			require.NoError(t, err)
			return token, "tiger 47"
		}, bridge.ErrInviteUnknown},
		{"link past its expiry", func(tb *testBridge) (string, string) {
			inv := tb.newInvite(-time.Minute)
			return inv.token, inv.code
		}, bridge.ErrInviteExpired},
		{"link past its expiry, wrong code", func(tb *testBridge) (string, string) {
			return tb.newInvite(-time.Minute).token, "feil kode 10"
		}, bridge.ErrInviteExpired},
		{"link already used", func(tb *testBridge) (string, string) {
			inv := tb.newInvite(time.Hour)
			tb.join(inv)
			return inv.token, inv.code
		}, bridge.ErrInviteUsed},
		{"link replaced by a reissue", func(tb *testBridge) (string, string) {
			inv := tb.newInvite(time.Hour)
			_, err := tb.Conversations.Reissue(tb.ctx, inv.conv, "@officer:example.org")
			require.NoError(t, err)
			return inv.token, inv.code
		}, bridge.ErrInviteRevoked},
		{"conversation closed", func(tb *testBridge) (string, string) {
			inv := tb.newInvite(time.Hour)
			require.NoError(t, tb.Conversations.Close(tb.ctx, inv.conv, "@officer:example.org", bridge.CloseByOfficer))
			return inv.token, inv.code
		}, bridge.ErrInviteRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestBridge(t, newTestConfig(t))
			token, code := tc.prepare(tb)
			var failedBefore int
			if inv, _ := tb.DB.Invite.Get(tb.ctx, bridge.HashInviteToken(token)); inv != nil {
				failedBefore = inv.FailedAttempts
			}
			sessions := tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_guest_session`)
			session, conv, err := tb.Guests.Join(tb.ctx, token, code)
			require.ErrorIs(t, err, tc.want)
			require.Empty(t, session)
			require.Nil(t, conv)
			require.Equal(t, sessions, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_guest_session`), "no session was made")
			if inv, _ := tb.DB.Invite.Get(tb.ctx, bridge.HashInviteToken(token)); inv != nil {
				require.Equal(t, failedBefore, inv.FailedAttempts, "no code word was checked")
				require.Zero(t, countOf(tb.auditActions(inv.ConversationID), bridge.AuditCodeFailed))
			}
		})
	}
}

// The right code word opens the conversation: a random session cookie of
// which only a hash is stored, the conversation active since now, the join
// in the audit trail, and the officers told in the room (with the state
// event for integrators updated on the first join).
func TestJoinOpensASessionAndTellsTheRoom(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	before := time.Now().Add(-time.Second)
	// The guest types the code as people do: other case, a dash, spaces.
	typed := strings.ToUpper(strings.Replace(inv.code, " ", "-", 1)) + "  "
	session, conv, err := tb.Guests.Join(tb.ctx, inv.token, typed)
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(session)
	require.NoError(t, err)
	require.Len(t, raw, 32, "256 random bits")
	require.Equal(t, bridge.StatusActive, conv.Status)
	require.True(t, conv.JoinedAt.After(before))

	stored := tb.conv(inv.conv.ID)
	require.Equal(t, bridge.StatusActive, stored.Status)
	require.False(t, stored.JoinedAt.IsZero())
	var hash []byte
	require.NoError(t, tb.DB.QueryRow(tb.ctx, `SELECT token_hash FROM sikkerchat_guest_session WHERE conversation_id=$1`, inv.conv.ID).Scan(&hash))
	require.False(t, bytes.Contains(hash, raw), "the cookie value itself is never stored")
	require.NotContains(t, string(hash), session)
	sess, sessConv, err := tb.Guests.CheckSession(tb.ctx, session)
	require.NoError(t, err)
	require.Equal(t, inv.conv.ID, sess.ConversationID)
	require.Equal(t, inv.conv.ID, sessConv.ID)

	invite, err := tb.DB.Invite.Get(tb.ctx, bridge.HashInviteToken(inv.token))
	require.NoError(t, err)
	require.False(t, invite.UsedAt.IsZero(), "the link is single use")
	require.Zero(t, invite.FailedAttempts, "the right code is no failed attempt")
	require.Equal(t, []string{bridge.AuditJoin}, tb.auditActions(inv.conv.ID))
	gstEventually(t, func() bool {
		tb.matrix.Lock()
		defer tb.matrix.Unlock()
		return len(tb.matrix.Notices) == 1 && len(tb.matrix.States) == 1
	}, "the room hears of the join and the state event says active")
	tb.matrix.Lock()
	require.Equal(t, "Gjesten har åpnet samtalen.", tb.matrix.Notices[0])
	require.Equal(t, string(bridge.StatusActive), tb.matrix.States[0])
	tb.matrix.Unlock()
}

// A guest who joins again through a reissued link is announced, but the
// conversation keeps its first join time and the state event (already
// "active") is not written again.
func TestJoiningAgainAfterAReissueKeepsTheFirstJoin(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	_, first, err := tb.Guests.Join(tb.ctx, inv.token, inv.code)
	require.NoError(t, err)
	gstEventually(t, func() bool { _, n := tb.matrix.Snapshot(); return len(n) == 1 }, "first join announced")
	created, err := tb.Conversations.Reissue(tb.ctx, first, "@officer:example.org")
	require.NoError(t, err)
	tb.matrix.Lock()
	statesAfterReissue := len(tb.matrix.States)
	tb.matrix.Unlock()

	token := created.URL[strings.LastIndex(created.URL, "#")+1:]
	_, again, err := tb.Guests.Join(tb.ctx, token, created.Code)
	require.NoError(t, err)
	require.Equal(t, first.JoinedAt.UnixMilli(), tb.conv(inv.conv.ID).JoinedAt.UnixMilli())
	require.Equal(t, bridge.StatusActive, again.Status)
	gstEventually(t, func() bool { _, n := tb.matrix.Snapshot(); return len(n) == 2 }, "second join announced")
	tb.matrix.Lock()
	require.Equal(t, statesAfterReissue, len(tb.matrix.States), "no second state update for a second join")
	tb.matrix.Unlock()
	require.Equal(t, 2, countOf(tb.auditActions(inv.conv.ID), bridge.AuditJoin))
}

// Each wrong code word tells the guest how many tries are left; the last
// one blocks the link, tells the officers to reissue, and is counted.
func TestWrongCodeWordsCountDownAndBlockTheLink(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.MaxCodeAttempts = 3
	tb := newTestBridge(t, cfg)
	inv := tb.newInvite(time.Hour)
	for left := 2; left >= 1; left-- {
		_, _, err := tb.Guests.Join(tb.ctx, inv.token, "feil kode 12")
		var wrong *bridge.CodeWrongError
		require.ErrorAs(t, err, &wrong)
		require.Equal(t, left, wrong.AttemptsLeft)
		require.ErrorIs(t, err, bridge.ErrCodeWrong)
		require.Equal(t, bridge.ErrCodeWrong.Error(), err.Error(), "the guest learns nothing about the code")
	}
	_, _, err := tb.Guests.Join(tb.ctx, inv.token, "feil kode 13")
	require.ErrorIs(t, err, bridge.ErrInviteRevoked)
	invite, err := tb.DB.Invite.Get(tb.ctx, bridge.HashInviteToken(inv.token))
	require.NoError(t, err)
	require.False(t, invite.RevokedAt.IsZero(), "the link is burned")
	require.Equal(t, []string{bridge.AuditCodeFailed, bridge.AuditCodeFailed, bridge.AuditCodeFailed, bridge.AuditBurned}, tb.auditActions(inv.conv.ID))
	require.Equal(t, 3.0, gstMetric(t, tb.Metrics, "sikkerchat_errors_total", "kind", bridge.ErrKindWrongCode))
	_, notices := tb.matrix.Snapshot()
	require.Len(t, notices, 1)
	require.Contains(t, notices[0], "3 ganger")
	require.Contains(t, notices[0], "!sc reissue")

	// A fourth try, even with the right code, claims nothing and says why.
	_, _, err = tb.Guests.Join(tb.ctx, inv.token, inv.code)
	require.ErrorIs(t, err, bridge.ErrInviteRevoked)
	require.Equal(t, bridge.StatusCreated, tb.conv(inv.conv.ID).Status)
}

// Two browsers racing with the same link and the right code (the citizen
// tapping twice, or someone who saw the message): exactly one gets in, the
// other is told the link is used.
func TestOnlyOneOfParallelRightCodeJoinsGetsIn(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	// Fewer browsers than code attempts: each one's code word is checked.
	browsers := tb.Config.MaxCodeAttempts - 1
	errs := make([]error, browsers)
	sessions := make([]string, browsers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			sessions[i], _, errs[i] = tb.Guests.Join(tb.ctx, inv.token, inv.code)
		}()
	}
	close(start)
	wg.Wait()
	joined := 0
	for i, err := range errs {
		if err == nil {
			joined++
			require.NotEmpty(t, sessions[i])
			continue
		}
		require.ErrorIs(t, err, bridge.ErrInviteUsed)
	}
	require.Equal(t, 1, joined)
	require.Equal(t, 1, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_guest_session WHERE conversation_id=$1`, inv.conv.ID))
	require.Equal(t, []string{bridge.AuditJoin}, tb.auditActions(inv.conv.ID), "one join, no failed code")
}
