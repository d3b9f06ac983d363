package bridge

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// offGuest is a conversation's guest ghost.
func offGuest(conv *Conversation) id.UserID {
	return id.UserID("@sikkerchat_" + conv.GhostID + ":example.org")
}

// offMember is a membership event as the homeserver sends it to the bridge.
func offMember(room id.RoomID, user id.UserID, membership event.Membership) *event.Event {
	key := user.String()
	content, _ := json.Marshal(map[string]any{"membership": membership})
	return &event.Event{Type: event.StateMember, RoomID: room, StateKey: &key, Sender: user, Content: event.Content{VeryRaw: content}}
}

// Every membership the bridge sees in a conversation room is checked against
// the bridge permissions: someone who is not a permitted officer is kicked on
// the homeserver, the room is told (encrypted) and the audit trail says who.
// Rooms that are no conversation are none of the guard's business.
func TestMembershipEventsLetOnlyPermittedOfficersStay(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	before := len(ob.messages(created.room))
	for _, m := range []struct {
		user       id.UserID
		membership event.Membership
	}{
		{offColleague, event.MembershipJoin}, // example.org users are officers
		{offAdmin, event.MembershipInvite},
		{offGuest(created.conv), event.MembershipJoin},
		{offBot, event.MembershipJoin},
		{offCitizen, event.MembershipLeave},
	} {
		ob.sc.Guard.onMember(ob.ctx, offMember(created.room, m.user, m.membership))
	}
	ob.sc.Guard.onMember(ob.ctx, offMember("!annet:example.org", offCitizen, event.MembershipJoin))
	noKey := offMember(created.room, offCitizen, event.MembershipJoin)
	noKey.StateKey = nil
	ob.sc.Guard.onMember(ob.ctx, noKey)
	require.Empty(t, ob.hs.requestsTo("/kick"))
	require.Len(t, ob.messages(created.room), before)

	for _, who := range []id.UserID{offCitizen, offCmdsOnly} {
		ob.hs.setState(created.room, who, "m.room.member", who.String(), map[string]string{"membership": "join"})
		ob.sc.Guard.onMember(ob.ctx, offMember(created.room, who, event.MembershipJoin))
		require.Equal(t, event.MembershipLeave, ob.hs.membership(created.room, who), who)
	}
	kicks := ob.hs.requestsTo("/kick")
	require.Len(t, kicks, 2)
	require.Equal(t, offBot, kicks[0].User, "the bot kicks")
	require.JSONEq(t, `{"user_id":"`+offCitizen.String()+`","reason":"Ikke en godkjent betjent i sikkerchat"}`, string(kicks[0].Body))
	notices := ob.messages(created.room)[before:]
	require.Len(t, notices, 2)
	require.True(t, notices[0].Encrypted)
	require.True(t, strings.HasPrefix(notices[0].body(), "⚠️ "+offCitizen.String()+" er ikke en godkjent betjent"), notices[0].body())
	rows := ob.audit(created.conv.ID)
	require.Equal(t, []string{AuditMemberRemoved, "system", offCmdsOnly.String()}, []string{rows[len(rows)-1].Action, rows[len(rows)-1].Actor, rows[len(rows)-1].Detail})
}

// Redactions in a conversation room go into the audit trail with who made
// them, whether the homeserver names the target at the top (room versions up
// to 10) or in the content (11), and once however often it is delivered.
func TestRedactionEventsAreAuditedOnce(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	old := &event.Event{Type: event.EventRedaction, RoomID: created.room, ID: "$red1", Sender: offOfficer, Redacts: "$msg1",
		Content: event.Content{VeryRaw: json.RawMessage(`{}`)}}
	v11 := &event.Event{Type: event.EventRedaction, RoomID: created.room, ID: "$red2", Sender: offColleague,
		Content: event.Content{VeryRaw: json.RawMessage(`{"redacts":"$msg2"}`)}}
	for range 3 {
		ob.sc.Guard.onRedaction(ob.ctx, old)
		ob.sc.Guard.onRedaction(ob.ctx, v11)
	}
	ob.sc.Guard.onRedaction(ob.ctx, &event.Event{Type: event.EventRedaction, RoomID: "!annet:example.org", ID: "$red3", Sender: offOfficer, Redacts: "$x"})
	var got [][]string
	for _, r := range ob.audit(created.conv.ID) {
		if r.Action == AuditRedact {
			got = append(got, []string{r.Actor, r.Detail})
		}
	}
	require.Equal(t, [][]string{{offOfficer.String(), "$msg1 redacted by $red1"}, {offColleague.String(), "$msg2 redacted by $red2"}}, got)
}

