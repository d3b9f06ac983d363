package bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Audit actions. Details never carry content: only reasons and counts.
const (
	AuditCreate     = "create"
	AuditJoin       = "join"
	AuditCodeFailed = "code_failed"
	AuditBurned     = "invite_burned"
	AuditReissue    = "reissue"
	AuditClose      = "close"
	AuditHold       = "hold"
	AuditUnhold     = "unhold"
	AuditPurge      = "purge"
	AuditAddOfficer = "add_officer"
	AuditExport     = "export"
	// AuditRedact: someone took a message out of the room (detail: which, by which event).
	AuditRedact = "redact"
	// AuditMemberRemoved: the bridge kicked someone who may not be in the room.
	AuditMemberRemoved = "member_removed"
)

// AuditRow is one entry of the trail.
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

const (
	auditColumns      = `seq, at, actor, action, conversation_id, detail, prev_hash, hash`
	lastAuditQuery    = `SELECT seq, hash FROM sikkerchat_audit ORDER BY seq DESC LIMIT 1`
	insertAuditQuery  = `INSERT INTO sikkerchat_audit (` + auditColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	allAuditQuery     = `SELECT ` + auditColumns + ` FROM sikkerchat_audit ORDER BY seq`
	conversationAudit = `SELECT ` + auditColumns + ` FROM sikkerchat_audit WHERE conversation_id=$1 ORDER BY seq`
)

// AuditTrail appends and checks the hash chain.
type AuditTrail struct {
	store *Store
	lock  sync.Mutex
}

// hashOf covers the previous hash and every field, length-prefixed so that no
// two different rows can encode alike.
func (r *AuditRow) hashOf() []byte {
	h := sha256.New()
	h.Write(r.PrevHash)
	var num [8]byte
	binary.BigEndian.PutUint64(num[:], uint64(r.Seq))
	h.Write(num[:])
	binary.BigEndian.PutUint64(num[:], uint64(r.At.UnixMilli()))
	h.Write(num[:])
	for _, field := range []string{r.Actor, r.Action, r.ConversationID, r.Detail} {
		binary.BigEndian.PutUint64(num[:], uint64(len(field)))
		h.Write(num[:])
		h.Write([]byte(field))
	}
	return h.Sum(nil)
}

// Append adds a row at the end of the chain.
func (a *AuditTrail) Append(ctx context.Context, actor, action, conversationID, detail string) error {
	a.lock.Lock()
	defer a.lock.Unlock()
	return a.store.DoTxn(ctx, nil, func(ctx context.Context) error {
		row := &AuditRow{At: time.UnixMilli(time.Now().UnixMilli()), Actor: actor, Action: action, ConversationID: conversationID, Detail: detail}
		var prevSeq int64
		err := a.store.QueryRow(ctx, lastAuditQuery).Scan(&prevSeq, &row.PrevHash)
		if err != nil && !errors.Is(err, errNoRows) {
			return fmt.Errorf("failed to read audit chain end: %w", err)
		}
		if row.PrevHash == nil {
			row.PrevHash = make([]byte, sha256.Size)
		}
		row.Seq = prevSeq + 1
		row.Hash = row.hashOf()
		_, err = a.store.Exec(ctx, insertAuditQuery, row.Seq, row.At.UnixMilli(), row.Actor, row.Action, row.ConversationID, row.Detail, row.PrevHash, row.Hash)
		if err != nil {
			return fmt.Errorf("failed to append audit row: %w", err)
		}
		return nil
	})
}

func (a *AuditTrail) rows(ctx context.Context, query string, args ...any) ([]*AuditRow, error) {
	rows, err := a.store.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*AuditRow
	for rows.Next() {
		var r AuditRow
		var at int64
		if err = rows.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.ConversationID, &r.Detail, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		r.At = time.UnixMilli(at)
		out = append(out, &r)
	}
	return out, rows.Err()
}

// ForConversation returns a conversation's rows, oldest first.
func (a *AuditTrail) ForConversation(ctx context.Context, conversationID string) ([]*AuditRow, error) {
	return a.rows(ctx, conversationAudit, conversationID)
}

// Verify walks the whole chain and says where it breaks.
func (a *AuditTrail) Verify(ctx context.Context) error {
	rows, err := a.rows(ctx, allAuditQuery)
	if err != nil {
		return err
	}
	prev := make([]byte, sha256.Size)
	for i, r := range rows {
		switch {
		case r.Seq != int64(i+1):
			return fmt.Errorf("audit row %d is missing (found %d in its place)", i+1, r.Seq)
		case !bytes.Equal(r.PrevHash, prev):
			return fmt.Errorf("audit row %d does not follow row %d (previous hash differs)", r.Seq, r.Seq-1)
		case !bytes.Equal(r.Hash, r.hashOf()):
			return fmt.Errorf("audit row %d was changed (its hash does not match its fields)", r.Seq)
		}
		prev = r.Hash
	}
	return nil
}
