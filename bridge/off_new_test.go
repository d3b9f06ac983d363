package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/appservice"
)

// `!sc new` makes a room whose whole protection is in its initial state:
// encrypted, invite-only, history from join, no guest access, the guest at
// power 0, the officer at 50 and only the bot at 100, not federated, with the
// integrators' state event from the first moment.
func TestNewCommandCreatesARoomWithItsWholePolicyInTheInitialState(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "sak 1")

	require.Len(t, ob.hs.creates, 1)
	req := ob.hs.creates[0]
	guest := id.UserID("@sikkerchat_" + created.conv.GhostID + ":example.org")
	require.Equal(t, "private", req.Visibility)
	require.Equal(t, "🔒 sak 1", req.Name)
	require.ElementsMatch(t, []id.UserID{guest, offOfficer}, req.Invite)
	require.Equal(t, false, req.CreationContent["m.federate"])

	initial := map[string]json.RawMessage{}
	for _, evt := range req.InitialState {
		initial[evt.Type.Type] = evt.Content.VeryRaw
	}
	for evtType, want := range map[string]string{
		"m.room.encryption":         `{"algorithm":"m.megolm.v1.aes-sha2"}`,
		"m.room.history_visibility": `{"history_visibility":"joined"}`,
		"m.room.join_rules":         `{"join_rule":"invite"}`,
		"m.room.guest_access":       `{"guest_access":"forbidden"}`,
	} {
		require.JSONEq(t, want, string(initial[evtType]), evtType)
	}
	var state appservice.ConversationState
	require.NoError(t, json.Unmarshal(initial["no.sikkerchat.conversation"], &state))
	require.Equal(t, created.conv.ID, state.ConversationID)
	require.Equal(t, "created", state.Status)
	require.Equal(t, offOfficer, state.CreatedBy)
	require.Equal(t, guest, state.Guest)
	require.Equal(t, created.conv.InviteExpiresAt.UnixMilli(), state.InviteExpiresAt)
	require.Zero(t, state.ClosedAt)
	require.Contains(t, string(initial["m.room.topic"]), "Politiet – Nettpatruljen")

	pl := req.PowerLevelOverride
	require.Equal(t, 100, pl.GetUserLevel(offBot))
	require.Equal(t, 50, pl.GetUserLevel(offOfficer))
	require.Equal(t, 0, pl.GetUserLevel(guest))
	require.Equal(t, 100, pl.Invite())
	require.Equal(t, 100, pl.Kick())
	require.Equal(t, 100, pl.Redact())
	require.Equal(t, 100, pl.GetEventLevel(event.StateEncryption))
	require.Equal(t, 100, pl.GetEventLevel(appservice.StateConversation))

	// The guest ghost is in the room under the label, and the room says who made it.
	require.Equal(t, event.MembershipJoin, ob.hs.membership(created.room, guest))
	require.Equal(t, created.room, created.conv.RoomID)
	names := ob.hs.requestsTo("PUT /_matrix/client/v3/profile/" + guest.String() + "/displayname")
	require.Len(t, names, 1)
	require.JSONEq(t, `{"displayname":"sak 1"}`, string(names[0].Body))
	notices := ob.messages(created.room)
	require.Len(t, notices, 1)
	require.True(t, notices[0].Encrypted)
	require.Contains(t, notices[0].body(), "Samtalen er opprettet av "+offOfficer.String())

	// bridgev2 knows the room as the conversation's portal, and the officer has a login.
	portal, err := ob.br.GetExistingPortalByKey(ob.ctx, networkid.PortalKey{ID: networkid.PortalID(created.conv.ID)})
	require.NoError(t, err)
	require.NotNil(t, portal)
	require.Equal(t, created.room, portal.MXID)
	user, err := ob.br.GetUserByMXID(ob.ctx, offOfficer)
	require.NoError(t, err)
	require.NotNil(t, user.GetDefaultLogin())
	require.Equal(t, []string{AuditCreate}, offActions(ob.audit(created.conv.ID)))
}

