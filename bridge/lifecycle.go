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

// Close is DESIGN.md's lifecycle step 4, whoever asks for it: the guest loses
// every way in at once, the guest-side data is destroyed (the key first, so
// any copy of the rows is unreadable), and the room stays with the police,
// marked closed, until retention ends.
//
// What the guest sent and saw as sent goes to the room first: the close
// delivers it, and is refused (UndeliveredError) while the homeserver cannot
// take it, so that nothing is shredded that the police never got.
func (sc *Connector) Close(ctx context.Context, conv *Conversation, actor, reason string) error {
	var err error
	var now, purgeAfter time.Time
	var status ConversationStatus
	// A message the guest sends between the delivery and the close makes the
	// close deliver again; a few rounds are plenty at a human's pace.
	for range closeAttempts {
		if sc.deliverConversation(ctx, conv.ID) {
			zerolog.Ctx(ctx).Warn().Str("conversation_id", conv.ID).Msg("Guest messages could not be delivered before the close")
		}
		now, purgeAfter, status, err = sc.closeDelivered(ctx, conv, reason)
		var undelivered *UndeliveredError
		if !errors.As(err, &undelivered) {
			break
		}
	}
	if err != nil {
		return err
	}
	conv.Status, conv.ClosedAt, conv.PurgeAfter = status, now, purgeAfter
	sc.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventClosed, Reason: reason})
	log := zerolog.Ctx(ctx)
	log.Info().Str("conversation_id", conv.ID).Str("reason", reason).Msg("Conversation closed")
	if err = sc.Audit.Append(ctx, actor, AuditClose, conv.ID, reason); err != nil {
		log.Err(err).Str("conversation_id", conv.ID).Msg("Failed to write audit row for close")
	}
	lang := sc.Config.validatedLanguage
	notice := lang.T(msgClosed, lang.closeReason(reason, actor), formatTime(purgeAfter, lang), sc.commandPrefix())
	sc.Matrix.CloseRoom(ctx, conv, sc.StateOf(conv), notice)
	return nil
}

// closeAttempts bounds the rounds of delivery and close (Close).
const closeAttempts = 5

// closeDelivered closes a conversation whose guest messages are all in the
// room, in one transaction: status, access, inbox, key and guest-side rows.
func (sc *Connector) closeDelivered(ctx context.Context, conv *Conversation, reason string) (now, purgeAfter time.Time, status ConversationStatus, err error) {
	now = time.UnixMilli(time.Now().UnixMilli())
	status = StatusClosed
	if reason == CloseInviteExpired {
		status = StatusExpired
	}
	purgeAfter = now.Add(sc.Config.retention)
	err = sc.DB.DoTxn(ctx, nil, func(ctx context.Context) error {
		if closed, err := sc.DB.Conversation.Close(ctx, conv.ID, status, now, purgeAfter); err != nil {
			return fmt.Errorf("failed to mark conversation closed: %w", err)
		} else if !closed {
			return ErrAlreadyClosed
		}
		// The update above holds the conversation's row: an append of the
		// guest's either came before (and is counted here) or is refused.
		if undelivered, err := sc.DB.Transcript.CountUndelivered(ctx, conv.ID); err != nil {
			return fmt.Errorf("failed to count undelivered guest messages: %w", err)
		} else if undelivered > 0 {
			return &UndeliveredError{Count: undelivered}
		}
		// Officers' events still waiting for the guest side have nobody to reach.
		if conv.RoomID != "" {
			if err := sc.DB.Inbox.ClearRoom(ctx, conv.RoomID); err != nil {
				return fmt.Errorf("failed to clear the inbox: %w", err)
			}
		}
		if err := sc.DB.Invite.RevokeAll(ctx, conv.ID, now); err != nil {
			return fmt.Errorf("failed to revoke guest access: %w", err)
		}
		if err := sc.DB.Session.RevokeConversation(ctx, conv.ID, now); err != nil {
			return fmt.Errorf("failed to revoke guest access: %w", err)
		}
		// The key goes first: from that moment every copy of the rows is noise.
		if err := sc.Transcript.DestroyKey(conv.ID); err != nil {
			return err
		}
		if err := sc.DB.Transcript.Shred(ctx, conv.ID); err != nil {
			return fmt.Errorf("failed to destroy guest-side data: %w", err)
		}
		if err := sc.DB.File.Shred(ctx, conv.ID); err != nil {
			return fmt.Errorf("failed to destroy guest-side data: %w", err)
		}
		return nil
	})
	return now, purgeAfter, status, err
}

