package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Why a link cannot be used, in the order the guest should hear it: a
// closed conversation or a revoked link first (nothing to do but ask the
// police), then "already used" (the guest's own earlier visit), then
// "expired", then a link whose attempts are used up. The moment of expiry
// itself is expired.
func TestJoinableGivesTheReasonTheGuestShouldHear(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli())
	open := &Conversation{Status: StatusActive}
	fresh := func(change func(inv *Invite)) *Invite {
		inv := &Invite{ExpiresAt: now.Add(time.Hour), FailedAttempts: 0}
		if change != nil {
			change(inv)
		}
		return inv
	}
	for _, tc := range []struct {
		name string
		conv *Conversation
		inv  *Invite
		want error
	}{
		{"usable", open, fresh(nil), nil},
		{"new conversation", &Conversation{Status: StatusCreated}, fresh(nil), nil},
		{"one attempt left", open, fresh(func(inv *Invite) { inv.FailedAttempts = 4 }), nil},
		{"conversation gone", nil, fresh(nil), ErrInviteRevoked},
		{"conversation closed", &Conversation{Status: StatusClosed}, fresh(nil), ErrInviteRevoked},
		{"conversation expired", &Conversation{Status: StatusExpired}, fresh(nil), ErrInviteRevoked},
		{"link revoked", open, fresh(func(inv *Invite) { inv.RevokedAt = now }), ErrInviteRevoked},
		{"revoked and used", open, fresh(func(inv *Invite) { inv.RevokedAt, inv.UsedAt = now, now }), ErrInviteRevoked},
		{"used", open, fresh(func(inv *Invite) { inv.UsedAt = now }), ErrInviteUsed},
		{"used, then expired", open, fresh(func(inv *Invite) { inv.UsedAt, inv.ExpiresAt = now, now.Add(-time.Hour) }), ErrInviteUsed},
		{"expires this very moment", open, fresh(func(inv *Invite) { inv.ExpiresAt = now }), ErrInviteExpired},
		{"expired with attempts used up", open, fresh(func(inv *Invite) { inv.ExpiresAt, inv.FailedAttempts = now, 5 }), ErrInviteExpired},
		{"attempts used up", open, fresh(func(inv *Invite) { inv.FailedAttempts = 5 }), ErrInviteRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, joinable(tc.conv, tc.inv, now, 5))
		})
	}
}

// A wrong code word reads as "wrong code word" however many tries are left,
// and is recognisable as such by the guest listener.
func TestCodeWrongErrorIsAWrongCode(t *testing.T) {
	err := error(&CodeWrongError{AttemptsLeft: 2})
	require.ErrorIs(t, err, ErrCodeWrong)
	require.Equal(t, ErrCodeWrong.Error(), err.Error())
	require.NotContains(t, err.Error(), "2")
}

// When the link changed between reading it and claiming an attempt (another
// browser used it, the officer reissued, the conversation was purged), the
// guest is told what happened meanwhile, not a generic failure.
func TestARacedJoinIsToldWhatHappenedMeanwhile(t *testing.T) {
	sc, _, _ := gstConnector(t)
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		name   string
		change func(conv *Conversation, tokenHash []byte)
		want   error
	}{
		{"another browser used it", func(_ *Conversation, hash []byte) {
			ok, err := sc.DB.Invite.Consume(ctx, hash, now, sc.Config.MaxCodeAttempts)
			require.NoError(t, err)
			require.True(t, ok)
		}, ErrInviteUsed},
		{"the link was reissued", func(conv *Conversation, _ []byte) {
			require.NoError(t, sc.DB.Invite.RevokeUnused(ctx, conv.ID, now))
		}, ErrInviteRevoked},
		{"the conversation was closed", func(conv *Conversation, _ []byte) {
			_, err := sc.DB.Conversation.Close(ctx, conv.ID, StatusClosed, now, now)
			require.NoError(t, err)
		}, ErrInviteRevoked},
		{"the conversation was purged", func(conv *Conversation, _ []byte) {
			require.NoError(t, sc.DB.Conversation.Delete(ctx, conv.ID))
		}, ErrInviteUnknown},
		{"nothing visible changed", func(*Conversation, []byte) {}, ErrInviteRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conv, token, _ := newTestConversation(t, sc.DB, sc.Transcript)
			hash := HashInviteToken(token)
			tc.change(conv, hash)
			require.Equal(t, tc.want, sc.Guests.whyNotJoinable(ctx, hash, now))
		})
	}
}
