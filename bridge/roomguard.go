package bridge

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// A conversation room holds the bot, the conversation's guest ghost and
// permitted officers, and nobody else: room keys for the guest's messages
// go to the devices of its members, so a member who should not be there
// would read what the guest writes. The bot alone can invite (power levels),
// but a homeserver admin can force a join, and an officer's permission can be
// taken away while they are in rooms. So every membership the bridge sees is
// checked, and at start every room is checked again: anyone else is kicked
// and the officers are told. Redactions are written to the audit trail with
// who made them, in the patrol inbox's rooms too.

// RoomGuard keeps conversation rooms to their members and policy.
type RoomGuard struct {
	*Connector
	// officerCheck overrides the bridge permissions (SetOfficerCheck).
	officerCheck func(id.UserID) bool
}

// isOfficer tells whether the bridge permissions make a user an officer.
func (rg *RoomGuard) isOfficer(user id.UserID) bool {
	if rg.officerCheck != nil {
		return rg.officerCheck(user)
	}
	return rg.Bridge != nil && rg.Bridge.Config.Permissions.Get(user).Login
}

// SetOfficerCheck replaces the bridge permissions as the judge of who is an
// officer (connectors without a bridge: tests and tools).
func (rg *RoomGuard) SetOfficerCheck(check func(id.UserID) bool) {
	rg.officerCheck = check
}

// mayBeMember tells whether a user may be in a conversation's room.
func (rg *RoomGuard) mayBeMember(conv *Conversation, user id.UserID) bool {
	bot, guest := rg.Matrix.BridgeMembers(conv)
	return user == bot || user == guest || rg.isOfficer(user)
}

// checkMember acts on one membership of a conversation room: a user who is
// joined or invited and may not be is removed, and the room is told.
func (rg *RoomGuard) checkMember(ctx context.Context, conv *Conversation, user id.UserID, membership event.Membership) {
	if membership != event.MembershipJoin && membership != event.MembershipInvite && membership != event.MembershipKnock {
		return
	}
	if rg.mayBeMember(conv, user) {
		return
	}
	log := zerolog.Ctx(ctx).With().Str("conversation_id", conv.ID).Stringer("user_id", user).Logger()
	lang := rg.Config.validatedLanguage
	if err := rg.Matrix.RemoveMember(ctx, conv, user, lang.T(msgMemberRemovedReason)); err != nil {
		log.Err(err).Msg("Failed to remove a member who is not a permitted officer")
		rg.Matrix.Notice(ctx, conv, lang.T(msgMemberNotRemoved, user))
		return
	}
	log.Warn().Str("membership", string(membership)).Msg("Removed a member who is not a permitted officer")
	rg.Metrics.Error(ErrKindUnexpectedMember)
	if err := rg.Audit.Append(ctx, "system", AuditMemberRemoved, conv.ID, user.String()); err != nil {
		log.Err(err).Msg("Failed to write audit row for removed member")
	}
	rg.Matrix.Notice(ctx, conv, lang.T(msgMemberRemoved, user))
}

// onMember is the bridge's look at every membership event.
func (rg *RoomGuard) onMember(ctx context.Context, evt *event.Event) {
	if evt.StateKey == nil {
		return
	}
	conv, err := rg.DB.Conversation.GetByRoom(ctx, evt.RoomID)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to look up the room of a membership")
		return
	} else if conv == nil {
		// The patrol inbox's rooms have the same rule, with the page's ghost as
		// the one more member the bridge brings.
		th, err := rg.DB.Social.GetByRoom(ctx, evt.RoomID)
		if err != nil || th == nil || rg.Social == nil {
			return
		}
		if id.UserID(*evt.StateKey) == rg.Social.room.GhostMXID(pageGhostID(th.AccountID)) {
			return
		}
		conv = socialAsConversation(th)
	}
	_ = evt.Content.ParseRaw(evt.Type)
	member := evt.Content.AsMember()
	rg.checkMember(ctx, conv, id.UserID(*evt.StateKey), member.Membership)
}

// onRedaction writes who redacted what in a conversation room, or in a
// Messenger or Instagram conversation's room (under that conversation's ID),
// to the audit trail; a redelivered event is written once.
func (rg *RoomGuard) onRedaction(ctx context.Context, evt *event.Event) {
	conv, err := rg.DB.Conversation.GetByRoom(ctx, evt.RoomID)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to look up the room of a redaction")
		return
	} else if conv == nil {
		th, err := rg.DB.Social.GetByRoom(ctx, evt.RoomID)
		if err != nil {
			zerolog.Ctx(ctx).Err(err).Msg("Failed to look up the social room of a redaction")
			return
		} else if th == nil {
			return
		}
		conv = socialAsConversation(th)
	}
	target := evt.Redacts
	if target == "" {
		_ = evt.Content.ParseRaw(evt.Type)
		if content := evt.Content.AsRedaction(); content != nil {
			target = content.Redacts
		}
	}
	rg.RecordRedaction(ctx, conv, evt.Sender, evt.ID, target)
}

// RecordRedaction adds an audit row for a redaction, once per redaction event.
func (rg *RoomGuard) RecordRedaction(ctx context.Context, conv *Conversation, sender id.UserID, redaction, target id.EventID) {
	detail := fmt.Sprintf("%s redacted by %s", target, redaction)
	rows, err := rg.Audit.ForConversation(ctx, conv.ID)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to read audit trail for a redaction")
		return
	}
	for _, r := range rows {
		if r.Action == AuditRedact && r.Detail == detail {
			return
		}
	}
	if err = rg.Audit.Append(ctx, sender.String(), AuditRedact, conv.ID, detail); err != nil {
		zerolog.Ctx(ctx).Err(err).Str("conversation_id", conv.ID).Msg("Failed to write audit row for redaction")
	}
}

// guardRooms brings every room the police still keep up to the current
// policy (rooms made by an older sikkerchat) and checks its members once.
func (rg *RoomGuard) guardRooms(ctx context.Context) {
	convs, err := rg.DB.Conversation.ListWithRoom(ctx)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to list conversation rooms to check")
		return
	}
	for _, conv := range convs {
		if ctx.Err() != nil {
			return
		}
		members, err := rg.Matrix.GuardRoom(ctx, conv)
		if err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("conversation_id", conv.ID).Msg("Failed to check a conversation room's policy")
			continue
		}
		for user, membership := range members {
			rg.checkMember(ctx, conv, user, membership)
		}
		// One room at a time, slowly: this must never crowd out live traffic.
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}
