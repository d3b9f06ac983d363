package scdb

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.mau.fi/util/dbutil"
)

// Invite is one link + code word for a conversation. Token and code are
// never stored: only the token's SHA-256 and the code's HMAC keyed with it.
type Invite struct {
	TokenHash      []byte
	ConversationID string
	CodeMAC        []byte
	CreatedAt      time.Time
	ExpiresAt      time.Time
	UsedAt         time.Time
	RevokedAt      time.Time
	FailedAttempts int
}

// InviteQuery is the queries on sikkerchat_invite.
type InviteQuery struct {
	*dbutil.QueryHelper[*Invite]
}

const (
	inviteColumns     = `token_hash, conversation_id, code_mac, created_at, expires_at, used_at, revoked_at, failed_attempts`
	insertInviteQuery = `INSERT INTO sikkerchat_invite (` + inviteColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	getInviteQuery    = `SELECT ` + inviteColumns + ` FROM sikkerchat_invite WHERE token_hash=$1`
	// The attempt is claimed before the code word is checked, in one
	// conditional UPDATE: guesses fired in parallel can never be checked more
	// than the allowed number of times. A right code gives its claim back when
	// it consumes the invite.
	claimAttemptQuery = `UPDATE sikkerchat_invite SET failed_attempts=failed_attempts+1
		WHERE token_hash=$1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at>$2 AND failed_attempts<$3
		RETURNING failed_attempts`
	consumeInviteQuery = `UPDATE sikkerchat_invite SET used_at=$2, failed_attempts=failed_attempts-1
		WHERE token_hash=$1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at>$2 AND failed_attempts<=$3`
	burnInviteQuery          = `UPDATE sikkerchat_invite SET revoked_at=$2 WHERE token_hash=$1 AND revoked_at IS NULL`
	revokeUnusedInvitesQuery = `UPDATE sikkerchat_invite SET revoked_at=$2 WHERE conversation_id=$1 AND revoked_at IS NULL AND used_at IS NULL`
	revokeAllInvitesQuery    = `UPDATE sikkerchat_invite SET revoked_at=$2 WHERE conversation_id=$1 AND revoked_at IS NULL`
)

func (inv *Invite) Scan(row dbutil.Scannable) (*Invite, error) {
	var createdAt, expiresAt int64
	var usedAt, revokedAt sql.NullInt64
	err := row.Scan(&inv.TokenHash, &inv.ConversationID, &inv.CodeMAC, &createdAt, &expiresAt, &usedAt, &revokedAt, &inv.FailedAttempts)
	if err != nil {
		return nil, err
	}
	inv.CreatedAt = time.UnixMilli(createdAt)
	inv.ExpiresAt = time.UnixMilli(expiresAt)
	inv.UsedAt = timeFromNull(usedAt)
	inv.RevokedAt = timeFromNull(revokedAt)
	return inv, nil
}

func (inv *Invite) sqlVariables() []any {
	return []any{inv.TokenHash, inv.ConversationID, inv.CodeMAC, inv.CreatedAt.UnixMilli(), inv.ExpiresAt.UnixMilli(),
		nullFromTime(inv.UsedAt), nullFromTime(inv.RevokedAt), inv.FailedAttempts}
}

// Get returns an invite by its token's hash; nil if there is none.
func (iq *InviteQuery) Get(ctx context.Context, tokenHash []byte) (*Invite, error) {
	return iq.QueryOne(ctx, getInviteQuery, tokenHash)
}

// Insert stores an invite.
func (iq *InviteQuery) Insert(ctx context.Context, inv *Invite) error {
	return iq.Exec(ctx, insertInviteQuery, inv.sqlVariables()...)
}

// ClaimAttempt counts one code-word attempt before the code is checked.
// It returns the attempt's number, or ok=false when the invite cannot be
// tried any more (used, revoked, expired or out of attempts).
func (iq *InviteQuery) ClaimAttempt(ctx context.Context, tokenHash []byte, now time.Time, maxAttempts int) (attempt int, ok bool, err error) {
	err = iq.GetDB().QueryRow(ctx, claimAttemptQuery, tokenHash, now.UnixMilli(), maxAttempts).Scan(&attempt)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return attempt, err == nil, err
}

// Consume uses the invite once and gives the claimed attempt back; false if
// another request used, revoked or burned it first.
func (iq *InviteQuery) Consume(ctx context.Context, tokenHash []byte, now time.Time, maxAttempts int) (bool, error) {
	return affectedOne(iq.GetDB().Exec(ctx, consumeInviteQuery, tokenHash, now.UnixMilli(), maxAttempts))
}

// Burn revokes one invite (too many wrong code words).
func (iq *InviteQuery) Burn(ctx context.Context, tokenHash []byte, now time.Time) error {
	return iq.Exec(ctx, burnInviteQuery, tokenHash, now.UnixMilli())
}

// RevokeUnused revokes a conversation's invites that were not used (a reissue).
func (iq *InviteQuery) RevokeUnused(ctx context.Context, conversationID string, now time.Time) error {
	return iq.Exec(ctx, revokeUnusedInvitesQuery, conversationID, now.UnixMilli())
}

// RevokeAll revokes every invite of a conversation (a close).
func (iq *InviteQuery) RevokeAll(ctx context.Context, conversationID string, now time.Time) error {
	return iq.Exec(ctx, revokeAllInvitesQuery, conversationID, now.UnixMilli())
}
