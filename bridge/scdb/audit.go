package scdb

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.mau.fi/util/dbutil"
)

// AuditRow is one entry of the audit trail: who did what to which
// conversation, never any content. Each row's hash covers the previous
// row's hash and its own fields (the chain is kept by the bridge).
type AuditRow struct {
	Seq            int64     `json:"seq"`
	At             time.Time `json:"at"`
	Actor          string    `json:"actor"`
	Action         string    `json:"action"`
	ConversationID string    `json:"conversation_id"`
	Detail         string    `json:"detail,omitempty"`
	PrevHash       []byte    `json:"prev_hash"`
	Hash           []byte    `json:"hash"`
}

// AuditQuery is the queries on sikkerchat_audit (append-only).
type AuditQuery struct {
	*dbutil.QueryHelper[*AuditRow]
}

const (
	auditColumns           = `seq, at, actor, action, conversation_id, detail, prev_hash, hash`
	lastAuditQuery         = `SELECT seq, hash FROM sikkerchat_audit ORDER BY seq DESC LIMIT 1`
	insertAuditQuery       = `INSERT INTO sikkerchat_audit (` + auditColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	allAuditQuery          = `SELECT ` + auditColumns + ` FROM sikkerchat_audit ORDER BY seq`
	conversationAuditQuery = `SELECT ` + auditColumns + ` FROM sikkerchat_audit WHERE conversation_id=$1 ORDER BY seq`
	auditSinceQuery        = `SELECT ` + auditColumns + ` FROM sikkerchat_audit WHERE action IN ('create', 'join', 'close') AND at>=$1 ORDER BY seq`
	auditHasQuery          = `SELECT EXISTS(SELECT 1 FROM sikkerchat_audit WHERE conversation_id=$1 AND action=$2 AND actor=$3 AND detail=$4)`
)

func (r *AuditRow) Scan(row dbutil.Scannable) (*AuditRow, error) {
	var at int64
	if err := row.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.ConversationID, &r.Detail, &r.PrevHash, &r.Hash); err != nil {
		return nil, err
	}
	r.At = time.UnixMilli(at)
	return r, nil
}

// Last is the end of the chain: its position and hash (0 and nil when empty).
func (aq *AuditQuery) Last(ctx context.Context) (seq int64, hash []byte, err error) {
	err = aq.GetDB().QueryRow(ctx, lastAuditQuery).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	return
}

// Insert appends a row.
func (aq *AuditQuery) Insert(ctx context.Context, r *AuditRow) error {
	return aq.Exec(ctx, insertAuditQuery, r.Seq, r.At.UnixMilli(), r.Actor, r.Action, r.ConversationID, r.Detail, r.PrevHash, r.Hash)
}

// All returns the whole trail, oldest first.
func (aq *AuditQuery) All(ctx context.Context) ([]*AuditRow, error) {
	return aq.QueryMany(ctx, allAuditQuery)
}

// ForConversation returns a conversation's rows, oldest first.
func (aq *AuditQuery) ForConversation(ctx context.Context, conversationID string) ([]*AuditRow, error) {
	return aq.QueryMany(ctx, conversationAuditQuery, conversationID)
}

// Has says whether the trail has a row with exactly these fields (of any
// time): an event the bridge records once, such as an officer's new
// cross-signing identity, is looked up here.
func (aq *AuditQuery) Has(ctx context.Context, conversationID, action, actor, detail string) (has bool, err error) {
	err = aq.GetDB().QueryRow(ctx, auditHasQuery, conversationID, action, actor, detail).Scan(&has)
	return
}

// LifecycleSince returns the create, join and close rows since a time, for statistics.
func (aq *AuditQuery) LifecycleSince(ctx context.Context, since time.Time) ([]*AuditRow, error) {
	return aq.QueryMany(ctx, auditSinceQuery, since.UnixMilli())
}
