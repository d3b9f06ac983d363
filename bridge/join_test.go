package bridge_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// Guesses fired in parallel (from as many addresses as the attacker likes)
// are each checked only after claiming one of the invite's attempts, so no
// more than max_code_attempts codes are ever checked.
func TestParallelWrongCodesCannotBeatTheAttemptLimit(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	const guesses = 100
	results := make([]error, guesses)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, results[i] = tb.Guests.Join(tb.ctx, inv.token, "feil kode 99")
		}()
	}
	close(start)
	wg.Wait()
	wrong, revoked := 0, 0
	for _, err := range results {
		var cw *bridge.CodeWrongError
		switch {
		case errorsAs(err, &cw):
			wrong++
		case err == bridge.ErrInviteRevoked:
			revoked++
		default:
			t.Fatalf("unexpected join result: %v", err)
		}
	}
	max := tb.Config.MaxCodeAttempts
	require.Equal(t, max-1, wrong, "every guess but the last checked one tells how many are left")
	require.Equal(t, guesses-wrong, revoked)
	actions := tb.auditActions(inv.conv.ID)
	require.Equal(t, max, countOf(actions, bridge.AuditCodeFailed), "exactly max_code_attempts codes were checked")
	require.Equal(t, 1, countOf(actions, bridge.AuditBurned), "the invite is burned once")

	// The right code after the limit is refused: the invite is dead.
	_, _, err := tb.Guests.Join(tb.ctx, inv.token, inv.code)
	require.ErrorIs(t, err, bridge.ErrInviteRevoked)
	_, notices := tb.matrix.Snapshot()
	require.Len(t, notices, 1, "the room is told once to reissue")
}

// A right code among parallel wrong ones either gets in (its attempt was
// within the limit) or is refused with the rest; never more than the limit
// is checked, and a guest who gets in is counted as no failure.
func TestRightCodeAmongParallelGuessesStaysWithinTheLimit(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	var wg sync.WaitGroup
	start := make(chan struct{})
	var joined sync.Map
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code := "feil kode 12"
			if i == 20 {
				code = inv.code
			}
			if _, _, err := tb.Guests.Join(tb.ctx, inv.token, code); err == nil {
				joined.Store(i, true)
			}
		}()
	}
	close(start)
	wg.Wait()
	actions := tb.auditActions(inv.conv.ID)
	require.LessOrEqual(t, countOf(actions, bridge.AuditCodeFailed), tb.Config.MaxCodeAttempts)
	n := 0
	joined.Range(func(key, _ any) bool { n++; require.Equal(t, 20, key); return true })
	require.LessOrEqual(t, n, 1)
	inviteRow, err := tb.DB.Invite.Get(tb.ctx, bridge.HashInviteToken(inv.token))
	require.NoError(t, err)
	require.Equal(t, countOf(actions, bridge.AuditCodeFailed), inviteRow.FailedAttempts, "the stored count is the wrong codes checked")
}

// The moment between the last allowed wrong guess and its burn: the count
// is at the limit but the invite is not revoked yet. A right code arriving
// then (a guess racing the burn) must not get in.
func TestRightCodeIsRefusedOnceTheAttemptsAreUsedUp(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	_, err := tb.DB.Exec(tb.ctx, `UPDATE sikkerchat_invite SET failed_attempts=$2 WHERE conversation_id=$1`, inv.conv.ID, tb.Config.MaxCodeAttempts)
	require.NoError(t, err)
	_, _, err = tb.Guests.Join(tb.ctx, inv.token, inv.code)
	require.ErrorIs(t, err, bridge.ErrInviteRevoked)
	conv, err := tb.DB.Conversation.Get(tb.ctx, inv.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.StatusCreated, conv.Status, "nobody joined")
}
