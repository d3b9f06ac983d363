package bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
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

// AuditTrail appends and checks the hash chain.
type AuditTrail struct {
	db   *scdb.Database
	lock sync.Mutex
}

// hashOf covers the previous hash and every field, length-prefixed so that no
// two different rows can encode alike.
func hashOf(r *AuditRow) []byte {
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
	return a.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		row := &AuditRow{At: time.UnixMilli(time.Now().UnixMilli()), Actor: actor, Action: action, ConversationID: conversationID, Detail: detail}
		prevSeq, prevHash, err := a.db.Audit.Last(ctx)
		if err != nil {
			return fmt.Errorf("failed to read audit chain end: %w", err)
		}
		row.PrevHash = prevHash
		if row.PrevHash == nil {
			row.PrevHash = make([]byte, sha256.Size)
		}
		row.Seq = prevSeq + 1
		row.Hash = hashOf(row)
		if err = a.db.Audit.Insert(ctx, row); err != nil {
			return fmt.Errorf("failed to append audit row: %w", err)
		}
		return nil
	})
}

// ForConversation returns a conversation's rows, oldest first.
func (a *AuditTrail) ForConversation(ctx context.Context, conversationID string) ([]*AuditRow, error) {
	return a.db.Audit.ForConversation(ctx, conversationID)
}

// Verify walks the whole chain and says where it breaks.
func (a *AuditTrail) Verify(ctx context.Context) error {
	rows, err := a.db.Audit.All(ctx)
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
		case !bytes.Equal(r.Hash, hashOf(r)):
			return fmt.Errorf("audit row %d was changed (its hash does not match its fields)", r.Seq)
		}
		prev = r.Hash
	}
	return nil
}
