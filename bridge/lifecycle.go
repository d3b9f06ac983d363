package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Why a conversation was closed (an audit detail and the guest's "closed" reason).
const (
	CloseByOfficer      = "officer"
	CloseInviteExpired  = "expired"
	CloseIdle           = "idle"
	CloseByProvisioning = "provisioning"
)

// ErrAlreadyClosed is returned when closing what is no longer open.
var ErrAlreadyClosed = errors.New("conversation is already closed")

// UndeliveredError refuses a close while messages the guest sent (and saw as
// sent) have not reached the room: the close would shred them unseen.
type UndeliveredError struct{ Count int }

func (e *UndeliveredError) Error() string {
	return fmt.Sprintf("%d guest messages are not delivered to the room yet", e.Count)
}

// Close ends a conversation (docs/retention.md), whoever asks for it: the guest loses
// every way in at once, the guest-side data is destroyed (the key first, so
// any copy of the rows is unreadable), and the room stays with the police,
// marked closed, until retention ends.
//
// What the guest sent and saw as sent goes to the room first: the close
// delivers it, and is refused (UndeliveredError) while the homeserver cannot
// take it, so that nothing is shredded that the police never got.
func (cv *Conversations) Close(ctx context.Context, conv *Conversation, actor, reason string) error {
	var err error
	var now, purgeAfter time.Time
	var status ConversationStatus
	// A message the guest sends between the delivery and the close makes the
	// close deliver again; a few rounds are plenty at a human's pace.
	for range closeAttempts {
		if cv.Outbox.deliverConversation(ctx, conv.ID) {
			zerolog.Ctx(ctx).Warn().Str("conversation_id", conv.ID).Msg("Guest messages could not be delivered before the close")
		}
		now, purgeAfter, status, err = cv.closeDelivered(ctx, conv, reason)
		var undelivered *UndeliveredError
		if !errors.As(err, &undelivered) {
			break
		}
	}
	if err != nil {
		return err
	}
	conv.Status, conv.ClosedAt, conv.PurgeAfter = status, now, purgeAfter
	cv.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventClosed, Reason: reason})
	log := zerolog.Ctx(ctx)
	log.Info().Str("conversation_id", conv.ID).Str("reason", reason).Msg("Conversation closed")
	if err = cv.Audit.Append(ctx, actor, AuditClose, conv.ID, reason); err != nil {
		log.Err(err).Str("conversation_id", conv.ID).Msg("Failed to write audit row for close")
	}
	cv.publishState(ctx, conv.ID, func(current *Conversation) {
		// The stored row says whether a hold keeps the room (conv may predate a hold).
		notice := cv.Config.validatedLanguage.closedNotice(reason, actor, purgeAfter, current.Hold, cv.Config.commandPrefix)
		cv.Matrix.CloseRoom(ctx, current, cv.StateOf(current), notice)
	})
	return nil
}

// closeAttempts bounds the rounds of delivery and close (Close).
const closeAttempts = 5

// closeDelivered closes a conversation whose guest messages are all in the
// room, in one transaction: status, access, inbox, key and guest-side rows.
func (cv *Conversations) closeDelivered(ctx context.Context, conv *Conversation, reason string) (now, purgeAfter time.Time, status ConversationStatus, err error) {
	now = time.UnixMilli(time.Now().UnixMilli())
	status = StatusClosed
	if reason == CloseInviteExpired {
		status = StatusExpired
	}
	purgeAfter = now.Add(cv.Config.retention)
	err = cv.DB.DoTxn(ctx, nil, func(ctx context.Context) error {
		if closed, err := cv.DB.Conversation.Close(ctx, conv.ID, status, now, purgeAfter); err != nil {
			return fmt.Errorf("failed to mark conversation closed: %w", err)
		} else if !closed {
			return ErrAlreadyClosed
		}
		// The update above holds the conversation's row: an append of the
		// guest's either came before (and is counted here) or is refused.
		if undelivered, err := cv.DB.Transcript.CountUndelivered(ctx, conv.ID); err != nil {
			return fmt.Errorf("failed to count undelivered guest messages: %w", err)
		} else if undelivered > 0 {
			return &UndeliveredError{Count: undelivered}
		}
		// Officers' events still waiting for the guest side have nobody to reach.
		if conv.RoomID != "" {
			if err := cv.DB.Inbox.ClearRoom(ctx, conv.RoomID); err != nil {
				return fmt.Errorf("failed to clear the inbox: %w", err)
			}
		}
		if err := cv.DB.Invite.RevokeAll(ctx, conv.ID, now); err != nil {
			return fmt.Errorf("failed to revoke guest access: %w", err)
		}
		if err := cv.DB.Session.RevokeConversation(ctx, conv.ID, now); err != nil {
			return fmt.Errorf("failed to revoke guest access: %w", err)
		}
		// The key goes first: from that moment every copy of the rows is noise.
		if err := cv.Transcript.DestroyKey(conv.ID); err != nil {
			return err
		}
		if err := cv.DB.Transcript.Shred(ctx, conv.ID); err != nil {
			return fmt.Errorf("failed to destroy guest-side data: %w", err)
		}
		if err := cv.DB.File.Shred(ctx, conv.ID); err != nil {
			return fmt.Errorf("failed to destroy guest-side data: %w", err)
		}
		return nil
	})
	return now, purgeAfter, status, err
}

