package bridge

import (
	"context"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

var _ bridgev2.MatrixAPI = (*welcomeBot)(nil)

// An officer's first direct chat with the bot becomes their management room
// (bridgev2 decides that when the bot accepts the invite), where bridgev2
// hands every message to the command processor, prefixed or not. What an
// officer meets there is sikkerchat's, in the officer language: the welcome,
// and a help line for what is no command.

// welcomeBot is the bridge bot with sikkerchat's welcome. bridgev2 (v0.31)
// greets whoever invites the bot into a room of two with a fixed English text
// that offers `login`, which sikkerchat has not (its management_room_texts
// setting is read but never used); that one message is replaced.
type welcomeBot struct {
	*matrix.ASIntent
	sc *Connector
}

func (b *welcomeBot) SendMessage(ctx context.Context, roomID id.RoomID, eventType event.Type, content *event.Content, extra *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	if eventType == event.EventMessage && content != nil && content.Raw == nil {
		// bridgev2 puts its greeting in as a value, not a pointer.
		var msg *event.MessageEventContent
		switch parsed := content.Parsed.(type) {
		case event.MessageEventContent:
			msg = &parsed
		case *event.MessageEventContent:
			msg = parsed
		}
		if welcome, ok := b.sc.welcomeFor(msg); ok {
			content = &event.Content{Parsed: renderNotice(welcome)}
		}
	}
	return b.ASIntent.SendMessage(ctx, roomID, eventType, content, extra)
}

// welcomeFor is sikkerchat's welcome in place of bridgev2's greeting (ok
// false for any other message). bridgev2 says in its greeting whether the
// room became the management room, where commands need no prefix.
func (sc *Connector) welcomeFor(msg *event.MessageEventContent) (string, bool) {
	greeting := "Hello, I'm a " + sc.GetName().DisplayName + " bridge bot."
	if msg == nil || msg.MsgType != event.MsgText || !strings.HasPrefix(msg.Body, greeting) {
		return "", false
	}
	lang := sc.Config.validatedLanguage
	welcome := lang.T(msgWelcome, sc.Config.commandPrefix)
	if strings.Contains(msg.Body, "management room") {
		welcome += "\n\n" + lang.T(msgWelcomeManagement, sc.Config.commandPrefix)
	}
	return welcome, true
}

// botIntent is the bot's appservice intent, under the welcome.
func (sc *Connector) botIntent() *matrix.ASIntent {
	switch bot := sc.Bridge.Bot.(type) {
	case *welcomeBot:
		return bot.ASIntent
	case *matrix.ASIntent:
		return bot
	}
	return nil
}

// plainMessageName is where the gate sends what an officer wrote in their
// management room without the command prefix and that is no command.
const plainMessageName = "plain-message"

// plainNoteTTL bounds how long a note waits for the gate (it comes at once;
// a message bridgev2 drops before the processor never comes).
const plainNoteTTL = time.Minute

// plainMessages tells the command gate which of the messages that bridgev2
// hands it were written without the command prefix: the processor gets them
// with the prefix cut off, so "!sc hei" (a mistyped command) and "hei" (talk)
// look the same there. A hook that runs before bridgev2's own handler notes
// them by event ID; the gate takes the note. (bridgev2 handles one event at a
// time unless appservice.async_transactions is on; then a note may come late
// and the message gets the unknown-command answer instead.)
type plainMessages struct {
	mu    sync.Mutex
	notes map[id.EventID]plainNote
}

type plainNote struct {
	msgType event.MessageType
	at      time.Time
}

// note runs before bridgev2 sees a message: one from an officer in their own
// management room without the prefix is noted for the gate.
func (oc *officerCommands) note(ctx context.Context, evt *event.Event) {
	if evt.Sender == oc.Bridge.Bot.GetMXID() || oc.Bridge.IsGhostMXID(evt.Sender) {
		return
	}
	msg := evt.Content.AsMessage()
	if msg == nil || msg.MsgType == "" {
		return
	}
	user, err := oc.Bridge.GetExistingUserByMXID(ctx, evt.Sender)
	if err != nil || user == nil || evt.RoomID == "" || user.ManagementRoom != evt.RoomID {
		return
	}
	// bridgev2 looks for the prefix after the reply fallback; a copy keeps its event as it is.
	body := *msg
	body.RemoveReplyFallback()
	if strings.HasPrefix(body.Body, oc.Bridge.Config.CommandPrefix) {
		return
	}
	now := time.Now()
	oc.plain.mu.Lock()
	defer oc.plain.mu.Unlock()
	if oc.plain.notes == nil {
		oc.plain.notes = map[id.EventID]plainNote{}
	}
	for eventID, n := range oc.plain.notes {
		if now.Sub(n.at) > plainNoteTTL {
			delete(oc.plain.notes, eventID)
		}
	}
	oc.plain.notes[evt.ID] = plainNote{msgType: msg.MsgType, at: now}
}

// takeNote says whether a message came without the prefix, and of what type.
func (oc *officerCommands) takeNote(eventID id.EventID) (event.MessageType, bool) {
	oc.plain.mu.Lock()
	defer oc.plain.mu.Unlock()
	n, ok := oc.plain.notes[eventID]
	delete(oc.plain.notes, eventID)
	return n.msgType, ok
}

// cmdPlainMessage answers talk in the management room with where the commands are.
func (oc *officerCommands) cmdPlainMessage(ce *commands.Event) {
	oc.reply(ce, oc.Config.validatedLanguage.T(msgPlainMessage, oc.Config.commandPrefix))
}
