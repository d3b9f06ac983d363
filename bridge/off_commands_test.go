package bridge

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Only permitted officers (bridge permission `user` or above) use sikkerchat;
// everyone else gets the same polite refusal in bokmål, whatever they ask,
// and nothing happens.
func TestCommandsFromUsersWhoAreNotOfficersAreRefused(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "sak 1")
	before := offDump(t, ob, "sikkerchat_conversation", "sikkerchat_invite", "sikkerchat_audit")
	for _, user := range []id.UserID{offCitizen, offCmdsOnly} {
		for _, cmd := range []string{"new", "new sak 2", "status", "reissue", "close", "hold", "unhold grunn", "audit", "list",
			"add " + offColleague.String(), "export", "stats", "help", "hjelp"} {
			room := created.room
			if strings.HasPrefix(cmd, "new") {
				room = ob.dm
			}
			msg := ob.reply(user, room, cmd)
			require.Equal(t, "Beklager, du har ikke tilgang til sikkerchat. "+
				"Ta kontakt med den som administrerer tjenesten hvis du mener du skal ha tilgang.", msg.body(), "%s: %s", user, cmd)
		}
	}
	require.Len(t, ob.hs.creates, 1)
	require.Equal(t, before, offDump(t, ob, "sikkerchat_conversation", "sikkerchat_invite", "sikkerchat_audit"))
	require.Empty(t, ob.hs.requestsTo("/invite"))
	require.Contains(t, ob.log.String(), "Refused command from user who is not an officer")
}

// bridgev2's own commands, and the Matrix connector's, would let an officer
// go around close, retention, the audit trail or the room's power levels:
// every one of them answers "unknown command" in bokmål, for admins too.
func TestBridgev2CommandsAnswerUnknownCommandEvenForAdmins(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	for _, cmd := range []string{"delete-portal", "delete-all-portals", "sudo " + offOfficer.String() + " close", "doin " + created.room.String() + " close",
		"set-pl " + offCitizen.String() + " 100", "set-power-level 100", "login-matrix token", "logout", "login", "set-relay", "debug-reset-network",
		"discard-megolm-session", "cancel", "delete-chat", "filter", "id", "sync-portal"} {
		for _, user := range []id.UserID{offOfficer, offAdmin} {
			msg := ob.reply(user, created.room, cmd)
			require.Equal(t, "Ukjent kommando. Skriv `!sc help` for en liste.", msg.body(), "%s from %s", cmd, user)
		}
	}
	require.Empty(t, ob.hs.requestsTo("/state/m.room.power_levels"))
	require.Equal(t, StatusCreated, ob.conv(created.conv.ID).Status)
	portal, err := ob.br.GetExistingPortalByKey(ob.ctx, networkid.PortalKey{ID: networkid.PortalID(created.conv.ID)})
	require.NoError(t, err)
	require.NotNil(t, portal, "the portal was not deleted")
}

// The help lists the commands with the configured prefix, in the bridge's
// language; `hjelp` is the same command.
func TestHelpListsTheCommandsInTheOfficersLanguage(t *testing.T) {
	ob := newOffBridge(t, nil)
	for _, cmd := range []string{"help", "hjelp", "HELP"} {
		msg := ob.reply(offOfficer, ob.dm, cmd)
		require.True(t, strings.HasPrefix(msg.body(), "**sikkerchat – kommandoer**"), msg.body())
		for _, sub := range []string{"new [merkelapp]", "status", "reissue", "close", "export", "add @kollega", "list", "hold", "unhold", "audit"} {
			require.Contains(t, msg.body(), "`!sc "+sub)
		}
		require.Contains(t, msg.Content["formatted_body"], "<code>", "markdown is rendered")
	}
	en := newOffBridge(t, func(c *Config) { c.Language = "en" })
	require.True(t, strings.HasPrefix(en.reply(offOfficer, en.dm, "help").body(), "**sikkerchat – commands**"))
	require.Equal(t, "Unknown command. Type `!sc help` for a list.", en.reply(offOfficer, en.dm, "delete-portal").body())
}

