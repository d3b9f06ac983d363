package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"
)

// prov calls sikkerchat's provisioning API as a case system does: bridgev2's
// shared secret, and ?user_id= naming the officer.
func (ob *offBridge) prov(method, path string, user id.UserID, body string) *httptest.ResponseRecorder {
	ob.t.Helper()
	target := "/_matrix/provision/v3/sikkerchat" + path
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	req := httptest.NewRequest(method, target+sep+"user_id="+url.QueryEscape(user.String()), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+offSecret)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	ob.mc.AS.Router.ServeHTTP(rec, req)
	return rec
}

// offProvConversation is the provisioning API's answer about a conversation.
type offProvConversation struct {
	ConversationID  string    `json:"conversation_id"`
	Status          string    `json:"status"`
	CreatedBy       id.UserID `json:"created_by"`
	CreatedAt       int64     `json:"created_at"`
	InviteExpiresAt int64     `json:"invite_expires_at"`
	Guest           id.UserID `json:"guest"`
	ClosedAt        int64     `json:"closed_at"`
	PurgeAfter      int64     `json:"purge_after"`
	Hold            bool      `json:"hold"`
	RoomID          id.RoomID `json:"room_id"`
	Label           *string   `json:"label"`
	Invite          *struct {
		ConversationID string    `json:"conversation_id"`
		RoomID         id.RoomID `json:"room_id"`
		URL            string    `json:"url"`
		Code           string    `json:"code"`
		ExpiresAt      int64     `json:"expires_at"`
	} `json:"no.sikkerchat.invite"`
}

func offDecode[T any](t *testing.T, rec *httptest.ResponseRecorder, status int) T {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json"), rec.Header().Get("Content-Type"))
	var out T
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), rec.Body.String())
	return out
}

// offProvError checks a provisioning error answer.
func offProvError(t *testing.T, rec *httptest.ResponseRecorder, status int, errcode string) string {
	t.Helper()
	e := offDecode[struct {
		ErrCode string `json:"errcode"`
		Error   string `json:"error"`
	}](t, rec, status)
	require.Equal(t, errcode, e.ErrCode)
	require.NotEmpty(t, e.Error)
	return e.Error
}

// A case system creates a conversation for an officer: 201 with the same
// facts as the room's state event, the label, and the invite (link and code
// word) that works for the citizen.
func TestProvisioningCreateAnswersTheConversationWithItsInvite(t *testing.T) {
	ob := newOffBridge(t, nil)
	got := offDecode[offProvConversation](t, ob.prov("POST", "/conversations", offOfficer, `{"label":"sak 7"}`), http.StatusCreated)

	require.Len(t, ob.hs.creates, 1)
	require.Equal(t, "🔒 sak 7", ob.hs.creates[0].Name)
	conv := ob.conv(got.ConversationID)
	require.NotNil(t, conv)
	require.Equal(t, conv.RoomID, got.RoomID)
	require.Equal(t, "created", got.Status)
	require.Equal(t, offOfficer, got.CreatedBy)
	require.Equal(t, id.UserID("@sikkerchat_"+conv.GhostID+":example.org"), got.Guest)
	require.Equal(t, conv.InviteExpiresAt.UnixMilli(), got.InviteExpiresAt)
	require.Zero(t, got.ClosedAt)
	require.False(t, got.Hold)
	require.Equal(t, "sak 7", *got.Label)
	offRequireSameAsStateEvent(t, ob, got)

	require.NotNil(t, got.Invite)
	require.Equal(t, got.ConversationID, got.Invite.ConversationID)
	require.Equal(t, got.RoomID, got.Invite.RoomID)
	require.Equal(t, got.InviteExpiresAt, got.Invite.ExpiresAt)
	_, token, ok := strings.Cut(got.Invite.URL, "https://chat.example.no/#")
	require.True(t, ok, got.Invite.URL)
	_, _, err := ob.sc.Guests.Join(ob.ctx, token, got.Invite.Code)
	require.NoError(t, err)
	first := ob.audit(got.ConversationID)[0]
	require.Equal(t, []string{AuditCreate, IntegratorActor}, []string{first.Action, first.Actor})

	// An empty body is a conversation without a label.
	bare := offDecode[offProvConversation](t, ob.prov("POST", "/conversations", offOfficer, ""), http.StatusCreated)
	require.Nil(t, bare.Label)
	require.Regexp(t, `^🔒 Gjest \d{4}$`, ob.hs.creates[1].Name)
}

