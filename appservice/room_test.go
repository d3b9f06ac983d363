package appservice

import (
	"testing"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func TestCreateRoomRequestPolicy(t *testing.T) {
	req := CreateRoomRequest(RoomSpec{
		Name: "🔒 Gjest 1234", Bot: "@bot:x", Officers: []id.UserID{"@officer:x"}, Guest: "@sikkerchat_g:x",
		State:      ConversationState{ConversationID: "c1", Status: "created"},
		Encryption: event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1},
	})
	state := map[string]any{}
	for _, evt := range req.InitialState {
		state[evt.Type.Type] = evt.Content.Parsed
	}
	require.Equal(t, id.AlgorithmMegolmV1, state["m.room.encryption"].(*event.EncryptionEventContent).Algorithm)
	require.Equal(t, event.HistoryVisibilityJoined, state["m.room.history_visibility"].(*event.HistoryVisibilityEventContent).HistoryVisibility)
	require.Equal(t, event.JoinRuleInvite, state["m.room.join_rules"].(*event.JoinRulesEventContent).JoinRule)
	require.Equal(t, event.GuestAccessForbidden, state["m.room.guest_access"].(*event.GuestAccessEventContent).GuestAccess)
	require.Equal(t, "c1", state["no.sikkerchat.conversation"].(*ConversationState).ConversationID)
	require.Equal(t, false, req.CreationContent["m.federate"])
	require.ElementsMatch(t, []id.UserID{"@sikkerchat_g:x", "@officer:x"}, req.Invite)

	pl := req.PowerLevelOverride
	require.Equal(t, 100, pl.Users["@bot:x"])
	require.Equal(t, 50, pl.Users["@officer:x"])
	require.Equal(t, 0, pl.Users["@sikkerchat_g:x"])
	require.Equal(t, 100, pl.Invite(), "only the bot brings people in")
	require.Equal(t, 100, pl.Kick())
	require.Equal(t, 100, pl.StateDefault())
	for _, typ := range []event.Type{event.StateEncryption, event.StateHistoryVisibility, event.StateJoinRules,
		event.StateGuestAccess, event.StatePowerLevels, StateConversation} {
		require.Equal(t, 100, pl.GetEventLevel(typ), typ.Type)
	}
	require.Equal(t, 0, pl.GetEventLevel(event.EventMessage), "the guest can talk")
	require.Equal(t, 0, pl.GetEventLevel(event.EventEncrypted), "the guest can talk")
	require.Equal(t, 50, pl.GetEventLevel(event.StateRoomName), "officers can rename")
	// Officers take back their own messages only: the guest's words stay.
	require.Equal(t, 100, pl.Redact(), "redacting someone else's message is the bot's")
	require.LessOrEqual(t, pl.GetEventLevel(event.EventRedaction), 50, "officers can redact their own")
	require.False(t, HardenPowerLevels(pl), "a new room already has the policy")
}

func TestHardenPowerLevelsOfAnOlderRoom(t *testing.T) {
	officers := 50
	pl := &event.PowerLevelsEventContent{RedactPtr: &officers, Users: map[id.UserID]int{"@officer:x": 50}}
	require.True(t, HardenPowerLevels(pl))
	require.Equal(t, 100, pl.Redact())
	require.Equal(t, 50, pl.Users["@officer:x"], "nothing else changes")
	require.False(t, HardenPowerLevels(pl))
}

// A social conversation room carries its own state event instead of the
// secure conversation's, and the page's ghost beside the person, with no
// more power than the person.
func TestSocialRoomRequest(t *testing.T) {
	social := &SocialState{SocialID: "s1", Platform: "messenger", Account: "106512345678901", Status: "open", Window: "open"}
	req := CreateRoomRequest(RoomSpec{
		Name: "Messenger: Messenger-bruker 1234", Bot: "@bot:x", Officers: []id.UserID{"@o:x"}, Guest: "@person:x", Page: "@page:x",
		Social: social, Encryption: event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1},
	})
	var types []string
	for _, evt := range req.InitialState {
		types = append(types, evt.Type.Type)
		if evt.Type == StateSocial {
			require.Same(t, social, evt.Content.Parsed)
		}
		if evt.Type == event.StateHistoryVisibility {
			require.Equal(t, event.HistoryVisibilityInvited, evt.Content.Parsed.(*event.HistoryVisibilityEventContent).HistoryVisibility,
				"officers invited before the person's first message see it when they join later")
		}
	}
	require.Contains(t, types, StateSocial.Type)
	require.NotContains(t, types, StateConversation.Type)
	require.Contains(t, types, event.StateEncryption.Type)
	require.Equal(t, PowerGuest, req.PowerLevelOverride.Users["@page:x"])
	require.Equal(t, PowerBot, req.PowerLevelOverride.Events[StateSocial.Type], "only the bot changes the social state")
	require.Equal(t, PowerBot, req.PowerLevelOverride.Events[StateLinked.Type])
	require.ElementsMatch(t, []id.UserID{"@person:x", "@o:x", "@page:x"}, req.Invite)
}