// Outside a conversation room `status` counts the officer's open
// conversations; in one it shows that conversation.
func TestStatusShowsAnOverviewOrTheConversationOfTheRoom(t *testing.T) {
	ob := newOffBridge(t, nil)
	require.Equal(t, "sikkerchat kjører. Du har 0 åpne samtaler. Skriv `!sc help` for kommandoer.", ob.reply(offOfficer, ob.dm, "status").body())
	first := ob.newConversation(offOfficer, "")
	ob.newConversation(offOfficer, "")
	ob.newConversation(offColleague, "")
	require.Contains(t, ob.reply(offOfficer, ob.dm, "status").body(), "Du har 2 åpne samtaler")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, first.conv, offOfficer.String(), CloseByOfficer))
	require.Contains(t, ob.reply(offOfficer, ob.dm, "status").body(), "Du har 1 åpne samtaler")

	second := ob.newConversation(offOfficer, "")
	body := ob.reply(offColleague, second.room, "status").body()
	guest := "@sikkerchat_" + second.conv.GhostID + ":example.org"
	require.Regexp(t, `^\*\*Samtale `+second.conv.ID+`\*\*`, body)
	require.Contains(t, body, "Status: venter på gjesten")
	require.Contains(t, body, "av "+offOfficer.String())
	require.Contains(t, body, "Gjest: "+guest)
	require.Contains(t, body, "Lenken går ut: "+formatTime(second.conv.InviteExpiresAt, LangBokmal))
	ob.joinGuest(second)
	require.Contains(t, ob.reply(offOfficer, second.room, "status").body(), "Status: aktiv")
	require.Contains(t, ob.reply(offOfficer, first.room, "status").body(), "Status: avsluttet")
}

// `list` shows the officer's own open conversations, newest first, each with
// its label (read from the sealed column), its state and its age, and its ID
// linked to its room, so that an officer with many finds the right one.
func TestListShowsTheOfficersOwnOpenConversations(t *testing.T) {
	ob := newOffBridge(t, nil)
	require.Equal(t, "Du har ingen åpne samtaler.", ob.reply(offOfficer, ob.dm, "list").body())
	old := ob.newConversation(offOfficer, "")
	active := ob.newConversation(offOfficer, "Ola *skole*")
	ob.joinGuest(active)
	held := ob.newConversation(offOfficer, "Kari, Snapchat")
	ob.reply(offOfficer, held.room, "hold")
	closed := ob.newConversation(offOfficer, "")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, closed.conv, offOfficer.String(), CloseByOfficer))
	colleagues := ob.newConversation(offColleague, "")
	for conversationID, age := range map[string]time.Duration{old.conv.ID: 50 * time.Hour, active.conv.ID: 3*time.Hour + time.Minute, held.conv.ID: 5 * time.Minute} {
		_, err := ob.sc.DB.Exec(ob.ctx, "UPDATE sikkerchat_conversation SET created_at=$2 WHERE id=$1", conversationID, time.Now().Add(-age).UnixMilli())
		require.NoError(t, err)
	}

	msg := ob.reply(offOfficer, ob.dm, "list")
	lines := strings.Split(msg.body(), "\n")
	require.Equal(t, "**Dine åpne samtaler**, nyeste først", lines[0], msg.body())
	require.Equal(t, []string{
		"* **Kari, Snapchat** – venter på gjesten (rettslig hold), opprettet for 5 min siden · " + held.conv.ID + " (https://matrix.to/#/" + held.room.String() + ")",
		"* **Ola *skole*** – aktiv, opprettet for 3 t siden · " + active.conv.ID + " (https://matrix.to/#/" + active.room.String() + ")",
		"* _uten merkelapp_ – venter på gjesten, opprettet for 2 d siden · " + old.conv.ID + " (https://matrix.to/#/" + old.room.String() + ")",
	}, lines[2:], msg.body())
	html := msg.Content["formatted_body"]
	require.Contains(t, html, `<strong>Ola *skole*</strong>`, "a label is shown as it is, not as markdown")
	require.Contains(t, html, `<a href="https://matrix.to/#/`+active.room.String()+`">`+active.conv.ID+`</a>`)
	require.NotContains(t, msg.body(), closed.conv.ID)
	require.NotContains(t, msg.body(), colleagues.conv.ID)
	require.NotContains(t, ob.log.String(), "Kari, Snapchat", "labels stay out of the log")
	require.Equal(t, "Du har ingen åpne samtaler.", ob.reply(offAdmin, ob.dm, "list").body(), "an admin lists their own")

	en := newOffBridge(t, func(c *Config) { c.Language = "en" })
	enConv := en.newConversation(offOfficer, "")
	require.Equal(t, "**Your open conversations**, newest first\n\n* _no label_ – waiting for the guest, created just now · "+
		enConv.conv.ID+" (https://matrix.to/#/"+enConv.room.String()+")", en.reply(offOfficer, en.dm, "list").body())
}

