package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/sikkerchat/sikkerchat/appservice"
	"github.com/sikkerchat/sikkerchat/bridge/scdb"
	"github.com/sikkerchat/sikkerchat/meta"
)

// socialAsConversation is a social conversation in the shape the shared
// machinery (export, room guard, purge) takes.
func socialAsConversation(th *SocialConversation) *Conversation {
	status := StatusActive
	if th.Status != scdb.SocialOpen {
		status = StatusClosed
	}
	return &Conversation{
		ID: th.ID, RoomID: th.RoomID, GhostID: th.GhostID, Status: status, CreatedAt: th.CreatedAt,
		ClosedAt: th.ClosedAt, PurgeAfter: th.PurgeAfter, Hold: th.Hold,
	}
}

// Close closes a social conversation: nothing more can be sent to the person
// (what waits in the outbox is given up), their ID and name are destroyed
// with the conversation key, and a new message from them opens a new room.
// The police keep this room until retention ends.
func (s *Social) Close(ctx context.Context, th *SocialConversation, actor, reason string) error {
	now := s.now()
	purgeAfter := now.Add(s.Config.Meta.retention)
	closed, err := s.DB.Social.Close(ctx, th.ID, now, purgeAfter)
	if err != nil {
		return fmt.Errorf("failed to close social conversation: %w", err)
	} else if !closed {
		return ErrAlreadyClosed
	}
	if n, err := s.DB.SocialOutbox.FailWaiting(ctx, th.ID); err != nil {
		s.log.Err(err).Msg("Failed to give up a closed conversation's outbox")
	} else if n > 0 {
		s.log.Info().Str("social_id", th.ID).Int64("given_up", n).Msg("Messages waiting for Meta were given up at close")
	}
	if err = s.Transcript.DestroyKey(th.ID); err != nil {
		s.log.Err(err).Str("social_id", th.ID).Msg("Failed to destroy a closed social conversation's key")
	}
	if err = s.Audit.Append(ctx, actor, AuditClose, th.ID, reason); err != nil {
		s.log.Err(err).Msg("Failed to write audit row for a social close")
	}
	s.publishSocialState(ctx, th.ID)
	lang := s.Config.validatedLanguage
	notice := lang.T(msgSocialClosed, lang.closeReason(reason, actor), formatTime(purgeAfter, lang), s.Config.commandPrefix)
	if s.heldAtClose(ctx, th) {
		notice = lang.T(msgSocialClosedHeld, lang.closeReason(reason, actor), s.Config.commandPrefix)
	}
	s.room.SocialNotice(ctx, th.RoomID, notice)
	s.log.Info().Str("social_id", th.ID).Str("reason", reason).Msg("Social conversation closed")
	return nil
}

// heldAtClose tells whether a legal hold keeps a just closed room, as stored
// (th may predate a hold placed since it was read).
func (s *Social) heldAtClose(ctx context.Context, th *SocialConversation) bool {
	current, err := s.DB.Social.Get(ctx, th.ID)
	if err != nil || current == nil {
		return th.Hold
	}
	return current.Hold
}

// SetHold places or lifts a legal hold on a social conversation's room.
func (s *Social) SetHold(ctx context.Context, th *SocialConversation, actor string, hold bool, reason string) error {
	if err := s.DB.Social.SetHold(ctx, th.ID, hold); err != nil {
		return fmt.Errorf("failed to set hold: %w", err)
	}
	th.Hold = hold
	action := AuditUnhold
	if hold {
		action = AuditHold
	}
	if err := s.Audit.Append(ctx, actor, action, th.ID, reason); err != nil {
		s.log.Err(err).Msg("Failed to write audit row for hold")
	}
	s.publishSocialState(ctx, th.ID)
	return nil
}

// CloseDue closes social conversations whose person has been silent for
// network.meta.idle_close (after 7 days nobody can answer through Meta).
func (s *Social) CloseDue(ctx context.Context) {
	ids, err := s.DB.Social.Idle(ctx, s.now().Add(-s.Config.Meta.idleClose))
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to find idle social conversations")
		return
	}
	for _, socialID := range ids {
		th, err := s.DB.Social.Get(ctx, socialID)
		if err != nil || th == nil {
			continue
		}
		if err = s.Close(ctx, th, "system", CloseIdle); err != nil && !errors.Is(err, ErrAlreadyClosed) {
			zerolog.Ctx(ctx).Err(err).Str("social_id", socialID).Msg("Failed to close an idle social conversation")
		}
	}
}