// The answer is the same as the state event integrators read in the room.
func offRequireSameAsStateEvent(t *testing.T, ob *offBridge, got offProvConversation) {
	t.Helper()
	state := ob.hs.stateOf(got.RoomID, "no.sikkerchat.conversation", "")
	require.NotNil(t, state)
	require.Equal(t, got.ConversationID, state["conversation_id"])
	require.Equal(t, got.Status, state["status"])
	require.Equal(t, got.CreatedBy.String(), state["created_by"])
	require.Equal(t, float64(got.CreatedAt), state["created_at"])
	require.Equal(t, float64(got.InviteExpiresAt), state["invite_expires_at"])
	require.Equal(t, got.Guest.String(), state["guest"])
	require.Equal(t, float64(got.ClosedAt), state["closed_at"])
	require.Equal(t, float64(got.PurgeAfter), state["purge_after"])
	require.Equal(t, got.Hold, state["hold"])
}

// A create that fails on the homeserver answers 500 without the cause, and
// leaves no conversation behind.
func TestProvisioningCreateFailureAnswersWithoutTheCause(t *testing.T) {
	ob := newOffBridge(t, nil)
	ob.hs.failOn("createRoom")
	msg := offProvError(t, ob.prov("POST", "/conversations", offOfficer, `{"label":"sak 7"}`), http.StatusInternalServerError, "M_UNKNOWN")
	require.Equal(t, "Failed to create the conversation", msg)
	require.Empty(t, offConversationIDs(t, ob))
	require.Contains(t, ob.log.String(), "Failed to create conversation from provisioning")

	ob.hs.failOn()
	ob.mc.Config.Encryption.Allow = false
	offProvError(t, ob.prov("POST", "/conversations", offOfficer, ""), http.StatusInternalServerError, "M_UNKNOWN")
	require.Len(t, ob.hs.requestsTo("createRoom"), 1, "no room without encryption")
}

// The list is the caller's own conversations, closed ones too; after the
// close the label is gone with the conversation's key.
func TestProvisioningListsTheCallersOwnConversations(t *testing.T) {
	ob := newOffBridge(t, nil)
	empty := offDecode[struct{ Conversations []offProvConversation }](t, ob.prov("GET", "/conversations", offOfficer, ""), http.StatusOK)
	require.NotNil(t, empty.Conversations, "an empty list, not null")
	require.Empty(t, empty.Conversations)

	open := ob.newConversation(offOfficer, "sak 1")
	closed := ob.newConversation(offOfficer, "sak 2")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, closed.conv, offOfficer.String(), CloseByOfficer))
	colleagues := ob.newConversation(offColleague, "sak 3")

	list := offDecode[struct{ Conversations []offProvConversation }](t, ob.prov("GET", "/conversations", offOfficer, ""), http.StatusOK)
	byID := map[string]offProvConversation{}
	for _, c := range list.Conversations {
		byID[c.ConversationID] = c
		require.Nil(t, c.Invite, "a list never carries a link or code word")
		offRequireSameAsStateEvent(t, ob, c)
	}
	require.Len(t, byID, 2)
	require.Equal(t, "created", byID[open.conv.ID].Status)
	require.Equal(t, "sak 1", *byID[open.conv.ID].Label)
	require.Equal(t, "closed", byID[closed.conv.ID].Status)
	require.Nil(t, byID[closed.conv.ID].Label, "the label went with the key")
	require.NotZero(t, byID[closed.conv.ID].PurgeAfter)
	require.NotContains(t, byID, colleagues.conv.ID)
	require.NotContains(t, ob.prov("GET", "/conversations", offOfficer, "").Body.String(), "sak 2")

	admins := offDecode[struct{ Conversations []offProvConversation }](t, ob.prov("GET", "/conversations", offAdmin, ""), http.StatusOK)
	require.Empty(t, admins.Conversations, "an admin lists their own")
}

