package bridge

import (
	"context"
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

// GuestRead sends the guest's read receipt for the newest officer message up
// to seq, so officers see that the guest has read it. It reads only the
// plain columns it needs, nothing sealed.
func (sc *Connector) GuestRead(ctx context.Context, conv *Conversation, seq int64) error {
	if maxSeq, err := sc.DB.Transcript.MaxSeq(ctx, conv.ID); err != nil {
		return err
	} else if seq > maxSeq {
		return ErrUnknownSeq
	}
	eventID, err := sc.DB.Transcript.LatestToGuest(ctx, conv.ID, seq)
	if err != nil || eventID == "" {
		return err
	}
	sc.inBackground(ctx, conv.ID+"/read", func(ctx context.Context) {
		if err := sc.Matrix.GuestRead(ctx, conv, eventID); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("conversation_id", conv.ID).Msg("Failed to send guest read receipt")
		}
	})
	return nil
}

// OfficerRead notes that an officer has read the room up to an event: every
// guest message delivered at or before that event's place shows as read. A
// receipt for an event the transcript does not know (a bot notice) moves nothing.
func (sc *Connector) OfficerRead(ctx context.Context, conversationID string, eventID id.EventID) error {
	conv, err := sc.DB.Conversation.Get(ctx, conversationID)
	if err != nil || conv == nil {
		return err
	}
	upTo, err := sc.DB.Transcript.SeqOf(ctx, conv.ID, eventID)
	if err != nil || upTo == 0 {
		return err
	}
	seqs, err := sc.DB.Transcript.DeliveredFromGuest(ctx, conv.ID, conv.OfficerReadSeq, upTo)
	if err != nil {
		return fmt.Errorf("failed to find read guest messages: %w", err)
	} else if len(seqs) == 0 {
		return nil
	}
	if err = sc.DB.Conversation.SetOfficerRead(ctx, conv.ID, seqs[len(seqs)-1]); err != nil {
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
		if err = sc.DB.File.Delete(ctx, conversationID, fileID); err != nil {
			return fmt.Errorf("failed to delete file of deleted message: %w", err)
		}
	}
	sc.Hub.Publish(conversationID, GuestEvent{Kind: GuestEventMessage, Entry: entry, Revision: true})
	return nil
}