// At start every kept room is brought up to the current policy: a room made
// when officers could redact others' messages gets the bot's level for it,
// with everything else in its power levels kept; members who may not be
// there are removed. A room already up to date is left alone, and a room
// whose state cannot be read does not stop the others.
func TestGuardRoomsUpgradesOlderRoomsAndRemovesOutsiders(t *testing.T) {
	ob := newOffBridge(t, nil)
	older := ob.newConversation(offOfficer, "")
	current := ob.newConversation(offOfficer, "")
	broken := ob.newConversation(offColleague, "")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, older.conv, offOfficer.String(), CloseByOfficer))
	pl := ob.hs.stateOf(older.room, "m.room.power_levels", "")
	pl["redact"] = 50
	ob.hs.setState(older.room, offBot, "m.room.power_levels", "", pl)
	ob.hs.setState(older.room, offCitizen, "m.room.member", offCitizen.String(), map[string]string{"membership": "join"})
	ob.hs.failOn("GET /_matrix/client/v3/rooms/" + broken.room.String() + "/state/m.room.power_levels")

	ob.sc.Guard.guardRooms(ob.ctx)
	puts := ob.hs.requestsTo("PUT /_matrix/client/v3/rooms/" + older.room.String() + "/state/m.room.power_levels")
	require.Len(t, puts, 1, "the older room, closed or not")
	upgraded := ob.hs.stateOf(older.room, "m.room.power_levels", "")
	require.Equal(t, float64(100), upgraded["redact"])
	require.Equal(t, pl["users"], upgraded["users"])
	require.Equal(t, pl["events"], upgraded["events"])
	require.Equal(t, event.MembershipLeave, ob.hs.membership(older.room, offCitizen))
	require.Equal(t, AuditMemberRemoved, ob.lastAudit(older.conv.ID).Action)
	require.Empty(t, ob.hs.requestsTo("PUT /_matrix/client/v3/rooms/"+current.room.String()+"/state/m.room.power_levels"))
	require.Len(t, ob.hs.requestsTo("GET /_matrix/client/v3/rooms/"+current.room.String()+"/members"), 1, "checked after the broken one")
	require.Contains(t, ob.log.String(), "Failed to check a conversation room's policy")
	require.Equal(t, event.MembershipLeave, ob.hs.membership(older.room, offGuest(older.conv)), "the closed room's guest stays out")
}

// Inviting a colleague raises their power to the officer level when lower,
// never lowers it, and does not invite twice.
func TestInviteOfficerRaisesPowerWhenLowerAndInvitesOnce(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	pl := ob.hs.stateOf(created.room, "m.room.power_levels", "")
	pl["users"].(map[string]any)[offAdmin.String()] = 75
	ob.hs.setState(created.room, offBot, "m.room.power_levels", "", pl)

	require.NoError(t, ob.sc.Matrix.InviteOfficer(ob.ctx, created.conv, offAdmin))
	require.Empty(t, ob.hs.requestsTo("PUT /_matrix/client/v3/rooms/"+created.room.String()+"/state/m.room.power_levels"))
	require.NoError(t, ob.sc.Matrix.InviteOfficer(ob.ctx, created.conv, offColleague))
	require.NoError(t, ob.sc.Matrix.InviteOfficer(ob.ctx, created.conv, offColleague))
	users := ob.hs.stateOf(created.room, "m.room.power_levels", "")["users"].(map[string]any)
	require.Equal(t, float64(75), users[offAdmin.String()])
	require.Equal(t, float64(50), users[offColleague.String()])
	require.Equal(t, float64(100), users[offBot.String()])
	require.Len(t, ob.hs.requestsTo("/invite"), 2, "the admin and the colleague, once each")

	ob.hs.failOn("GET /_matrix/client/v3/rooms/" + created.room.String() + "/state/m.room.power_levels")
	require.ErrorContains(t, ob.sc.Matrix.InviteOfficer(ob.ctx, created.conv, offCmdsOnly), "failed to read power levels")
	require.Len(t, ob.hs.requestsTo("/invite"), 2, "no invite without the power to write")
}