// PurgeDue purges the rooms of closed social conversations whose retention
// has run out and that have no hold, as for secure conversations.
func (s *Social) PurgeDue(ctx context.Context) {
	ids, err := s.DB.Social.DuePurge(ctx, s.now())
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to find social rooms due for purge")
		return
	}
	for _, socialID := range ids {
		th, err := s.DB.Social.Get(ctx, socialID)
		if err != nil || th == nil || th.Hold {
			continue
		}
		if err = s.Purge(ctx, th); err != nil {
			s.Metrics.Error(ErrKindPurge)
			zerolog.Ctx(ctx).Err(err).Str("social_id", socialID).Msg("Failed to purge a social room, will try again")
		}
	}
}

// Purge deletes a social conversation's room on the homeserver, then what the
// bridge holds of it. The audit trail stays.
func (s *Social) Purge(ctx context.Context, th *SocialConversation) error {
	if th.Hold {
		return ErrOnHold
	}
	if s.Purger == nil {
		return ErrNoPurger
	}
	if th.RoomID != "" {
		if err := s.Purger.PurgeRoom(ctx, th.RoomID); err != nil {
			return err
		}
		s.room.ForgetSocialRoom(ctx, th.ID, th.RoomID, th.GhostID)
	}
	if err := s.DB.Social.Delete(ctx, th.ID); err != nil {
		return fmt.Errorf("failed to drop social conversation rows: %w", err)
	}
	s.Conversations.stateLocks.Delete("social:" + th.ID)
	if err := s.Audit.Append(ctx, "system", AuditPurge, th.ID, ""); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for purge")
	}
	zerolog.Ctx(ctx).Info().Str("social_id", th.ID).Msg("Social conversation room purged")
	return nil
}

// Move starts a secure conversation from a social one: the link and the code
// word go to the person as two messages through the Send API (through the
// outbox, so nothing is lost or doubled), the two rooms name each other, and
// the audit trail has the move under both conversations.
func (s *Social) Move(ctx context.Context, th *SocialConversation, created *CreatedConversation, actor string) error {
	conv := created.Conversation
	if err := s.DB.Social.SetLinked(ctx, th.ID, conv.ID); err != nil {
		return fmt.Errorf("failed to link the conversations: %w", err)
	}
	if err := s.room.SetStateEvent(ctx, conv.RoomID, appservice.StateLinked, &appservice.LinkedState{
		SocialID: th.ID, RoomID: th.RoomID, Platform: th.Platform,
	}); err != nil {
		s.log.Warn().Err(err).Msg("Failed to name the social conversation in the secure room")
	}
	s.publishSocialState(ctx, th.ID)
	for _, subject := range []string{th.ID, conv.ID} {
		if err := s.Audit.Append(ctx, actor, AuditSocialMove, subject, th.ID+" → "+conv.ID); err != nil {
			s.log.Err(err).Msg("Failed to write audit row for a move")
		}
	}
	return s.sendInvite(ctx, th, created, "move:"+conv.ID)
}

// originNotice opens the first notice of a secure conversation moved from
// a social one: where it came from.
func (s *Social) originNotice(th *SocialConversation) string {
	return s.Config.validatedLanguage.T(msgSocialMovedFrom, platformName(meta.Platform(th.Platform)), "https://matrix.to/#/"+th.RoomID.String())
}

// sendInvite queues the link and the code word for the person, in that
// order and as two messages (the citizen-facing text is always bokmål).
func (s *Social) sendInvite(ctx context.Context, th *SocialConversation, created *CreatedConversation, source string) error {
	lang := s.Config.validatedLanguage
	platform := platformName(meta.Platform(th.Platform))
	if err := s.enqueue(ctx, th, source+":link", outboxItem{Text: LangBokmal.T(msgSocialMoveLink, s.Config.UnitName, created.URL)}); err != nil {
		return err
	}
	return s.enqueue(ctx, th, source+":code", outboxItem{
		Text:   LangBokmal.T(msgSocialMoveCode, created.Code),
		Notice: lang.T(msgSocialMoved, platform, created.Conversation.ID),
	})
}

// Reissued sends a secure conversation's new link and code word to the
// person it was moved from, if it was.
func (s *Social) Reissued(ctx context.Context, created *CreatedConversation) (bool, error) {
	th, err := s.DB.Social.GetByLinked(ctx, created.Conversation.ID)
	if err != nil || th == nil || th.Status != scdb.SocialOpen {
		return false, err
	}
	return true, s.sendInvite(ctx, th, created, fmt.Sprintf("reissue:%s:%d", created.Conversation.ID, s.now().UnixNano()))
}

// runLifecycle closes and purges social conversations when they fall due.
func (s *Social) runLifecycle(ctx context.Context) {
	for {
		s.CloseDue(ctx)
		s.PurgeDue(ctx)
		if err := s.DB.MetaDelivery.ForgetSeen(ctx, s.now().Add(-s.Config.Meta.replayWindow).UnixNano()); err != nil && ctx.Err() == nil {
			s.log.Err(err).Msg("Failed to forget the digests of old webhook deliveries")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
	}
}
