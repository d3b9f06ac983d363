package bridge_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// officerSaid keeps an officer's message for the guest, as a transaction would.
func (tb *testBridge) officerSaid(conv *bridge.Conversation, eventID id.EventID, text string) {
	tb.t.Helper()
	_, err := tb.Transcript.Append(tb.ctx, conv.ID, &bridge.TranscriptEntry{
		Direction: bridge.ToGuest, MatrixEventID: eventID, CreatedAt: time.Now(), Kind: "text", Text: text,
	})
	require.NoError(tb.t, err)
}

func portalOf(conv *bridge.Conversation) *bridgev2.Portal {
	return &bridgev2.Portal{Portal: &database.Portal{PortalKey: networkid.PortalKey{ID: networkid.PortalID(conv.ID)}, MXID: conv.RoomID}}
}

func edit(conv *bridge.Conversation, sender, author id.UserID, target id.EventID, text string) *bridgev2.MatrixEdit {
	return &bridgev2.MatrixEdit{
		MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
			Event:   &event.Event{ID: id.EventID("$edit-" + string(sender)), Sender: sender},
			Content: &event.MessageEventContent{MsgType: event.MsgText, Body: text},
			Portal:  portalOf(conv),
		},
		EditTarget: &database.Message{MXID: target, SenderMXID: author},
	}
}

// Only the officer who wrote a message can change what the guest sees of it.
func TestOfficerCannotEditAColleaguesMessage(t *testing.T) {
	tb, inv := newGuardedBridge(t)
	tb.officerSaid(inv.conv, "$msg", "Vi ringer deg i morgen")
	client := &bridge.OfficerClient{Connector: tb.Connector}

	err := client.HandleMatrixEdit(tb.ctx, edit(inv.conv, "@officer2:example.org", officer, "$msg", "Vi ringer aldri"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "bare endre dine egne")
	entry, err := tb.Transcript.ByEvent(tb.ctx, inv.conv.ID, "$msg")
	require.NoError(t, err)
	require.Equal(t, "Vi ringer deg i morgen", entry.Text)
	require.False(t, entry.Edited)

	require.NoError(t, client.HandleMatrixEdit(tb.ctx, edit(inv.conv, officer, officer, "$msg", "Vi ringer deg i dag")))
	entry, err = tb.Transcript.ByEvent(tb.ctx, inv.conv.ID, "$msg")
	require.NoError(t, err)
	require.Equal(t, "Vi ringer deg i dag", entry.Text)
	require.True(t, entry.Edited)
}

// A redaction of someone else's message (possible only at the bot's level)
// does not take it off the guest's page as if the author had.
func TestRedactionOfAnotherOfficersMessageIsNotShownAsTheirs(t *testing.T) {
	tb, inv := newGuardedBridge(t)
	tb.officerSaid(inv.conv, "$msg", "Husk 116 111")
	client := &bridge.OfficerClient{Connector: tb.Connector}
	remove := func(sender id.UserID) *bridgev2.MatrixMessageRemove {
		return &bridgev2.MatrixMessageRemove{
			MatrixEventBase: bridgev2.MatrixEventBase[*event.RedactionEventContent]{
				Event: &event.Event{ID: "$redaction", Sender: sender}, Content: &event.RedactionEventContent{}, Portal: portalOf(inv.conv),
			},
			TargetMessage: &database.Message{MXID: "$msg", SenderMXID: officer},
		}
	}
	require.NoError(t, client.HandleMatrixMessageRemove(tb.ctx, remove("@officer2:example.org")))
	entry, err := tb.Transcript.ByEvent(tb.ctx, inv.conv.ID, "$msg")
	require.NoError(t, err)
	require.False(t, entry.Deleted)
	require.NoError(t, client.HandleMatrixMessageRemove(tb.ctx, remove(officer)))
	entry, err = tb.Transcript.ByEvent(tb.ctx, inv.conv.ID, "$msg")
	require.NoError(t, err)
	require.True(t, entry.Deleted)
}