// A closed room is marked once: closing it again does not stack markers.
func TestCloseRoomMarksTheRoomNameOnce(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "sak 1")
	state := ob.sc.Conversations.StateOf(created.conv)
	ob.sc.Matrix.CloseRoom(ob.ctx, created.conv, state, "første")
	ob.sc.Matrix.CloseRoom(ob.ctx, created.conv, state, "andre")
	require.Equal(t, "[Avsluttet] 🔒 sak 1", ob.hs.stateOf(created.room, "m.room.name", "")["name"])
	require.Len(t, ob.hs.requestsTo("PUT /_matrix/client/v3/rooms/"+created.room.String()+"/state/m.room.name"), 1)
	messages := ob.messages(created.room)
	require.Equal(t, "andre", messages[len(messages)-1].body())

	// Without a room there is nothing to do on the homeserver.
	before := len(ob.hs.requestsTo(""))
	roomless := &Conversation{ID: "uten-rom", GhostID: "ingen"}
	ob.sc.Matrix.CloseRoom(ob.ctx, roomless, state, "x")
	ob.sc.Matrix.Notice(ob.ctx, roomless, "x")
	ob.sc.Matrix.UpdateState(ob.ctx, roomless, state)
	ob.sc.Matrix.GuestTyping(ob.ctx, roomless, true, time.Second)
	require.Len(t, ob.hs.requestsTo(""), before)
}

// The guest's typing and read marks reach the room as the guest ghost.
func TestGuestTypingAndReadMarksGoOutAsTheGuest(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	guest := offGuest(created.conv)
	ob.sc.Matrix.GuestTyping(ob.ctx, created.conv, true, 5*time.Second)
	typing := ob.hs.requestsTo("PUT /_matrix/client/v3/rooms/" + created.room.String() + "/typing/" + guest.String())
	require.Len(t, typing, 1)
	require.Equal(t, guest, typing[0].User)
	require.JSONEq(t, `{"typing":true,"timeout":5000}`, string(typing[0].Body))

	require.NoError(t, ob.sc.Matrix.GuestRead(ob.ctx, created.conv, "$melding"))
	reads := ob.hs.requestsTo("/rooms/" + created.room.String() + "/read_markers")
	require.Len(t, reads, 1)
	require.Equal(t, guest, reads[0].User)
	require.Contains(t, string(reads[0].Body), `"m.read":"$melding"`)
}

// A guest's file goes to the room as an encrypted attachment sent by the
// guest ghost, with the hash of the original bytes and the outbox's
// transaction ID outside the ciphertext; the homeserver never sees the bytes.
func TestGuestFileGoesOutAsAnEncryptedAttachment(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	data := append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("MARKER-fil "), 50)...)
	info := FileInfo{ID: "fil1", Name: "anmeldelse.pdf", Mime: "application/pdf", Size: len(data), SHA256: "x"}
	evt, err := ob.sc.Matrix.SendGuestFile(ob.ctx, created.conv, "off-file-txn-0001", info, data)
	require.NoError(t, err)
	require.NotContains(t, ob.hs.allTraffic(), "MARKER-fil")

	var sent offMessage
	for _, m := range ob.messages(created.room) {
		if m.ID == evt {
			sent = m
		}
	}
	require.Equal(t, offGuest(created.conv), sent.Sender)
	require.True(t, sent.Encrypted)
	require.Equal(t, "m.file", sent.Content["msgtype"])
	require.Equal(t, "anmeldelse.pdf", sent.body())
	require.Equal(t, data, ob.offOpenUpload(sent))
	require.Equal(t, sha256Hex(data), sent.Content["no.sikkerchat.sha256"])
	send := ob.hs.requestsTo("/send/m.room.encrypted/off-file-txn-0001")
	require.Len(t, send, 1, "the transaction ID is the outbox's")
	require.Contains(t, string(send[0].Body), `"no.sikkerchat.txn_id":"off-file-txn-0001"`)
}

// After a lost answer the outbox asks the room whether its send arrived:
// only the guest ghost's own event with that transaction ID counts.
func TestFindSentFindsOnlyTheGuestsOwnEvent(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	evt, err := ob.sc.Matrix.SendGuestText(ob.ctx, created.conv, "off-text-txn-0001", "hei")
	require.NoError(t, err)
	// Someone else's event carrying a transaction ID is not the guest's send.
	ob.hs.inject(created.room, offOfficer, "m.room.encrypted", map[string]string{"algorithm": "m.megolm.v1.aes-sha2", txnIDField: "off-text-txn-0002"})

	found, err := ob.sc.Matrix.FindSent(ob.ctx, created.conv, "off-text-txn-0001")
	require.NoError(t, err)
	require.Equal(t, evt, found)
	for _, txn := range []string{"off-text-txn-0002", "off-text-txn-0003"} {
		found, err = ob.sc.Matrix.FindSent(ob.ctx, created.conv, txn)
		require.NoError(t, err)
		require.Empty(t, found, txn)
	}
	ob.hs.failWith(http.StatusBadGateway, "/messages")
	_, err = ob.sc.Matrix.FindSent(ob.ctx, created.conv, "off-text-txn-0001")
	require.ErrorContains(t, err, "failed to look for an earlier send")
}