// The officer gets the link and code word once, as text in bokmål and as the
// machine-readable no.sikkerchat.invite field; the link and code open the
// conversation; the token sits in the fragment and exists nowhere else.
func TestNewCommandRepliesWithALinkAndCodeWordThatOpenTheConversation(t *testing.T) {
	ob := newOffBridge(t, nil)
	before := time.Now()
	created := ob.newConversation(offOfficer, "sak 1")

	body := created.reply.body()
	require.Contains(t, body, "Ny sikker samtale opprettet")
	require.Contains(t, body, "(sak 1)")
	require.Contains(t, body, created.url)
	require.Contains(t, body, "**"+created.code+"**")
	require.Regexp(t, `går ut \d\d\.\d\d\.\d{4} kl\. \d\d:\d\d`, body)
	require.True(t, strings.HasPrefix(created.url, "https://chat.example.no/#"), created.url)
	require.Regexp(t, `^[a-z]+ \d\d$`, created.code)

	field := created.reply.Content["no.sikkerchat.invite"].(map[string]any)
	require.Equal(t, created.conv.ID, field["conversation_id"])
	expires := time.UnixMilli(int64(field["expires_at"].(float64)))
	require.WithinDuration(t, before.Add(24*time.Hour), expires, time.Minute, "invite_ttl is 24h")
	require.Equal(t, created.conv.InviteExpiresAt.UnixMilli(), expires.UnixMilli())

	// Neither the token nor the code word is stored: only a hash and a MAC.
	tables := offDump(t, ob, "sikkerchat_conversation", "sikkerchat_invite", "sikkerchat_guest_session", "sikkerchat_audit",
		"portal", "ghost", "user_login", "kv_store")
	require.NotContains(t, tables, created.token)
	require.NotContains(t, tables, created.code)
	require.NotContains(t, offDump(t, ob, "sikkerchat_conversation", "sikkerchat_audit"), "sak 1", "sikkerchat keeps the label sealed")

	session, conv, err := ob.sc.Guests.Join(ob.ctx, created.token, created.code)
	require.NoError(t, err)
	require.NotEmpty(t, session)
	require.Equal(t, created.conv.ID, conv.ID)
	_, _, err = ob.sc.Guests.Join(ob.ctx, created.token, created.code)
	require.ErrorIs(t, err, ErrInviteUsed, "the link works once")
}

// The link and the code word never reach the homeserver in the clear: the
// reply that carries them is encrypted, and so are both notices.
func TestInviteLinkAndCodeWordReachTheHomeserverOnlyEncrypted(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	reissued := ob.reply(offOfficer, created.room, "reissue")
	field := reissued.Content["no.sikkerchat.invite"].(map[string]any)

	traffic := ob.hs.allTraffic()
	for _, secret := range []string{created.token, created.code, field["url"].(string), field["code"].(string)} {
		require.NotContains(t, traffic, secret)
	}
	for _, m := range append(ob.messages(ob.dm), ob.messages(created.room)...) {
		require.True(t, m.Encrypted, "%s is encrypted", m.ID)
	}
}

// The label may name a person and the reply carries the link and code word:
// none of them may reach the logs, even at debug level, where mautrix logs
// request bodies.
func TestNewAndReissueKeepLabelLinkAndCodeWordOutOfDebugLogs(t *testing.T) {
	ob := newOffBridge(t, nil)
	const label = "Kari Nordmann 14"
	created := ob.newConversation(offOfficer, label)
	reissued := ob.reply(offOfficer, created.room, "reissue")
	field := reissued.Content["no.sikkerchat.invite"].(map[string]any)

	logs := ob.log.String()
	require.Contains(t, logs, `"req_body"`, "request bodies are logged at this level")
	require.Contains(t, logs, created.conv.ID)
	for _, secret := range []string{label, created.token, created.code, field["url"].(string), field["code"].(string)} {
		require.NotContains(t, logs, secret)
	}
}

