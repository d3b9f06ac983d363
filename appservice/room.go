// Package appservice holds what sikkerchat does on the homeserver beyond
// bridgev2: the room policy of a conversation room, its state event, and (later)
// the homeserver admin APIs used to purge rooms.
package appservice

import (
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// StateConversation is the integrator-facing state event in every conversation room.
var StateConversation = event.Type{Type: "no.sikkerchat.conversation", Class: event.StateEventType}

// ConversationState is the content of StateConversation (times in ms since epoch).
type ConversationState struct {
	ConversationID  string    `json:"conversation_id"`
	Status          string    `json:"status"`
	CreatedBy       id.UserID `json:"created_by"`
	CreatedAt       int64     `json:"created_at"`
	InviteExpiresAt int64     `json:"invite_expires_at"`
	Guest           id.UserID `json:"guest"`
	ClosedAt        int64     `json:"closed_at"`
	PurgeAfter      int64     `json:"purge_after"`
	Hold            bool      `json:"hold"`
}

// StateSocial is the state event in every social conversation room (the
// patrol inbox): where the conversation lives and what may be sent now.
var StateSocial = event.Type{Type: "no.sikkerchat.social", Class: event.StateEventType}

// SocialState is the content of StateSocial (times in ms since epoch).
type SocialState struct {
	SocialID string `json:"social_id"`
	// Platform is messenger or instagram; Account the Page or Instagram account.
	Platform  string    `json:"platform"`
	Account   string    `json:"account"`
	Status    string    `json:"status"`
	Person    id.UserID `json:"person"`
	CreatedAt int64     `json:"created_at"`
	// LastInboundAt is the person's last message, from which the windows count.
	LastInboundAt int64 `json:"last_inbound_at"`
	// Window is open (24 h), human_agent (to 7 days, with the feature) or closed.
	Window      string `json:"window"`
	WindowUntil int64  `json:"window_until"`
	// LinkedConversations are the secure conversations made from this one.
	LinkedConversations []string `json:"linked_conversations,omitempty"`
	ClosedAt            int64    `json:"closed_at"`
	PurgeAfter          int64    `json:"purge_after"`
	Hold                bool     `json:"hold"`
}

// StateLinked in a secure conversation room names the social conversation it
// was made from.
var StateLinked = event.Type{Type: "no.sikkerchat.linked", Class: event.StateEventType}

// LinkedState is the content of StateLinked.
type LinkedState struct {
	SocialID string    `json:"social_id"`
	RoomID   id.RoomID `json:"room_id"`
	Platform string    `json:"platform"`
}

// Power levels of a conversation room. Officers can talk, rename and take
// back their own messages; everything that changes who is in the room or how
// it is protected stays with the bridge bot, so that nobody can invite an
// outsider, turn off encryption or widen history visibility. Redacting
// someone else's message (the guest's, a colleague's) needs the bot's level:
// what the guest said is evidence, and stays in the room as said.
const (
	PowerBot     = 100
	PowerOfficer = 50
	PowerGuest   = 0
)

// RoomSpec is what a conversation room needs at creation.
type RoomSpec struct {
	Name     string
	Topic    string
	Bot      id.UserID
	Officers []id.UserID
	Guest    id.UserID
	State    ConversationState
	// Social, when set, makes a social conversation room: its state event
	// instead of the conversation's, and Page (the unit's Page or Instagram
	// account as a member) beside the person.
	Social     *SocialState
	Page       id.UserID
	Encryption event.EncryptionEventContent
	// Federate is false unless the deployment spans homeservers.
	Federate bool
}

// CreateRoomRequest builds the room creation request. Everything that protects
// the conversation is in the initial state, so there is no moment in which the
// room exists without encryption or with wider history visibility.
func CreateRoomRequest(spec RoomSpec) *mautrix.ReqCreateRoom {
	users := map[id.UserID]int{spec.Bot: PowerBot, spec.Guest: PowerGuest}
	if spec.Page != "" {
		users[spec.Page] = PowerGuest
	}
	for _, officer := range spec.Officers {
		users[officer] = PowerOfficer
	}
	stateOnlyBot := []event.Type{
		event.StateEncryption, event.StatePowerLevels, event.StateHistoryVisibility, event.StateJoinRules,
		event.StateGuestAccess, event.StateCanonicalAlias, event.StateServerACL, event.StateTombstone,
		event.StateRoomAvatar, event.StateBridge, event.StateHalfShotBridge, StateConversation,
		event.StateSpaceParent, event.StatePinnedEvents, StateSocial, StateLinked,
	}
	events := map[string]int{
		event.StateRoomName.Type:  PowerOfficer,
		event.StateTopic.Type:     PowerOfficer,
		event.EventRedaction.Type: PowerGuest,
		event.EventMessage.Type:   PowerGuest,
		event.EventEncrypted.Type: PowerGuest,
		event.EventReaction.Type:  PowerGuest,
		event.EventSticker.Type:   PowerGuest,
	}
	for _, t := range stateOnlyBot {
		events[t.Type] = PowerBot
	}
	zero, botOnly := PowerGuest, PowerBot
	powerLevels := &event.PowerLevelsEventContent{
		Users:           users,
		Events:          events,
		UsersDefault:    zero,
		EventsDefault:   zero,
		StateDefaultPtr: &botOnly,
		InvitePtr:       &botOnly,
		KickPtr:         &botOnly,
		BanPtr:          &botOnly,
		RedactPtr:       &botOnly,
	}
	empty := ""
	// A secure conversation's room is made by the officer who is in it from
	// the start. A social conversation's officers are invited before anything
	// is said in it and may join hours later: they must see what the person
	// wrote meanwhile, and nothing from before their invite.
	visibility := event.HistoryVisibilityJoined
	if spec.Social != nil {
		visibility = event.HistoryVisibilityInvited
	}
	initial := []*event.Event{
		{Type: event.StateEncryption, StateKey: &empty, Content: event.Content{Parsed: &spec.Encryption}},
		{Type: event.StateHistoryVisibility, StateKey: &empty, Content: event.Content{Parsed: &event.HistoryVisibilityEventContent{
			HistoryVisibility: visibility,
		}}},
		{Type: event.StateJoinRules, StateKey: &empty, Content: event.Content{Parsed: &event.JoinRulesEventContent{
			JoinRule: event.JoinRuleInvite,
		}}},
		{Type: event.StateGuestAccess, StateKey: &empty, Content: event.Content{Parsed: &event.GuestAccessEventContent{
			GuestAccess: event.GuestAccessForbidden,
		}}},
	}
	if spec.Social != nil {
		initial = append(initial, &event.Event{Type: StateSocial, StateKey: &empty, Content: event.Content{Parsed: spec.Social}})
	} else {
		initial = append(initial, &event.Event{Type: StateConversation, StateKey: &empty, Content: event.Content{Parsed: &spec.State}})
	}
	if spec.Topic != "" {
		initial = append(initial, &event.Event{Type: event.StateTopic, StateKey: &empty,
			Content: event.Content{Parsed: &event.TopicEventContent{Topic: spec.Topic}}})
	}
	creation := map[string]any{}
	if !spec.Federate {
		creation["m.federate"] = false
	}
	invite := append([]id.UserID{spec.Guest}, spec.Officers...)
	if spec.Page != "" {
		invite = append(invite, spec.Page)
	}
	return &mautrix.ReqCreateRoom{
		Visibility:         "private",
		Name:               spec.Name,
		Preset:             "private_chat",
		Invite:             invite,
		CreationContent:    creation,
		InitialState:       initial,
		PowerLevelOverride: powerLevels,
	}
}

// HardenPowerLevels brings the power levels of a room made before the
// current policy up to it: redacting another member's message needs the
// bot's level. It reports whether anything changed.
func HardenPowerLevels(pl *event.PowerLevelsEventContent) (changed bool) {
	if pl.Redact() < PowerBot {
		redact := PowerBot
		pl.RedactPtr = &redact
		changed = true
	}
	return changed
}
