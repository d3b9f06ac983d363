package bridge

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// When retention ends the room goes from the homeserver and the bridge
// forgets it: the portal, the guest ghost (whose name is the officer's label,
// also reset on the homeserver), the cached room state, the conversation row.
// Afterwards the label is nowhere in the database, not even in SQLite's file
// or its write-ahead log. A purge the homeserver refuses is tried again.
func TestPurgeLeavesNothingOfTheConversationButTheAuditTrail(t *testing.T) {
	ob := newOffBridge(t, func(c *Config) { c.Retention = "1ms" })
	const label = "Kari Nordmann 14 år"
	created := ob.newConversation(offOfficer, label)
	guest := offGuest(created.conv)
	require.NoError(t, ob.mc.StateStore.SetMember(ob.ctx, created.room, guest, &event.MemberEventContent{Membership: event.MembershipJoin, Displayname: label}))
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, created.conv, offOfficer.String(), CloseByOfficer))
	tables := []string{"sikkerchat_conversation", "sikkerchat_audit", "ghost", "portal", "user_portal", "mx_user_profile", "mx_room_state"}
	require.Contains(t, offDump(t, ob, tables...), label, "bridgev2 keeps the guest's name until the purge")

	ob.purger.err = errors.New("homeserver admin API down")
	ob.sc.Conversations.PurgeDue(ob.ctx)
	require.NotNil(t, ob.conv(created.conv.ID), "kept until the homeserver has purged the room")
	require.Contains(t, ob.log.String(), "Failed to purge room, will try again")

	ob.purger.err = nil
	ob.sc.Conversations.PurgeDue(ob.ctx)
	require.Equal(t, []id.RoomID{created.room}, ob.purger.purged)
	require.Nil(t, ob.conv(created.conv.ID))
	portal, err := ob.br.GetExistingPortalByKey(ob.ctx, networkid.PortalKey{ID: networkid.PortalID(created.conv.ID)})
	require.NoError(t, err)
	require.Nil(t, portal)
	reset := ob.hs.requestsTo("PUT /_matrix/client/v3/profile/" + guest.String() + "/displayname")
	require.JSONEq(t, `{"displayname":"Gjest"}`, string(reset[len(reset)-1].Body))
	require.NotContains(t, offDump(t, ob, tables...), label)
	if ob.sqlitePath != "" {
		for _, file := range []string{ob.sqlitePath, ob.sqlitePath + "-wal"} {
			data, err := os.ReadFile(file)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			require.NoError(t, err)
			require.NotContains(t, string(data), label, file)
		}
	}
	last := ob.lastAudit(created.conv.ID)
	require.Equal(t, []string{AuditPurge, "system"}, []string{last.Action, last.Actor})
	require.NoError(t, ob.sc.Audit.Verify(ob.ctx))
}

// A legal hold keeps a room past retention, and Purge refuses it outright.
func TestHeldRoomsOutliveRetention(t *testing.T) {
	ob := newOffBridge(t, func(c *Config) { c.Retention = "1ms" })
	created := ob.newConversation(offOfficer, "")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, created.conv, offOfficer.String(), CloseByOfficer))
	ob.reply(offOfficer, created.room, "hold")
	ob.sc.Conversations.PurgeDue(ob.ctx)
	require.ErrorIs(t, ob.sc.Conversations.Purge(ob.ctx, ob.conv(created.conv.ID)), ErrOnHold)
	require.Empty(t, ob.purger.purged)
	require.NotNil(t, ob.conv(created.conv.ID))
}