// Without a label the guest is "Gjest" and four digits, in the room name too;
// a label has its whitespace folded.
func TestNewNamesTheGuestFromTheLabelOrGjestAndANumber(t *testing.T) {
	ob := newOffBridge(t, nil)
	for _, c := range []struct{ label, guest string }{
		{"", `^Gjest \d{4}$`},
		{"  sak \t 2  ", `^sak 2$`},
	} {
		created := ob.newConversation(offOfficer, c.label)
		req := ob.hs.creates[len(ob.hs.creates)-1]
		name := strings.TrimPrefix(req.Name, "🔒 ")
		require.Regexp(t, c.guest, name)
		require.Contains(t, created.reply.body(), "("+name+")")
		require.Equal(t, strings.TrimSpace(strings.Join(strings.Fields(c.label), " ")), ob.sc.Transcript.OpenLabel(ob.ctx, ob.conv(created.conv.ID)))
	}
}

// A label over 64 characters (not bytes) is refused before anything is made.
func TestNewRefusesALabelOverSixtyFourCharacters(t *testing.T) {
	ob := newOffBridge(t, nil)
	for _, label := range []string{strings.Repeat("a", 65), strings.Repeat("ø", 65), strings.Repeat("🙂", 65)} {
		msg := ob.reply(offOfficer, ob.dm, "new "+label)
		require.Equal(t, "Merkelappen kan være høyst 64 tegn.", msg.body())
	}
	require.Empty(t, ob.hs.creates)
	require.Empty(t, offConversationIDs(t, ob))

	created := ob.newConversation(offOfficer, strings.Repeat("🙂", 64))
	require.Equal(t, "🔒 "+strings.Repeat("🙂", 64), ob.hs.creates[0].Name, "64 characters of four bytes fit")
	require.NotNil(t, created.conv)
}

// When the homeserver refuses a step of the creation, the officer gets a
// trace ID (never the error), and nothing of the half-made conversation
// stays usable: no row, no invite, no key, no audit row for a create.
func TestNewThatFailsOnTheHomeserverLeavesNoUsableConversation(t *testing.T) {
	for _, step := range []string{"createRoom"} {
		t.Run(step, func(t *testing.T) {
			ob := newOffBridge(t, nil)
			ob.hs.failOn(step)
			msg := ob.reply(offOfficer, ob.dm, "new sak 1")
			require.Regexp(t, `^Kunne ikke opprette samtalen\. Prøv igjen om litt\. Feilen er logget \(sporings-ID [A-Za-z0-9]{8}\)\.$`, msg.body())
			require.Nil(t, msg.Content["no.sikkerchat.invite"])
			require.Empty(t, offConversationIDs(t, ob))
			var invites int
			require.NoError(t, ob.sc.DB.QueryRow(ob.ctx, "SELECT COUNT(*) FROM sikkerchat_invite").Scan(&invites))
			require.Zero(t, invites)
			keys, err := os.ReadDir(ob.sc.Config.KeyDir)
			require.NoError(t, err)
			require.Empty(t, keys, "the conversation key is destroyed")
			traceID := regexp.MustCompile(`sporings-ID ([A-Za-z0-9]{8})`).FindStringSubmatch(msg.body())[1]
			require.Contains(t, ob.log.String(), `"trace_id":"`+traceID+`"`, "the log has the error under the trace ID")
		})
	}
}

// The link must never be shown in a chat the homeserver can read: `!sc new`
// typed in an unencrypted room deletes the conversation it made instead.
func TestNewInAnUnencryptedChatDeletesTheConversationInsteadOfShowingTheLink(t *testing.T) {
	ob := newOffBridge(t, nil)
	plain := id.RoomID("!ukryptert:example.org")
	require.NoError(t, ob.mc.StateStore.SetMembership(ob.ctx, plain, offBot, event.MembershipJoin))
	msg := ob.reply(offOfficer, plain, "new sak 1")
	require.Contains(t, msg.body(), "Kunne ikke opprette samtalen")
	require.Nil(t, msg.Content["no.sikkerchat.invite"])
	require.Len(t, ob.hs.creates, 1, "the room was made before the reply")
	require.Empty(t, offConversationIDs(t, ob), "but the conversation and its invite are gone")
	keys, err := os.ReadDir(ob.sc.Config.KeyDir)
	require.NoError(t, err)
	require.Empty(t, keys)
}