// One conversation: its officer and admins see it, colleagues get 404 as if
// it did not exist.
func TestProvisioningGetShowsAConversationToItsOfficerAndToAdmins(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "sak 1")
	ob.joinGuest(created)
	ob.reply(offOfficer, created.room, "hold")
	for _, user := range []id.UserID{offOfficer, offAdmin} {
		got := offDecode[offProvConversation](t, ob.prov("GET", "/conversations/"+created.conv.ID, user, ""), http.StatusOK)
		require.Equal(t, "active", got.Status, user)
		require.True(t, got.Hold)
		require.Equal(t, "sak 1", *got.Label)
		require.Nil(t, got.Invite)
		offRequireSameAsStateEvent(t, ob, got)
	}
	notFound := ob.prov("GET", "/conversations/"+created.conv.ID, offColleague, "")
	unknown := ob.prov("GET", "/conversations/aaaaaaaaaaaaaaaa", offColleague, "")
	offProvError(t, notFound, http.StatusNotFound, "M_NOT_FOUND")
	require.Equal(t, unknown.Body.String(), notFound.Body.String(), "someone else's conversation looks like none")
}

// Closing through the API does what `!sc close` does, with the case system
// as the reason, and answers the closed state; an admin may close any.
func TestProvisioningCloseClosesAndAnswersTheClosedState(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "sak 1")
	session := ob.joinGuest(created)
	sub := ob.sc.Hub.Subscribe(created.conv.ID)
	defer sub.Close()

	got := offDecode[offProvConversation](t, ob.prov("POST", "/conversations/"+created.conv.ID+"/close", offOfficer, ""), http.StatusOK)
	conv := ob.conv(created.conv.ID)
	require.Equal(t, "closed", got.Status)
	require.Equal(t, conv.ClosedAt.UnixMilli(), got.ClosedAt)
	require.Equal(t, conv.PurgeAfter.UnixMilli(), got.PurgeAfter)
	offRequireSameAsStateEvent(t, ob, got)
	evt := <-sub.C
	require.Equal(t, CloseByProvisioning, evt.Reason)
	_, _, err := ob.sc.Guests.CheckSession(ob.ctx, session)
	require.Error(t, err)
	messages := ob.messages(created.room)
	require.Contains(t, messages[len(messages)-1].body(), "(avsluttet fra fagsystemet)")
	last := ob.lastAudit(created.conv.ID)
	require.Equal(t, []string{AuditClose, IntegratorActor, CloseByProvisioning}, []string{last.Action, last.Actor, last.Detail})

	colleagues := ob.newConversation(offColleague, "")
	offProvError(t, ob.prov("POST", "/conversations/"+colleagues.conv.ID+"/close", offOfficer, ""), http.StatusNotFound, "M_NOT_FOUND")
	require.Equal(t, StatusCreated, ob.conv(colleagues.conv.ID).Status)
	byAdmin := offDecode[offProvConversation](t, ob.prov("POST", "/conversations/"+colleagues.conv.ID+"/close", offAdmin, ""), http.StatusOK)
	require.Equal(t, "closed", byAdmin.Status)
	require.Equal(t, IntegratorActor, ob.lastAudit(colleagues.conv.ID).Actor)
}

// While the guest's messages cannot reach the room, a close answers 409 with
// Retry-After and how many wait; the conversation stays open.
func TestProvisioningCloseWithUndeliveredGuestMessagesAnswersConflict(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	ob.joinGuest(created)
	ob.hs.failWith(http.StatusBadGateway, " @sikkerchat_")
	for i := range 3 {
		_, _, err := ob.sc.Guests.QueueText(ob.ctx, ob.conv(created.conv.ID), fmt.Sprintf("off-prov-client-%04d", i), "hei")
		require.NoError(t, err)
	}
	rec := ob.prov("POST", "/conversations/"+created.conv.ID+"/close", offOfficer, "")
	msg := offProvError(t, rec, http.StatusConflict, "NO.SIKKERCHAT.UNDELIVERED")
	require.Equal(t, "30", rec.Header().Get("Retry-After"))
	require.True(t, strings.HasPrefix(msg, "3 messages from the guest"), msg)
	require.Equal(t, StatusActive, ob.conv(created.conv.ID).Status)

	ob.hs.failOn()
	require.Equal(t, http.StatusOK, ob.prov("POST", "/conversations/"+created.conv.ID+"/close", offOfficer, "").Code)
}