// A room already on legal hold when its conversation closes is kept until
// the hold is lifted: the close notice says so instead of giving a purge
// date, even when whoever closes read the conversation before the hold.
func TestCloseNoticeOfAHeldRoomSaysItIsKept(t *testing.T) {
	ob := newOffBridge(t, nil)
	held := ob.newConversation(offOfficer, "")
	ob.reply(offOfficer, held.room, "hold")
	require.False(t, held.conv.Hold, "read before the hold")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, held.conv, offOfficer.String(), CloseByOfficer))
	messages := ob.messages(held.room)
	notice := messages[len(messages)-1]
	require.Equal(t, "**Samtalen er avsluttet** (avsluttet av "+offOfficer.String()+"). Gjesten har ikke lenger tilgang, "+
		"og det som lå hos sikkerchat på gjestens side er slettet. "+
		"Rommet er satt på vent (rettslig hold): politiet beholder det til en administrator opphever ventingen med `!sc unhold`.", notice.body())
	require.NotContains(t, notice.body(), formatTime(ob.conv(held.conv.ID).PurgeAfter, LangBokmal))

	plain := ob.newConversation(offOfficer, "")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, plain.conv, offOfficer.String(), CloseByOfficer))
	messages = ob.messages(plain.room)
	require.Contains(t, messages[len(messages)-1].body(),
		"Politiet beholder dette rommet til "+formatTime(ob.conv(plain.conv.ID).PurgeAfter, LangBokmal)+"; da slettes det")
}

// The automatic closes, through the real room: an invite that ran out makes
// the conversation expired, a quiet one is closed; each room is marked and
// told why. A conversation whose guest messages wait for the homeserver is
// left open for the next round.
func TestAutomaticClosesMarkTheRoomWithTheReason(t *testing.T) {
	ob := newOffBridge(t, nil)
	// Times long past: the link and the idle limit ran out long ago.
	const longAgo = 1_000_000
	unused := ob.newConversation(offOfficer, "ubrukt")
	_, err := ob.sc.DB.Exec(ob.ctx, "UPDATE sikkerchat_conversation SET invite_expires_at=$2 WHERE id=$1", unused.conv.ID, longAgo)
	require.NoError(t, err)
	quiet := ob.newConversation(offOfficer, "stille")
	waiting := ob.newConversation(offOfficer, "venter")
	for _, c := range []offCreated{quiet, waiting} {
		ob.joinGuest(c)
		_, err = ob.sc.DB.Exec(ob.ctx, "UPDATE sikkerchat_conversation SET joined_at=$2 WHERE id=$1", c.conv.ID, longAgo)
		require.NoError(t, err)
	}
	ob.hs.failWith(http.StatusBadGateway, " @sikkerchat_"+waiting.conv.GhostID)
	_, _, err = ob.sc.Guests.QueueText(ob.ctx, ob.conv(waiting.conv.ID), "off-auto-client-0001", "hallo?")
	require.NoError(t, err)
	_, err = ob.sc.DB.Exec(ob.ctx, "UPDATE sikkerchat_transcript SET created_at=$2 WHERE conversation_id=$1", waiting.conv.ID, longAgo)
	require.NoError(t, err)

	ob.sc.Conversations.CloseDue(ob.ctx)
	for _, c := range []struct {
		created offCreated
		status  ConversationStatus
		reason  string
	}{
		{unused, StatusExpired, "lenken ble ikke brukt før den gikk ut"},
		{quiet, StatusClosed, "ingen aktivitet på lenge"},
	} {
		require.Equal(t, c.status, ob.conv(c.created.conv.ID).Status)
		require.Equal(t, string(c.status), ob.hs.stateOf(c.created.room, "no.sikkerchat.conversation", "")["status"])
		name := ob.hs.stateOf(c.created.room, "m.room.name", "")["name"].(string)
		require.True(t, strings.HasPrefix(name, "[Avsluttet] 🔒 "), name)
		messages := ob.messages(c.created.room)
		require.Contains(t, messages[len(messages)-1].body(), "**Samtalen er avsluttet** ("+c.reason+")")
		require.Equal(t, "system", ob.lastAudit(c.created.conv.ID).Actor)
	}
	require.Equal(t, StatusActive, ob.conv(waiting.conv.ID).Status)
	require.Contains(t, ob.log.String(), "Not closing yet: guest messages wait for the homeserver")

	ob.hs.failOn()
	ob.sc.Conversations.CloseDue(ob.ctx)
	require.Equal(t, StatusClosed, ob.conv(waiting.conv.ID).Status)
	require.Equal(t, 1, offCount(offActions(ob.audit(unused.conv.ID)), AuditClose), "closed once")
}