// With end-to-bridge encryption off the bridge makes no conversation at all
// and tells the officer which settings to turn on.
func TestNewWithEncryptionOffIsRefused(t *testing.T) {
	ob := newOffBridge(t, nil)
	ob.mc.Crypto = nil
	_, err := ob.sc.Conversations.Create(ob.ctx, offUser(t, ob, offOfficer), "sak 1")
	require.ErrorIs(t, err, ErrEncryptionDisabled)
	ob.mc.Crypto = ob.crypto
	ob.mc.Config.Encryption.Allow = false
	msg := ob.reply(offOfficer, ob.dm, "new sak 1")
	require.Contains(t, msg.body(), "kryptering er slått av")
	require.Contains(t, msg.body(), "`encryption.require`")
	require.Empty(t, ob.hs.creates)
	require.Empty(t, offConversationIDs(t, ob))
}

// The officer's login is made once: a second conversation reuses it.
func TestOfficerLoginIsMadeOnceAndReused(t *testing.T) {
	ob := newOffBridge(t, nil)
	ob.newConversation(offOfficer, "")
	ob.newConversation(offOfficer, "")
	var logins int
	require.NoError(t, ob.sc.DB.QueryRow(ob.ctx, "SELECT COUNT(*) FROM user_login WHERE user_mxid=$1", offOfficer).Scan(&logins))
	require.Equal(t, 1, logins)
	require.Len(t, ob.hs.creates, 2)
	require.NotEqual(t, ob.hs.creates[0].Invite[0], ob.hs.creates[1].Invite[0], "every conversation has its own guest")
}

// Settings of the bridge that shape the room: key rotation, federation and
// the guest name template.
func TestNewFollowsRotationFederationAndNameTemplateSettings(t *testing.T) {
	ob := newOffBridge(t, func(c *Config) { c.GuestDisplaynameTemplate = "Innbygger {{.Number}}" })
	ob.mc.Config.Encryption.Rotation.EnableCustom = true
	ob.mc.Config.Encryption.Rotation.Milliseconds = 3600000
	ob.mc.Config.Encryption.Rotation.Messages = 50
	ob.mc.Config.Matrix.FederateRooms = true
	ob.newConversation(offOfficer, "")
	req := ob.hs.creates[0]
	require.Regexp(t, `^🔒 Innbygger \d{4}$`, req.Name)
	require.NotContains(t, req.CreationContent, "m.federate")
	for _, evt := range req.InitialState {
		if evt.Type == event.StateEncryption {
			require.JSONEq(t, `{"algorithm":"m.megolm.v1.aes-sha2","rotation_period_ms":3600000,"rotation_period_msgs":50}`, string(evt.Content.VeryRaw))
		}
	}
}

// offActions lists the actions of audit rows.
func offActions(rows []*AuditRow) []string {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.Action)
	}
	return out
}

// offConversationIDs lists every conversation row.
func offConversationIDs(t *testing.T, ob *offBridge) []string {
	t.Helper()
	rows, err := ob.sc.DB.Query(ob.ctx, "SELECT id FROM sikkerchat_conversation ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		ids = append(ids, s)
	}
	return ids
}

