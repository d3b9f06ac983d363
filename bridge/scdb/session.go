package scdb

import (
	"context"
	"database/sql"
	"time"

	"go.mau.fi/util/dbutil"
)

// GuestSession is a browser's right to act as the guest of one conversation.
// Only the SHA-256 of the cookie value is stored.
type GuestSession struct {
	TokenHash      []byte
	ConversationID string
	CreatedAt      time.Time
	LastSeenAt     time.Time
	RevokedAt      time.Time
}

// SessionQuery is the queries on sikkerchat_guest_session.
type SessionQuery struct {
	*dbutil.QueryHelper[*GuestSession]
}

const (
	insertSessionQuery              = `INSERT INTO sikkerchat_guest_session (token_hash, conversation_id, created_at, last_seen_at) VALUES ($1, $2, $3, $3)`
	getSessionQuery                 = `SELECT token_hash, conversation_id, created_at, last_seen_at, revoked_at FROM sikkerchat_guest_session WHERE token_hash=$1`
	touchSessionQuery               = `UPDATE sikkerchat_guest_session SET last_seen_at=$2 WHERE token_hash=$1 AND revoked_at IS NULL`
	revokeSessionQuery              = `UPDATE sikkerchat_guest_session SET revoked_at=$2 WHERE token_hash=$1 AND revoked_at IS NULL`
	revokeConversationSessionsQuery = `UPDATE sikkerchat_guest_session SET revoked_at=$2 WHERE conversation_id=$1 AND revoked_at IS NULL`
)

func (s *GuestSession) Scan(row dbutil.Scannable) (*GuestSession, error) {
	var created, seen int64
	var revoked sql.NullInt64
	if err := row.Scan(&s.TokenHash, &s.ConversationID, &created, &seen, &revoked); err != nil {
		return nil, err
	}
	s.CreatedAt, s.LastSeenAt, s.RevokedAt = time.UnixMilli(created), time.UnixMilli(seen), timeFromNull(revoked)
	return s, nil
}

// Insert stores a new session.
func (sq *SessionQuery) Insert(ctx context.Context, tokenHash []byte, conversationID string, now time.Time) error {
	return sq.Exec(ctx, insertSessionQuery, tokenHash, conversationID, now.UnixMilli())
}

// Get returns a session by its token's hash; nil if there is none.
func (sq *SessionQuery) Get(ctx context.Context, tokenHash []byte) (*GuestSession, error) {
	return sq.QueryOne(ctx, getSessionQuery, tokenHash)
}

// Touch notes the guest's activity.
func (sq *SessionQuery) Touch(ctx context.Context, tokenHash []byte, now time.Time) error {
	return sq.Exec(ctx, touchSessionQuery, tokenHash, now.UnixMilli())
}

// Revoke ends one session (quick exit, idle).
func (sq *SessionQuery) Revoke(ctx context.Context, tokenHash []byte, now time.Time) error {
	return sq.Exec(ctx, revokeSessionQuery, tokenHash, now.UnixMilli())
}

// RevokeConversation ends every session of a conversation.
func (sq *SessionQuery) RevokeConversation(ctx context.Context, conversationID string, now time.Time) error {
	return sq.Exec(ctx, revokeConversationSessionsQuery, conversationID, now.UnixMilli())
}
