package bridge

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// inviteBot has officer open an encrypted room of two with the bot, as
// Element's "start chat" does, and hands the invite to the bridge the way the
// homeserver does (bridgev2 accepts it and decides on the management room).
func (ob *offBridge) inviteBot(officer id.UserID, room id.RoomID) {
	ob.t.Helper()
	ob.hs.setState(room, officer, event.StateMember.Type, officer.String(), map[string]string{"membership": "join"})
	ob.hs.setState(room, officer, event.StateMember.Type, offBot.String(), map[string]string{"membership": "invite"})
	require.NoError(ob.t, ob.mc.StateStore.SetEncryptionEvent(ob.ctx, room, &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}))
	invite := offMember(room, offBot, event.MembershipInvite)
	invite.Sender, invite.ID = officer, id.EventID(fmt.Sprintf("$invite-%s", room))
	require.NoError(ob.t, invite.Content.ParseRaw(invite.Type))
	ob.mc.EventProcessor.Dispatch(ob.ctx, invite)
}

// say sends a message from user into room as bridgev2 gets it after
// decryption, and returns its event ID.
func (ob *offBridge) say(user id.UserID, room id.RoomID, msgType event.MessageType, body string) id.EventID {
	ob.t.Helper()
	ob.commands++
	eventID := id.EventID(fmt.Sprintf("$offsay%d", ob.commands))
	content, err := json.Marshal(map[string]any{"msgtype": msgType, "body": body})
	require.NoError(ob.t, err)
	evt := &event.Event{Type: event.EventMessage, RoomID: room, ID: eventID, Sender: user, Timestamp: time.Now().UnixMilli(),
		Content: event.Content{VeryRaw: content}}
	require.NoError(ob.t, evt.Content.ParseRaw(evt.Type))
	evt.Mautrix.WasEncrypted = true
	ob.mc.EventProcessor.Dispatch(ob.ctx, evt)
	return eventID
}

// answersTo lists the bot's replies to an event.
func (ob *offBridge) answersTo(room id.RoomID, eventID id.EventID) []offMessage {
	var out []offMessage
	for _, m := range ob.messages(room) {
		if m.Sender == offBot && m.replyTo() == eventID {
			out = append(out, m)
		}
	}
	return out
}

// answer waits for the one reply to an event (bridgev2 runs commands in the background).
func (ob *offBridge) answer(room id.RoomID, eventID id.EventID) offMessage {
	ob.t.Helper()
	require.Eventually(ob.t, func() bool { return len(ob.answersTo(room, eventID)) > 0 }, 10*time.Second, 5*time.Millisecond)
	answers := ob.answersTo(room, eventID)
	require.Len(ob.t, answers, 1)
	require.Equal(ob.t, "m.notice", answers[0].Content["msgtype"])
	return answers[0]
}

// noPlainNotes waits until the gate has taken every note (and so has
// decided about every management room message handed to it).
func (ob *offBridge) noPlainNotes() {
	ob.t.Helper()
	require.Eventually(ob.t, func() bool {
		ob.sc.officerCmds.plain.mu.Lock()
		defer ob.sc.officerCmds.plain.mu.Unlock()
		return len(ob.sc.officerCmds.plain.notes) == 0
	}, 10*time.Second, 5*time.Millisecond)
}