// run closes conversations whose invite ran out unused, and open
// ones that have been quiet too long, until ctx ends.
func (cv *Conversations) run(ctx context.Context) {
	tick := min(cv.Config.inviteTTL, cv.Config.idleClose, cv.Config.retention) / 10
	tick = max(time.Second, min(tick, 30*time.Second))
	for {
		cv.CloseDue(ctx)
		cv.PurgeDue(ctx)
		cv.Metrics.forget(time.Now().Add(-time.Hour))
		select {
		case <-ctx.Done():
			return
		case <-time.After(tick):
		}
	}
}

// PurgeDue purges every closed room whose retention has run out and that
// has no hold. It also runs at start, for rooms that fell due while the
// bridge was down.
func (cv *Conversations) PurgeDue(ctx context.Context) {
	ids, err := cv.DB.Conversation.DuePurge(ctx, time.Now())
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to find rooms due for purge")
		return
	}
	for _, id := range ids {
		conv, err := cv.DB.Conversation.Get(ctx, id)
		if err != nil || conv == nil || conv.Hold {
			continue
		}
		if err = cv.Purge(ctx, conv); err != nil {
			zerolog.Ctx(ctx).Err(err).Str("conversation_id", id).Msg("Failed to purge room, will try again")
			cv.Metrics.Error(ErrKindPurge)
		}
	}
}

// ErrNoPurger means no admin access to the homeserver is configured.
var ErrNoPurger = errors.New("no homeserver admin token configured (network.purge.admin_token)")

// Purge ends retention (docs/retention.md): the room goes from the homeserver,
// then the bridge drops what it still holds of it. The audit trail stays.
func (cv *Conversations) Purge(ctx context.Context, conv *Conversation) error {
	if conv.Hold {
		return ErrOnHold
	}
	if cv.Purger == nil {
		return ErrNoPurger
	}
	if conv.RoomID != "" {
		if err := cv.Purger.PurgeRoom(ctx, conv.RoomID); err != nil {
			return err
		}
		cv.Matrix.ForgetRoom(ctx, conv)
	}
	if err := cv.DB.Conversation.Delete(ctx, conv.ID); err != nil {
		return fmt.Errorf("failed to drop conversation rows: %w", err)
	}
	cv.stateLocks.Delete(conv.ID)
	if err := cv.Audit.Append(ctx, "system", AuditPurge, conv.ID, ""); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for purge")
	}
	zerolog.Ctx(ctx).Info().Str("conversation_id", conv.ID).Msg("Conversation room purged")
	return nil
}

// ErrOnHold: a legal hold keeps the room from being purged.
var ErrOnHold = errors.New("conversation is on legal hold")

// SetHold places or lifts a legal hold, shown in the state event. The reason
// (required to lift one) goes into the audit trail.
func (cv *Conversations) SetHold(ctx context.Context, conv *Conversation, actor string, hold bool, reason string) error {
	if err := cv.DB.Conversation.SetHold(ctx, conv.ID, hold); err != nil {
		return fmt.Errorf("failed to set hold: %w", err)
	}
	conv.Hold = hold
	action := AuditUnhold
	if hold {
		action = AuditHold
	}
	if err := cv.Audit.Append(ctx, actor, action, conv.ID, reason); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for hold")
	}
	cv.updateStateEvent(ctx, conv)
	return nil
}

// CloseDue runs the automatic closes that are due now.
func (cv *Conversations) CloseDue(ctx context.Context) {
	now := time.Now()
	for _, due := range []struct {
		find   func(context.Context, time.Time) ([]string, error)
		cutoff time.Time
		reason string
	}{
		{cv.DB.Conversation.ExpiredInvites, now, CloseInviteExpired},
		{cv.DB.Conversation.Idle, now.Add(-cv.Config.idleClose), CloseIdle},
	} {
		ids, err := due.find(ctx, due.cutoff)
		if err != nil {
			zerolog.Ctx(ctx).Err(err).Str("reason", due.reason).Msg("Failed to find conversations to close")
			continue
		}
		for _, id := range ids {
			conv, err := cv.DB.Conversation.Get(ctx, id)
			if err != nil || conv == nil {
				continue
			}
			var undelivered *UndeliveredError
			err = cv.Close(ctx, conv, "system", due.reason)
			switch {
			case errors.As(err, &undelivered):
				zerolog.Ctx(ctx).Warn().Str("conversation_id", id).Int("undelivered", undelivered.Count).
					Msg("Not closing yet: guest messages wait for the homeserver")
			case err != nil && !errors.Is(err, ErrAlreadyClosed):
				zerolog.Ctx(ctx).Err(err).Str("conversation_id", id).Msg("Failed to close conversation")
			}
		}
	}
}