// The audit trail: rows and whether the chain is whole; after a purge only
// admins can still read it (the trail outlives the room).
func TestProvisioningAuditAnswersTheTrailAndOutlivesThePurge(t *testing.T) {
	ob := newOffBridge(t, func(c *Config) { c.Retention = "1ms" })
	created := ob.newConversation(offOfficer, "")
	ob.reply(offOfficer, created.room, "hold")
	type trail struct {
		ConversationID string      `json:"conversation_id"`
		Rows           []*AuditRow `json:"rows"`
		ChainOK        bool        `json:"chain_ok"`
		ChainError     *string     `json:"chain_error"`
	}
	got := offDecode[trail](t, ob.prov("GET", "/conversations/"+created.conv.ID+"/audit", offOfficer, ""), http.StatusOK)
	require.Equal(t, created.conv.ID, got.ConversationID)
	require.Equal(t, []string{AuditCreate, AuditHold}, offActions(got.Rows))
	require.Equal(t, offOfficer.String(), got.Rows[1].Actor)
	require.True(t, got.ChainOK)
	require.Nil(t, got.ChainError)
	offProvError(t, ob.prov("GET", "/conversations/"+created.conv.ID+"/audit", offColleague, ""), http.StatusNotFound, "M_NOT_FOUND")

	ob.reply(offAdmin, created.room, "unhold saken er henlagt")
	require.NoError(t, ob.sc.Conversations.Close(ob.ctx, ob.conv(created.conv.ID), offOfficer.String(), CloseByOfficer))
	require.Eventually(t, func() bool {
		ob.sc.Conversations.PurgeDue(ob.ctx)
		return ob.conv(created.conv.ID) == nil
	}, 10*time.Second, 5*time.Millisecond)
	offProvError(t, ob.prov("GET", "/conversations/"+created.conv.ID+"/audit", offOfficer, ""), http.StatusNotFound, "M_NOT_FOUND")
	got = offDecode[trail](t, ob.prov("GET", "/conversations/"+created.conv.ID+"/audit", offAdmin, ""), http.StatusOK)
	require.Equal(t, []string{AuditCreate, AuditHold, AuditUnhold, AuditClose, AuditPurge}, offActions(got.Rows))

	_, err := ob.sc.DB.Exec(ob.ctx, "UPDATE sikkerchat_audit SET detail='endret' WHERE action=$1", AuditUnhold)
	require.NoError(t, err)
	got = offDecode[trail](t, ob.prov("GET", "/conversations/"+created.conv.ID+"/audit", offAdmin, ""), http.StatusOK)
	require.False(t, got.ChainOK)
	require.NotNil(t, got.ChainError)
	require.Contains(t, *got.ChainError, "was changed")
}

// Anonymous statistics over the last 30 days, or the days asked.
func TestProvisioningStatsAnswersAnonymousCounts(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "sak 1")
	ob.joinGuest(created)
	ob.newConversation(offColleague, "")
	rec := ob.prov("GET", "/stats", offOfficer, "")
	st := offDecode[Stats](t, rec, http.StatusOK)
	require.Equal(t, 30, st.Days)
	require.Equal(t, 2, st.Created, "everyone's conversations, counted")
	require.Equal(t, 1, st.Opened)
	require.NotNil(t, st.MedianSecondsToOpen)
	require.Nil(t, st.MedianSecondsToClose)
	for _, identifying := range []string{created.conv.ID, "sak 1", "@betjent", "@kollega", created.room.String()} {
		require.NotContains(t, rec.Body.String(), identifying)
	}
	require.Equal(t, 7, offDecode[Stats](t, ob.prov("GET", "/stats?days=7", offOfficer, ""), http.StatusOK).Days)
}

