package bridge

import (
	"crypto/sha256"
	"errors"
	"time"
)

// Join errors, each with its own message on the guest page.
var (
	ErrInviteUnknown = errors.New("invite unknown")
	ErrInviteUsed    = errors.New("invite already used")
	ErrInviteExpired = errors.New("invite expired")
	ErrInviteRevoked = errors.New("invite revoked")
	ErrCodeWrong     = errors.New("wrong code word")
	ErrCodeMissing   = errors.New("code word missing")
	ErrBadToken      = errBadToken
	ErrNoSession     = errors.New("no guest session")
	ErrSessionIdle   = errors.New("guest session expired")
	// ErrConversationNotOpen is returned for guest actions on a conversation
	// that is closed, expired or unknown.
	ErrConversationNotOpen = errors.New("conversation is not open")
)

// CodeWrongError tells the guest how many tries are left.
type CodeWrongError struct{ AttemptsLeft int }

func (e *CodeWrongError) Error() string { return ErrCodeWrong.Error() }
func (e *CodeWrongError) Unwrap() error { return ErrCodeWrong }

func hashSessionToken(token string) []byte {
	sum := sha256.Sum256([]byte("sikkerchat-session:" + token))
	return sum[:]
}

// joinable tells why an invite cannot be joined now, or nil.
func joinable(conv *Conversation, inv *Invite, now time.Time, maxAttempts int) error {
	switch {
	case conv == nil || conv.Status == StatusClosed || conv.Status == StatusExpired || !inv.RevokedAt.IsZero():
		return ErrInviteRevoked
	case !inv.UsedAt.IsZero():
		return ErrInviteUsed
	case !now.Before(inv.ExpiresAt):
		return ErrInviteExpired
	case inv.FailedAttempts >= maxAttempts:
		return ErrInviteRevoked // burned, or about to be by the request that made the last wrong guess
	}
	return nil
}