// runLifecycle closes conversations whose invite ran out unused, and open
// ones that have been quiet too long, until ctx ends.
func (sc *Connector) runLifecycle(ctx context.Context) {
	tick := min(sc.Config.inviteTTL, sc.Config.idleClose, sc.Config.retention) / 10
	tick = max(time.Second, min(tick, 30*time.Second))
	for {
		sc.CloseDue(ctx)
		sc.PurgeDue(ctx)
		sc.Metrics.forget(time.Now().Add(-time.Hour))
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
func (sc *Connector) PurgeDue(ctx context.Context) {
	ids, err := sc.DB.Conversation.DuePurge(ctx, time.Now())
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to find rooms due for purge")
		return
	}
	for _, id := range ids {
		conv, err := sc.DB.Conversation.Get(ctx, id)
		if err != nil || conv == nil || conv.Hold {
			continue
		}
		if err = sc.Purge(ctx, conv); err != nil {
			zerolog.Ctx(ctx).Err(err).Str("conversation_id", id).Msg("Failed to purge room, will try again")
			sc.Metrics.Error(ErrKindPurge)
		}
	}
}

// ErrNoPurger means no admin access to the homeserver is configured.
var ErrNoPurger = errors.New("no homeserver admin token configured (network.purge.admin_token)")

// Purge is DESIGN.md's lifecycle step 5: the room goes from the homeserver,
// then the bridge drops what it still holds of it. The audit trail stays.
func (sc *Connector) Purge(ctx context.Context, conv *Conversation) error {
	if conv.Hold {
		return ErrOnHold
	}
	if sc.Purger == nil {
		return ErrNoPurger
	}
	if conv.RoomID != "" {
		if err := sc.Purger.PurgeRoom(ctx, conv.RoomID); err != nil {
			return err
		}
		sc.Matrix.ForgetRoom(ctx, conv)
	}
	if err := sc.DB.Conversation.Delete(ctx, conv.ID); err != nil {
		return fmt.Errorf("failed to drop conversation rows: %w", err)
	}
	if err := sc.Audit.Append(ctx, "system", AuditPurge, conv.ID, ""); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for purge")
	}
	zerolog.Ctx(ctx).Info().Str("conversation_id", conv.ID).Msg("Conversation room purged")
	return nil
}

// ErrOnHold: a legal hold keeps the room from being purged.
var ErrOnHold = errors.New("conversation is on legal hold")

// SetHold places or lifts a legal hold, shown in the state event. The reason
// (required to lift one) goes into the audit trail.
func (sc *Connector) SetHold(ctx context.Context, conv *Conversation, actor string, hold bool, reason string) error {
	if err := sc.DB.Conversation.SetHold(ctx, conv.ID, hold); err != nil {
		return fmt.Errorf("failed to set hold: %w", err)
	}
	conv.Hold = hold
	action := AuditUnhold
	if hold {
		action = AuditHold
	}
	if err := sc.Audit.Append(ctx, actor, action, conv.ID, reason); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for hold")
	}
	sc.Matrix.UpdateState(ctx, conv, sc.StateOf(conv))
	return nil
}

// CloseDue runs the automatic closes that are due now.
func (sc *Connector) CloseDue(ctx context.Context) {
	now := time.Now()
	for _, due := range []struct {
		find   func(context.Context, time.Time) ([]string, error)
		cutoff time.Time
		reason string
	}{
		{sc.DB.Conversation.ExpiredInvites, now, CloseInviteExpired},
		{sc.DB.Conversation.Idle, now.Add(-sc.Config.idleClose), CloseIdle},
	} {
		ids, err := due.find(ctx, due.cutoff)
		if err != nil {
			zerolog.Ctx(ctx).Err(err).Str("reason", due.reason).Msg("Failed to find conversations to close")
			continue
		}
		for _, id := range ids {
			conv, err := sc.DB.Conversation.Get(ctx, id)
			if err != nil || conv == nil {
				continue
			}
			var undelivered *UndeliveredError
			err = sc.Close(ctx, conv, "system", due.reason)
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
