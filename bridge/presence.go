package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"
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
	sc.Matrix.GuestTyping(ctx, conv, typing, timeout)
}

// GuestRead sends the guest's read receipt for the newest officer message up
// to seq, so officers see that the guest has read it.
func (sc *Connector) GuestRead(ctx context.Context, conv *Conversation, seq int64) error {
	entries, err := sc.Transcript.Since(ctx, conv.ID, 0)
	if err != nil {
		return err
	}
	var target *TranscriptEntry
	for _, e := range entries {
		if e.Seq > seq {
			break
		}
		if e.Direction == ToGuest && e.MatrixEventID != "" {
			target = e
		}
	}
	if len(entries) == 0 || entries[len(entries)-1].Seq < seq {
		return ErrUnknownSeq
	} else if target == nil {
		return nil
	}
	if err = sc.Matrix.GuestRead(ctx, conv, target.MatrixEventID); err != nil {
		return fmt.Errorf("failed to send guest read receipt: %w", err)
	}
	return nil
}