// With the shared secret a case system can name any user_id, an admin's too,
// and bridgev2 gives the call that user's rights: the audit trail (and the
// package's manifest) names the integrator that holds the secret, never the
// user it named. With an officer's own Matrix access token
// (provisioning.allow_matrix_auth) the homeserver has said whose token it
// is, and the trail names that officer.
func TestProvisioningWithTheSharedSecretIsAuditedAsTheIntegrator(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := offDecode[offProvConversation](t, ob.prov("POST", "/conversations", offOfficer, ""), http.StatusCreated)
	require.Equal(t, offOfficer, created.CreatedBy, "the conversation is the officer's")
	convID := created.ConversationID

	// An export as the admin, of an officer's conversation.
	rec := ob.prov("POST", "/conversations/"+convID+"/export", offAdmin, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	pkg := rec.Body.Bytes()
	last := ob.lastAudit(convID)
	require.Equal(t, AuditExport, last.Action)
	require.True(t, strings.HasPrefix(last.Actor, "integrator:"), last.Actor)
	require.Equal(t, IntegratorActor, last.Actor)
	var manifest Manifest
	require.NoError(t, json.Unmarshal(offZipFile(t, pkg, "manifest.json"), &manifest))
	require.Equal(t, IntegratorActor, manifest.ExportedBy)
	// verify-export, given the trail from the API, names the integrator too.
	trail := ob.prov("GET", "/conversations/"+convID+"/audit", offAdmin, "")
	require.Equal(t, http.StatusOK, trail.Code)
	sum := sha256.Sum256(pkg)
	record, err := FindExportRecord(trail.Body.Bytes(), hex.EncodeToString(sum[:]))
	require.NoError(t, err)
	require.NotNil(t, record)
	require.Equal(t, IntegratorActor, record.Actor)

	require.Equal(t, http.StatusOK, ob.prov("POST", "/conversations/"+convID+"/close", offAdmin, "").Code)
	require.Equal(t, []string{AuditCreate, AuditExport, AuditClose}, offActions(ob.audit(convID)))
	for _, row := range ob.audit(convID) {
		require.Equal(t, IntegratorActor, row.Actor, "%s names the integrator", row.Action)
	}

	// The officer's own Matrix token: bridgev2 asks the homeserver whose it is.
	whoami := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokens := map[string]id.UserID{"Bearer officer-own-token": offOfficer, "Bearer admin-own-token": offAdmin}
		user, ok := tokens[r.Header.Get("Authorization")]
		if !strings.HasSuffix(r.URL.Path, "/account/whoami") || !ok {
			offWriteJSON(w, http.StatusUnauthorized, map[string]string{"errcode": "M_UNKNOWN_TOKEN", "error": "unknown token"})
			return
		}
		offWriteJSON(w, http.StatusOK, map[string]any{"user_id": user})
	}))
	defer whoami.Close()
	ob.mc.Config.Provisioning.AllowMatrixAuth = true
	ob.mc.Config.DoublePuppet.Servers = map[string]string{"example.org": whoami.URL}
	ownToken := func(method, path string, user id.UserID, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/_matrix/provision/v3/sikkerchat"+path+"?user_id="+url.QueryEscape(user.String()), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		ob.mc.AS.Router.ServeHTTP(rec, req)
		return rec
	}
	mine := offDecode[offProvConversation](t, ownToken("POST", "/conversations", offOfficer, "officer-own-token"), http.StatusCreated)
	require.Equal(t, http.StatusOK, ownToken("POST", "/conversations/"+mine.ConversationID+"/export", offOfficer, "officer-own-token").Code)
	require.Equal(t, http.StatusOK, ownToken("POST", "/conversations/"+mine.ConversationID+"/export", offAdmin, "admin-own-token").Code)
	rows := ob.audit(mine.ConversationID)
	require.Equal(t, [][2]string{{AuditCreate, offOfficer.String()}, {AuditExport, offOfficer.String()}, {AuditExport, offAdmin.String()}},
		[][2]string{{rows[0].Action, rows[0].Actor}, {rows[1].Action, rows[1].Actor}, {rows[2].Action, rows[2].Actor}})
	// Someone else's token does not make the officer.
	offProvError(t, ownToken("POST", "/conversations/"+mine.ConversationID+"/export", offAdmin, "officer-own-token"), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
}