// Commands about one conversation say so when typed elsewhere.
func TestConversationCommandsOutsideAConversationRoomSaySo(t *testing.T) {
	ob := newOffBridge(t, nil)
	for _, cmd := range []string{"reissue", "close", "hold", "unhold grunn", "audit", "add " + offColleague.String(), "export"} {
		require.Equal(t, "Denne kommandoen virker bare i et samtalerom.", ob.reply(offAdmin, ob.dm, cmd).body(), cmd)
	}
	require.Empty(t, ob.hs.requestsTo("/upload"))
}

// `reissue` makes a new link and code word for the same conversation: the
// old link and any open guest session die, the open page is told, the state
// event shows the new expiry, and the audit trail has it.
func TestReissueCommandReplacesTheLinkAndEndsOldSessions(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "sak 1")
	session := ob.joinGuest(created)
	sub := ob.sc.Hub.Subscribe(created.conv.ID)
	defer sub.Close()

	msg := ob.reply(offColleague, created.room, "reissue")
	field := msg.Content["no.sikkerchat.invite"].(map[string]any)
	url, code := field["url"].(string), field["code"].(string)
	require.NotEqual(t, created.url, url)
	require.Equal(t, created.conv.ID, field["conversation_id"])
	require.Equal(t, created.room.String(), field["room_id"])
	body := msg.body()
	require.True(t, strings.HasPrefix(body, "**Ny lenke til sak 1**"), body)
	require.Contains(t, body, "Den gamle lenken og alle åpne økter virker ikke lenger.")
	require.Contains(t, body, url)
	require.Contains(t, body, "**"+code+"**")

	state := ob.hs.stateOf(created.room, "no.sikkerchat.conversation", "")
	require.Equal(t, field["expires_at"], state["invite_expires_at"])
	last := ob.lastAudit(created.conv.ID)
	require.Equal(t, AuditReissue, last.Action)
	require.Equal(t, offColleague.String(), last.Actor)
	select {
	case evt := <-sub.C:
		require.Equal(t, GuestEventClosed, evt.Kind)
		require.Equal(t, "reissued", evt.Reason)
	default:
		t.Fatal("the open guest page was not told")
	}
	_, _, err := ob.sc.Guests.CheckSession(ob.ctx, session)
	require.Error(t, err, "the old session is revoked")
	_, token, _ := strings.Cut(url, "#")
	_, _, err = ob.sc.Guests.Join(ob.ctx, token, code)
	require.NoError(t, err, "the new link works")

	// A link never opened dies too.
	unused := ob.newConversation(offOfficer, "")
	ob.reply(offOfficer, unused.room, "reissue")
	_, _, err = ob.sc.Guests.Join(ob.ctx, unused.token, unused.code)
	require.ErrorIs(t, err, ErrInviteRevoked)
}

// A closed conversation gets no new link, and neither does an expired one.
func TestReissueAfterCloseIsRefused(t *testing.T) {
	ob := newOffBridge(t, nil)
	closed := ob.newConversation(offOfficer, "")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, closed.conv, offOfficer.String(), CloseByOfficer))
	expired := ob.newConversation(offOfficer, "")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, expired.conv, "system", CloseInviteExpired))
	for _, c := range []offCreated{closed, expired} {
		require.Equal(t, "Samtalen er avsluttet, så det kan ikke lages en ny lenke.", ob.reply(offOfficer, c.room, "reissue").body())
		var invites int
		require.NoError(t, ob.sc.DB.QueryRow(ob.ctx, "SELECT COUNT(*) FROM sikkerchat_invite WHERE conversation_id=$1 AND revoked_at IS NULL", c.conv.ID).Scan(&invites))
		require.Zero(t, invites)
	}
}