// offDump is sikkerchat's and bridgev2's tables as text, for searching.
func offDump(t *testing.T, ob *offBridge, tables ...string) string {
	t.Helper()
	var sb strings.Builder
	for _, table := range tables {
		rows, err := ob.sc.DB.Query(ob.ctx, "SELECT * FROM "+table)
		require.NoError(t, err, table)
		cols, err := rows.Columns()
		require.NoError(t, err)
		for rows.Next() {
			values := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range values {
				ptrs[i] = &values[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			for _, v := range values {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				fmt.Fprintf(&sb, "%v|", v)
			}
			sb.WriteString("\n")
		}
		require.NoError(t, rows.Close())
	}
	return sb.String()
}

func offUser(t *testing.T, ob *offBridge, mxid id.UserID) *bridgev2.User {
	t.Helper()
	u, err := ob.br.GetUserByMXID(context.Background(), mxid)
	require.NoError(t, err)
	return u
}

// A conversation moved from Messenger or Instagram says so in the room's
// first notice, before who made it.
func TestCreateFromOpensTheFirstNoticeWithTheOrigin(t *testing.T) {
	ob := newOffBridge(t, nil)
	origin := "Denne sikre samtalen ble startet fra en samtale på Messenger (https://matrix.to/#/!sosial:example.org)."
	created, err := ob.sc.Conversations.CreateFrom(ob.ctx, offUser(t, ob, offOfficer), "sak 1", origin)
	require.NoError(t, err)
	require.True(t, ob.sc.WaitBackground(time.Minute))
	notices := ob.messages(created.Conversation.RoomID)
	require.Len(t, notices, 1, "one first notice, not two")
	require.True(t, strings.HasPrefix(notices[0].body(), origin+" Samtalen er opprettet av "+offOfficer.String()), notices[0].body())
}

// The ghost joins its room after the officer has the link; when that join
// fails, the conversation still stands and the guest's first message joins
// the ghost and arrives.
func TestGhostJoinThatFailsAtCreationHappensAtTheFirstMessage(t *testing.T) {
	ob := newOffBridge(t, nil)
	ob.hs.failWith(http.StatusBadGateway, "/join @sikkerchat_")
	created := ob.newConversation(offOfficer, "sak 1")
	guest := ob.sc.Conversations.guestMXID(created.conv)
	require.Equal(t, event.MembershipInvite, ob.hs.membership(created.room, guest), "invited by createRoom, not joined yet")
	require.Contains(t, ob.log.String(), "Failed to join guest ghost to room")
	ob.hs.failOn()
	ob.joinGuest(created)
	_, _, err := ob.sc.Guests.QueueText(ob.ctx, ob.conv(created.conv.ID), "off-ghost-join-0001", "hei")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ob.sc.Outbox.RunOnce(ob.ctx)
		for _, m := range ob.messages(created.room) {
			if m.body() == "hei" && m.Sender == guest {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, event.MembershipJoin, ob.hs.membership(created.room, guest))
}

// Guest ghosts are registered ahead: after the first conversation the next
// one's ghost was registered before its room was asked for, so the officer
// does not wait for a registration; and the pool never grows past its size.
func TestGuestGhostsAreRegisteredAhead(t *testing.T) {
	ob := newOffBridge(t, nil)
	ob.newConversation(offOfficer, "")
	require.Len(t, ob.hs.requestsTo("POST /_matrix/client/v3/register"), 1+spareGhosts, "its own, then the spares")
	second := ob.newConversation(offOfficer, "")
	ghost := ob.sc.Conversations.guestMXID(second.conv)
	ob.hs.mu.Lock()
	registeredAt, createdAt := -1, -1
	for i, r := range ob.hs.requests {
		if registeredAt < 0 && strings.Contains(r.Method+" "+r.Path, "/register") && r.User == ghost {
			registeredAt = i
		}
		if strings.HasSuffix(r.Path, "/createRoom") {
			createdAt = i // the last one: the second conversation's
		}
	}
	ob.hs.mu.Unlock()
	require.GreaterOrEqual(t, registeredAt, 0, "the ghost was registered")
	require.Less(t, registeredAt, createdAt, "before its room was made")
	require.Len(t, ob.hs.requestsTo("POST /_matrix/client/v3/register"), 2+spareGhosts, "one taken, one added")
}