// A new officer who opens a direct chat with the bot is greeted by
// sikkerchat in bokmål: what it is for and how to start. bridgev2's English
// greeting, which offers a `login` sikkerchat has not, never reaches them,
// neither in the first chat (their management room) nor in a later one.
func TestDirectChatWithTheBotOpensWithSikkerchatsWelcome(t *testing.T) {
	ob := newOffBridge(t, nil)
	first := id.RoomID("!forste:example.org")
	ob.inviteBot(offOfficer, first)
	msgs := ob.messages(first)
	require.Len(t, msgs, 1, "one welcome")
	welcome := msgs[0]
	require.Equal(t, offBot, welcome.Sender)
	require.True(t, welcome.Encrypted)
	require.Equal(t, "m.notice", welcome.Content["msgtype"])
	require.Equal(t, LangBokmal.T(msgWelcome, "!sc")+"\n\n"+LangBokmal.T(msgWelcomeManagement, "!sc"), welcome.body())
	require.Contains(t, welcome.body(), "`!sc new [merkelapp]`")
	require.Contains(t, welcome.body(), "`!sc help`")
	user, err := ob.br.GetExistingUserByMXID(ob.ctx, offOfficer)
	require.NoError(t, err)
	require.Equal(t, first, user.ManagementRoom, "bridgev2 still makes the first chat the management room")

	second := id.RoomID("!andre:example.org")
	ob.inviteBot(offOfficer, second)
	msgs = ob.messages(second)
	require.Len(t, msgs, 1)
	require.Equal(t, LangBokmal.T(msgWelcome, "!sc"), msgs[0].body(), "commands need the prefix outside the management room")

	for _, room := range []id.RoomID{first, second} {
		for _, m := range ob.messages(room) {
			require.NotContains(t, strings.ToLower(m.body()), "login", room)
			require.NotContains(t, m.body(), "Hello", room)
			require.NotContains(t, m.body(), "management room", room)
		}
	}

	en := newOffBridge(t, func(c *Config) { c.Language = "en" })
	en.inviteBot(offOfficer, first)
	require.True(t, strings.HasPrefix(en.messages(first)[0].body(), "**Welcome to sikkerchat**"), en.messages(first)[0].body())
}

// A plain message to the bot in the officer's management room ("hei") is
// answered with where the commands are; a command works there without the
// prefix, a mistyped prefixed one is still an unknown command, and a notice
// (how bots write) gets no answer. Elsewhere plain messages are no business
// of the command gate: in a conversation room they go to the guest.
func TestPlainMessageInTheManagementRoomGetsAHelpLine(t *testing.T) {
	ob := newOffBridge(t, nil)
	dm := id.RoomID("!direkte:example.org")
	ob.inviteBot(offOfficer, dm)
	help := "Jeg svarer bare på kommandoer. De begynner med `!sc`: skriv `!sc new [merkelapp]` for å starte en sikker samtale, " +
		"eller `!sc help` for alle kommandoene."

	for _, text := range []string{"hei", "Hei, hvordan virker dette?", "login", "> sitat"} {
		require.Equal(t, help, ob.answer(dm, ob.say(offOfficer, dm, event.MsgText, text)).body(), text)
	}
	require.Equal(t, help, ob.answer(dm, ob.say(offOfficer, dm, event.MsgEmote, "status")).body(), "only text can be a command")
	require.Equal(t, "Ukjent kommando. Skriv `!sc help` for en liste.", ob.answer(dm, ob.say(offOfficer, dm, event.MsgText, "!sc hei")).body())
	require.Contains(t, ob.answer(dm, ob.say(offOfficer, dm, event.MsgText, "status")).body(), "sikkerchat kjører")
	require.Contains(t, ob.answer(dm, ob.say(offOfficer, dm, event.MsgText, "!sc status")).body(), "sikkerchat kjører")

	before := len(ob.messages(dm))
	ob.say(offOfficer, dm, event.MsgNotice, "hei")
	ob.say(offBot, dm, event.MsgNotice, "hei")
	ob.say(offColleague, dm, event.MsgText, "hei") // someone else (a bot someone let in): not their management room
	ob.noPlainNotes()
	require.Len(t, ob.messages(dm), before, "notices and others are not answered")

	// Another room of the officer's with the bot is no management room: silence, as before.
	other := id.RoomID("!annen:example.org")
	ob.inviteBot(offOfficer, other)
	before = len(ob.messages(other))
	ob.say(offOfficer, other, event.MsgText, "hei")
	ob.noPlainNotes()
	require.Len(t, ob.messages(other), before)

	// In a conversation room a plain message is for the guest.
	created := ob.newConversation(offOfficer, "")
	ob.joinGuest(created)
	before = len(ob.messages(created.room))
	said := ob.say(offOfficer, created.room, event.MsgText, "hei")
	require.Eventually(t, func() bool {
		entries, err := ob.sc.Transcript.Since(ob.ctx, created.conv.ID, 0)
		require.NoError(t, err)
		for _, e := range entries {
			if e.MatrixEventID == said {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "the guest gets it")
	ob.noPlainNotes()
	require.Empty(t, ob.answersTo(created.room, said))
	require.Len(t, ob.messages(created.room), before)
	require.NotContains(t, ob.log.String(), "Hei, hvordan virker dette?", "what officers write stays out of the log")
}
