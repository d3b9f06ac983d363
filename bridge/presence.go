package bridge

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"maunium.net/go/mautrix/id"
)

// ErrUnknownSeq is a read marker for a message the guest cannot have seen.
var ErrUnknownSeq = errors.New("no such message")

// guestTypingTimeout is how long Matrix shows the guest as typing after the
// last typing call; the page repeats the call while the guest types.
const guestTypingTimeout = 10 * time.Second

// GuestTyping shows (or stops showing) the guest as typing in the room.
func (sc *Connector) GuestTyping(ctx context.Context, conv *Conversation, typing bool) {
	timeout := time.Duration(0)
	if typing {
		timeout = guestTypingTimeout
	}
	sc.inBackground(ctx, conv.ID+"/typing", func(ctx context.Context) {
		sc.Matrix.GuestTyping(ctx, conv, typing, timeout)
	})
}

// presenceTimeout bounds one typing or read mark's trip to the homeserver.
const presenceTimeout = 20 * time.Second

// inBackground sends a typing or read mark without holding up the guest's
// request: while the homeserver is slow or away, the page's calls must not
// pile up in front of its messages. Per key only the newest mark waits; a
// newer one replaces it.
func (sc *Connector) inBackground(ctx context.Context, key string, fn func(ctx context.Context)) {
	bg := sc.background
	bg.lock.Lock()
	bg.pending[key] = fn
	if bg.running[key] {
		bg.lock.Unlock()
		return
	}
	bg.running[key] = true
	bg.lock.Unlock()
	base := context.WithoutCancel(ctx)
	go func() {
		for {
			bg.lock.Lock()
			next := bg.pending[key]
			delete(bg.pending, key)
			if next == nil {
				delete(bg.running, key)
				bg.lock.Unlock()
				return
			}
			bg.lock.Unlock()
			callCtx, cancel := context.WithTimeout(base, presenceTimeout)
			next(callCtx)
			cancel()
		}
	}()
}

type backgroundSender struct {
	lock    sync.Mutex
	pending map[string]func(ctx context.Context)
	running map[string]bool
}

func newBackgroundSender() *backgroundSender {
	return &backgroundSender{pending: map[string]func(ctx context.Context){}, running: map[string]bool{}}
}

const (
	maxSeqQuery        = `SELECT COALESCE(MAX(seq), 0) FROM sikkerchat_transcript WHERE conversation_id=$1`
	latestToGuestQuery = `SELECT matrix_event_id FROM sikkerchat_transcript
		WHERE conversation_id=$1 AND direction='to_guest' AND matrix_event_id IS NOT NULL AND seq<=$2 ORDER BY seq DESC LIMIT 1`
	seqOfEventQuery = `SELECT seq FROM sikkerchat_transcript WHERE conversation_id=$1 AND matrix_event_id=$2`
)

// GuestRead sends the guest's read receipt for the newest officer message up
// to seq, so officers see that the guest has read it. It reads only the
// plain columns it needs, nothing sealed.
func (sc *Connector) GuestRead(ctx context.Context, conv *Conversation, seq int64) error {
	var maxSeq int64
	if err := sc.Store.QueryRow(ctx, maxSeqQuery, conv.ID).Scan(&maxSeq); err != nil {
		return err
	} else if seq > maxSeq {
		return ErrUnknownSeq
	}
	var eventID id.EventID
	err := sc.Store.QueryRow(ctx, latestToGuestQuery, conv.ID, seq).Scan(&eventID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	} else if err != nil {
		return err
	}
	sc.inBackground(ctx, conv.ID+"/read", func(ctx context.Context) {
		if err := sc.Matrix.GuestRead(ctx, conv, eventID); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("conversation_id", conv.ID).Msg("Failed to send guest read receipt")
		}
	})
	return nil
}

const (
	getDeliveredFromGuestQuery = `SELECT seq FROM sikkerchat_transcript
		WHERE conversation_id=$1 AND direction='from_guest' AND status='delivered' AND seq>$2 AND seq<=$3 ORDER BY seq`
	setOfficerReadQuery = `UPDATE sikkerchat_conversation SET officer_read_seq=$2 WHERE id=$1 AND officer_read_seq<$2`
)

// OfficerRead notes that an officer has read the room up to an event: every
// guest message delivered at or before that event's place shows as read. A
// receipt for an event the transcript does not know (a bot notice) moves nothing.
func (sc *Connector) OfficerRead(ctx context.Context, conversationID string, eventID id.EventID) error {
	conv, err := sc.Store.GetConversation(ctx, conversationID)
	if err != nil || conv == nil {
		return err
	}
	var upTo int64
	err = sc.Store.QueryRow(ctx, seqOfEventQuery, conv.ID, eventID).Scan(&upTo)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	} else if err != nil {
		return err
	}
	rows, err := sc.Store.Query(ctx, getDeliveredFromGuestQuery, conv.ID, conv.OfficerReadSeq, upTo)
	if err != nil {
		return fmt.Errorf("failed to find read guest messages: %w", err)
	}
	var seqs []int64
	for rows.Next() {
		var seq int64
		if err = rows.Scan(&seq); err != nil {
			break
		}
		seqs = append(seqs, seq)
	}
	rows.Close()
	if err != nil || len(seqs) == 0 {
		return err
	}
	if _, err = sc.Store.Exec(ctx, setOfficerReadQuery, conv.ID, seqs[len(seqs)-1]); err != nil {
		return fmt.Errorf("failed to save officer read position: %w", err)
	}
	for _, seq := range seqs {
		entry, err := sc.Transcript.BySeq(ctx, conv.ID, seq)
		if err != nil || entry == nil {
			continue
		}
		entry.Status = EntryRead
		sc.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventStatus, Entry: entry})
	}
	return nil
}

// ReviseOfficerMessage changes an officer message the guest has (an edit or a
// deletion) and shows the change on open pages.
func (sc *Connector) ReviseOfficerMessage(ctx context.Context, conversationID string, eventID id.EventID, fn func(*TranscriptEntry)) error {
	var fileID string
	entry, err := sc.Transcript.Revise(ctx, conversationID, eventID, func(e *TranscriptEntry) {
		if info, ok := FileInfoOf(e); ok {
			fileID = info.ID
		}
		fn(e)
	})
	if err != nil {
		return err
	} else if entry == nil {
		return nil // not something the guest has
	}
	if entry.Deleted && fileID != "" {
		// A deleted file goes with its message.
		if _, err = sc.Store.Exec(ctx, deleteFileQuery, conversationID, fileID); err != nil {
			return fmt.Errorf("failed to delete file of deleted message: %w", err)
		}
	}
	sc.Hub.Publish(conversationID, GuestEvent{Kind: GuestEventMessage, Entry: entry, Revision: true})
	return nil
}
