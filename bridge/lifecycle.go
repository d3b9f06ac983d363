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

const (
	closeConversationQuery = `UPDATE sikkerchat_conversation SET status=$2, closed_at=$3, purge_after=$4
		WHERE id=$1 AND status IN ('created', 'active')`
	countUndeliveredQuery = `SELECT COUNT(*) FROM sikkerchat_transcript WHERE conversation_id=$1 AND status='stored'`
	clearInboxQuery       = `DELETE FROM sikkerchat_inbox WHERE room_id=$1`
	shredTranscriptQuery  = `DELETE FROM sikkerchat_transcript WHERE conversation_id=$1`
	shredFilesQuery       = `DELETE FROM sikkerchat_file WHERE conversation_id=$1`
	revokeAllInvites      = `UPDATE sikkerchat_invite SET revoked_at=$2 WHERE conversation_id=$1 AND revoked_at IS NULL`
	duePurgeQuery         = `SELECT id FROM sikkerchat_conversation WHERE status IN ('closed', 'expired') AND NOT hold AND purge_after<=$1`
	setHoldQuery          = `UPDATE sikkerchat_conversation SET hold=$2 WHERE id=$1`
	expiredInvitesQuery   = `SELECT id FROM sikkerchat_conversation WHERE status='created' AND invite_expires_at<=$1`
	idleQuery             = `SELECT c.id FROM sikkerchat_conversation c WHERE c.status='active' AND
		COALESCE((SELECT MAX(t.created_at) FROM sikkerchat_transcript t WHERE t.conversation_id=c.id), c.joined_at, c.created_at)<=$1`
)

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
	err = sc.Store.DoTxn(ctx, nil, func(ctx context.Context) error {
		res, err := sc.Store.Exec(ctx, closeConversationQuery, conv.ID, status, now.UnixMilli(), purgeAfter.UnixMilli())
		if err != nil {
			return fmt.Errorf("failed to mark conversation closed: %w", err)
		} else if n, _ := res.RowsAffected(); n != 1 {
			return ErrAlreadyClosed
		}
		// The update above holds the conversation's row: an append of the
		// guest's either came before (and is counted here) or is refused.
		var undelivered int
		if err = sc.Store.QueryRow(ctx, countUndeliveredQuery, conv.ID).Scan(&undelivered); err != nil {
			return fmt.Errorf("failed to count undelivered guest messages: %w", err)
		} else if undelivered > 0 {
			return &UndeliveredError{Count: undelivered}
		}
		// Officers' events still waiting for the guest side have nobody to reach.
		if conv.RoomID != "" {
			if _, err = sc.Store.Exec(ctx, clearInboxQuery, conv.RoomID); err != nil {
				return fmt.Errorf("failed to clear the inbox: %w", err)
			}
		}
		for _, q := range []string{revokeAllInvites, revokeConversationSessionsQuery} {
			if _, err = sc.Store.Exec(ctx, q, conv.ID, now.UnixMilli()); err != nil {
				return fmt.Errorf("failed to revoke guest access: %w", err)
			}
		}
		// The key goes first: from that moment every copy of the rows is noise.
		if err = sc.Transcript.DestroyKey(conv.ID); err != nil {
			return err
		}
		for _, q := range []string{shredTranscriptQuery, shredFilesQuery} {
			if _, err = sc.Store.Exec(ctx, q, conv.ID); err != nil {
				return fmt.Errorf("failed to destroy guest-side data: %w", err)
			}
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
	ids, err := sc.queryIDs(ctx, duePurgeQuery, time.Now().UnixMilli())
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to find rooms due for purge")
		return
	}
	for _, id := range ids {
		conv, err := sc.Store.GetConversation(ctx, id)
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
	if err := sc.Store.DeleteConversation(ctx, conv.ID); err != nil {
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
	if _, err := sc.Store.Exec(ctx, setHoldQuery, conv.ID, hold); err != nil {
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
		query  string
		cutoff time.Time
		reason string
	}{
		{expiredInvitesQuery, now, CloseInviteExpired},
		{idleQuery, now.Add(-sc.Config.idleClose), CloseIdle},
	} {
		ids, err := sc.queryIDs(ctx, due.query, due.cutoff.UnixMilli())
		if err != nil {
			zerolog.Ctx(ctx).Err(err).Str("reason", due.reason).Msg("Failed to find conversations to close")
			continue
		}
		for _, id := range ids {
			conv, err := sc.Store.GetConversation(ctx, id)
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

// queryIDs runs a query that selects conversation IDs.
func (sc *Connector) queryIDs(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := sc.Store.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err = rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