// `close` in the room ends the conversation for the guest at once and marks
// the room, which the police keep: the ghost leaves, the state event and the
// room name say closed, and the room is told until when it is kept.
func TestCloseCommandEndsTheConversationAndMarksTheRoom(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "sak 1")
	session := ob.joinGuest(created)
	sub := ob.sc.Hub.Subscribe(created.conv.ID)
	defer sub.Close()

	require.Empty(t, ob.command(offOfficer, created.room, "close"), "the room notice is the answer")
	conv := ob.conv(created.conv.ID)
	require.Equal(t, StatusClosed, conv.Status)
	require.Equal(t, conv.ClosedAt.Add(2160*time.Hour), conv.PurgeAfter, "retention is 2160h")

	guest := id.UserID("@sikkerchat_" + created.conv.GhostID + ":example.org")
	require.Equal(t, event.MembershipLeave, ob.hs.membership(created.room, guest))
	state := ob.hs.stateOf(created.room, "no.sikkerchat.conversation", "")
	require.Equal(t, "closed", state["status"])
	require.Equal(t, float64(conv.ClosedAt.UnixMilli()), state["closed_at"])
	require.Equal(t, float64(conv.PurgeAfter.UnixMilli()), state["purge_after"])
	require.Equal(t, "[Avsluttet] 🔒 sak 1", ob.hs.stateOf(created.room, "m.room.name", "")["name"])
	messages := ob.messages(created.room)
	notice := messages[len(messages)-1].body()
	require.Contains(t, notice, "Samtalen er avsluttet** (avsluttet av "+offOfficer.String()+")")
	require.Contains(t, notice, "til "+formatTime(conv.PurgeAfter, LangBokmal))
	require.Contains(t, notice, "`!sc hold`")

	evt := <-sub.C
	require.Equal(t, GuestEventClosed, evt.Kind)
	require.Equal(t, CloseByOfficer, evt.Reason)
	_, _, err := ob.sc.Guests.CheckSession(ob.ctx, session)
	require.Error(t, err)
	last := ob.lastAudit(created.conv.ID)
	require.Equal(t, AuditClose, last.Action)
	require.Equal(t, offOfficer.String(), last.Actor)
	require.Equal(t, CloseByOfficer, last.Detail)

	require.Equal(t, "Samtalen er allerede avsluttet.", ob.reply(offOfficer, created.room, "close").body())
	require.Equal(t, 1, offCount(offActions(ob.audit(created.conv.ID)), AuditClose))
}

// While the homeserver does not take the guest's messages, `close` is
// refused with how many wait, so nothing the guest saw as sent is shredded.
func TestCloseCommandIsRefusedWhileGuestMessagesAreUndelivered(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	ob.joinGuest(created)
	ob.hs.failWith(http.StatusBadGateway, " @sikkerchat_") // the guest's sends fail, for now
	for i := range 2 {
		_, _, err := ob.sc.Guests.QueueText(ob.ctx, ob.conv(created.conv.ID), fmt.Sprintf("off-close-client-%04d", i), "hjelp")
		require.NoError(t, err)
	}
	msg := ob.reply(offOfficer, created.room, "close")
	require.True(t, strings.HasPrefix(msg.body(), "Samtalen er **ikke** avsluttet: 2 meldinger fra gjesten"), msg.body())
	require.Equal(t, StatusActive, ob.conv(created.conv.ID).Status)

	ob.hs.failOn()
	require.Empty(t, ob.command(offOfficer, created.room, "close"))
	require.Equal(t, StatusClosed, ob.conv(created.conv.ID).Status)
	var delivered int
	for _, m := range ob.messages(created.room) {
		if m.body() == "hjelp" && m.Sender != offBot {
			delivered++
		}
	}
	require.Equal(t, 2, delivered, "delivered before the close, once each")
}

// Any officer of the conversation can place a legal hold; only an admin can
// lift it, with a reason that goes into the audit trail.
func TestHoldCommandsPlaceAndLiftALegalHold(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, created.conv, offOfficer.String(), CloseByOfficer))

	require.Equal(t, "Rommet er satt på vent (rettslig hold). Det slettes ikke før noen skriver `unhold`.", ob.reply(offOfficer, created.room, "hold").body())
	require.True(t, ob.conv(created.conv.ID).Hold)
	require.Equal(t, true, ob.hs.stateOf(created.room, "no.sikkerchat.conversation", "")["hold"])
	last := ob.lastAudit(created.conv.ID)
	require.Equal(t, []string{AuditHold, offOfficer.String()}, []string{last.Action, last.Actor})

	require.Equal(t, "Bare en administrator kan oppheve ventingen (rettslig hold).", ob.reply(offOfficer, created.room, "unhold saken er henlagt").body())
	usage := "Skriv hvorfor ventingen oppheves: `!sc unhold <begrunnelse>`. Begrunnelsen føres i revisjonsloggen."
	require.Equal(t, usage, ob.reply(offAdmin, created.room, "unhold").body())
	require.Equal(t, usage, ob.reply(offAdmin, created.room, "unhold "+strings.Repeat("x", 501)).body())
	require.True(t, ob.conv(created.conv.ID).Hold, "still held")

	body := ob.reply(offAdmin, created.room, "unhold  saken   er\thenlagt ").body()
	conv := ob.conv(created.conv.ID)
	require.Equal(t, "Ventingen er opphevet. Et avsluttet rom slettes når oppbevaringstiden er ute ("+formatTime(conv.PurgeAfter, LangBokmal)+").", body)
	require.False(t, conv.Hold)
	require.Equal(t, false, ob.hs.stateOf(created.room, "no.sikkerchat.conversation", "")["hold"])
	last = ob.lastAudit(created.conv.ID)
	require.Equal(t, []string{AuditUnhold, offAdmin.String(), "saken er henlagt"}, []string{last.Action, last.Actor, last.Detail})
	require.Equal(t, usage, ob.reply(offAdmin, created.room, "unhold "+strings.Repeat("ø", 500)+"x").body(), "500 characters at most")
}

// `audit` shows the conversation's trail and whether the chain is whole.
func TestAuditCommandShowsTheTrailAndWhetherTheChainIsWhole(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	ob.reply(offOfficer, created.room, "hold")
	body := ob.reply(offOfficer, created.room, "audit").body()
	require.True(t, strings.HasPrefix(body, "**Revisjonslogg for samtale "+created.conv.ID+"**"), body)
	require.Regexp(t, `\n1\. \d\d\.\d\d\.\d{4} kl\. \d\d:\d\d · `+"`create`"+` · @betjent:example\.org`, body)
	require.Regexp(t, `\n2\. .* · `+"`hold`"+` · @betjent:example\.org`, body)
	require.True(t, strings.HasSuffix(body, "Kjeden er hel: ingen rader er endret eller fjernet."), body)

	ob.reply(offAdmin, created.room, "unhold feil sak")
	require.Contains(t, ob.reply(offOfficer, created.room, "audit").body(), "· `unhold` · @leder:example.org (feil sak)")

	_, err := ob.sc.DB.Exec(ob.ctx, "UPDATE sikkerchat_audit SET actor='@noen:example.org' WHERE action='hold'")
	require.NoError(t, err)
	body = ob.reply(offOfficer, created.room, "audit").body()
	require.Contains(t, body, "⚠️ Kjeden er brutt: ")
	require.NotContains(t, body, "Kjeden er hel")
}

// `add` brings a permitted colleague in at officer power; anyone else is
// refused, and so is a closed conversation.
func TestAddCommandBringsInAPermittedColleagueOnly(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")

	require.Equal(t, offColleague.String()+" er invitert til samtalen.", ob.reply(offOfficer, created.room, "add "+offColleague.String()).body())
	pl := ob.hs.stateOf(created.room, "m.room.power_levels", "")
	require.Equal(t, float64(50), pl["users"].(map[string]any)[offColleague.String()])
	require.Equal(t, event.MembershipInvite, ob.hs.membership(created.room, offColleague))
	last := ob.lastAudit(created.conv.ID)
	require.Equal(t, []string{AuditAddOfficer, offOfficer.String(), offColleague.String()}, []string{last.Action, last.Actor, last.Detail})
	colleague := offUser(t, ob, offColleague)
	require.NotNil(t, colleague.GetDefaultLogin(), "the colleague's messages can be routed")

	usage := "Bruk: `!sc add @kollega:domene`"
	for _, args := range []string{"", "kollega", offColleague.String() + " " + offAdmin.String(), "#rom:example.org", "@:example.org", "@kollega:bad_server!"} {
		require.Equal(t, usage, ob.reply(offOfficer, created.room, strings.TrimSpace("add "+args)).body(), args)
	}
	require.Equal(t, offCitizen.String()+" har ikke tilgang til sikkerchat og kan ikke legges til.",
		ob.reply(offOfficer, created.room, "add "+offCitizen.String()).body())
	require.Equal(t, offCmdsOnly.String()+" har ikke tilgang til sikkerchat og kan ikke legges til.",
		ob.reply(offOfficer, created.room, "add "+offCmdsOnly.String()).body())
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, ob.conv(created.conv.ID), offOfficer.String(), CloseByOfficer))
	require.Equal(t, "Samtalen er avsluttet, så det kan ikke lages en ny lenke.", ob.reply(offOfficer, created.room, "add "+offAdmin.String()).body())
	require.Len(t, ob.hs.requestsTo("/invite"), 1, "only the colleague was invited")
	require.Equal(t, 1, offCount(offActions(ob.audit(created.conv.ID)), AuditAddOfficer))
}

// `stats` answers anonymous counts over the last 30 days, or the days asked.
func TestStatsCommandAnswersAnonymousCounts(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "sak 1")
	ob.newConversation(offOfficer, "")
	ob.joinGuest(created)
	body := ob.reply(offOfficer, ob.dm, "stats").body()
	require.True(t, strings.HasPrefix(body, "**Statistikk, siste 30 dager** (anonym)"), body)
	require.Contains(t, body, "Opprettet: 2 · åpnet av gjesten: 1 · avsluttet: 0 · utløpt: 0")
	require.Contains(t, body, "til avsluttet: –")
	require.NotContains(t, body, created.conv.ID)
	require.NotContains(t, body, "sak 1")
	require.Contains(t, ob.reply(offOfficer, ob.dm, "stats 7").body(), "siste 7 dager")
	require.Contains(t, ob.reply(offOfficer, ob.dm, "stats 3660").body(), "siste 3660 dager")
	for _, days := range []string{"0", "-1", "3661", "abc", "x5"} {
		require.Equal(t, "Bruk: `!sc stats [dager]` (1–3660)", ob.reply(offOfficer, ob.dm, "stats "+days).body(), days)
	}
}

// `stats` should refuse what the provisioning API refuses (`days=5x`).
func TestStatsCommandRefusesDaysWithTrailingCharacters(t *testing.T) {
	ob := newOffBridge(t, nil)
	for _, days := range []string{"5x", "1e3", "7 dager"} {
		require.Equal(t, "Bruk: `!sc stats [dager]` (1–3660)", ob.reply(offOfficer, ob.dm, "stats "+days).body(), days)
	}
}

// A command is never for the guest: once it has run, it leaves the inbox
// (otherwise a restart would run it again).
func TestCommandsLeaveTheInboxOnceTheyHaveRun(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	next := fmt.Sprintf("$offcmd%d", ob.commands+1)
	_, err := ob.sc.DB.Exec(ob.ctx, `INSERT INTO sikkerchat_inbox (event_id, room_id, event, received_at, arrival) VALUES ($1, $2, '{}', 1, 1)`, next, created.room)
	require.NoError(t, err)
	ob.reply(offOfficer, created.room, "status")
	var left int
	require.NoError(t, ob.sc.DB.QueryRow(ob.ctx, "SELECT COUNT(*) FROM sikkerchat_inbox").Scan(&left))
	require.Zero(t, left)
}

// When a command fails, the officer gets a trace ID and the log has the
// error under it; the error itself (which may carry anything) stays out of
// the room.
func TestFailedCommandAnswersWithATraceIDAndNotTheError(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	ob.hs.failOn("GET /_matrix/client/v3/rooms/" + created.room.String() + "/messages")
	body := ob.reply(offOfficer, created.room, "export").body()
	m := regexp.MustCompile(`^Det gikk ikke\. Prøv igjen om litt\. Feilen er logget \(sporings-ID ([A-Za-z0-9]{8})\)\.$`).FindStringSubmatch(body)
	require.NotNil(t, m, body)
	require.NotContains(t, body, "refused by the test")
	require.Regexp(t, `"trace_id":"`+m[1]+`".*refused by the test|refused by the test.*"trace_id":"`+m[1]+`"`, ob.log.String())
	require.NotContains(t, offActions(ob.audit(created.conv.ID)), AuditExport)
}

// A mistyped command should get the same bokmål answer as bridgev2's own
// commands, as a reply to it.
func TestMistypedCommandAnswersUnknownCommandInBokmal(t *testing.T) {
	ob := newOffBridge(t, nil)
	for _, cmd := range []string{"clsoe", "nytt", "", plainMessageName, unknownCommandName} {
		require.Equal(t, "Ukjent kommando. Skriv `!sc help` for en liste.", ob.reply(offOfficer, ob.dm, cmd).body(), cmd)
	}
}

// A command added to bridgev2's processor after Init (mxmain adds "version")
// never runs: only sikkerchat's names pass the gate.
func TestCommandsAddedAfterInitNeverRun(t *testing.T) {
	ob := newOffBridge(t, nil)
	ran := false
	ob.br.Commands.(commandGate).Processor.AddHandler(&commands.FullHandler{Name: "version", Func: func(*commands.Event) { ran = true }})
	require.Equal(t, "Ukjent kommando. Skriv `!sc help` for en liste.", ob.reply(offOfficer, ob.dm, "version").body())
	require.False(t, ran)
	require.Equal(t, "Ukjent kommando. Skriv `!sc help` for en liste.", ob.reply(offAdmin, ob.dm, "VERSION 1").body())
	require.False(t, ran)
}
