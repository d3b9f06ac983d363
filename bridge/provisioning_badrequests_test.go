package bridge

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

const (
	provSecret       = "provisioning-secret-for-tests-0123"
	provOfficer      = "@officer:example.org"
	provColleague    = "@colleague:example.org"
	provAdmin        = "@admin:example.org"
	provPrefix       = "/_matrix/provision/v3/sikkerchat"
	provCommandsOnly = "@commands:example.org"
)

// provBridge is a real bridgev2 bridge with sikkerchat's connector and
// bridgev2's provisioning API (router, shared-secret auth, ?user_id=), without
// a homeserver: nothing of it is started but the database and the routes.
type provBridge struct {
	t       *testing.T
	sc      *Connector
	handler http.Handler
}

func newProvBridge(t *testing.T) *provBridge {
	t.Helper()
	ctx := context.Background()
	raw, _ := testdb.New(t)
	var netCfg Config
	require.NoError(t, yaml.Unmarshal([]byte(ExampleConfig), &netCfg))
	netCfg.MasterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	netCfg.KeyDir = t.TempDir()
	require.NoError(t, netCfg.validate())
	sc := &Connector{Config: netCfg}

	user, admin, commandsOnly := bridgeconfig.PermissionLevelUser, bridgeconfig.PermissionLevelAdmin, bridgeconfig.PermissionLevelCommands
	relay, block := bridgeconfig.PermissionLevelRelay, bridgeconfig.PermissionLevelBlock
	cfg := &bridgeconfig.Config{
		Homeserver: bridgeconfig.HomeserverConfig{Address: "http://127.0.0.1:9", Domain: "example.org"},
		AppService: bridgeconfig.AppserviceConfig{
			ID: "sikkerchat", Bot: bridgeconfig.BotUserConfig{Username: "sikkerchatbot"},
			ASToken: "as-token", HSToken: "hs-token", UsernameTemplate: "sikkerchat_{{.}}",
		},
		Bridge: bridgeconfig.BridgeConfig{CommandPrefix: "!sc", Permissions: bridgeconfig.PermissionConfig{
			"*": &relay, "example.org": &user, provAdmin: &admin, provCommandsOnly: &commandsOnly, "@blocked:example.org": &block,
		}},
		Provisioning: bridgeconfig.ProvisioningConfig{SharedSecret: provSecret},
	}
	mc := matrix.NewConnector(cfg)
	br := bridgev2.NewBridge("sikkerchat", raw, zerolog.Nop(), &cfg.Bridge, mc, sc, commands.NewProcessor)
	require.NoError(t, br.DB.Upgrade(ctx))
	require.NoError(t, sc.DB.Upgrade(ctx))
	mc.Provisioning.Init()
	registerProvisioning(sc)
	return &provBridge{t: t, sc: sc, handler: mc.AS.Router}
}

// conversation stores a conversation as `!sc new` would, in the given state.
func (pb *provBridge) conversation(createdBy id.UserID, status ConversationStatus) *Conversation {
	pb.t.Helper()
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	conv := &Conversation{
		ID: randomID(10), GhostID: randomID(10), RoomID: id.RoomID("!" + randomID(8) + ":example.org"), Status: StatusCreated,
		CreatedBy: createdBy, CreatedAt: now, InviteExpiresAt: now.Add(time.Hour), Label: "sak 1",
	}
	token, hash, err := NewInviteToken()
	require.NoError(pb.t, err)
	require.NoError(pb.t, pb.sc.Transcript.CreateKey(conv.ID))
	inv := &Invite{TokenHash: hash, ConversationID: conv.ID, CodeMAC: CodeMAC(token, "tiger 47"), CreatedAt: now, ExpiresAt: conv.InviteExpiresAt}
	require.NoError(pb.t, pb.sc.DB.Conversation.Insert(ctx, conv, inv))
	require.NoError(pb.t, pb.sc.Audit.Append(ctx, createdBy.String(), AuditCreate, conv.ID, ""))
	if status != StatusCreated {
		_, err = pb.sc.DB.Exec(ctx, "UPDATE sikkerchat_conversation SET status=$2, closed_at=$3, purge_after=$4 WHERE id=$1",
			conv.ID, status, now.UnixMilli(), now.Add(time.Hour).UnixMilli())
		require.NoError(pb.t, err)
		conv.Status = status
	}
	return conv
}

// state is everything a provisioning call could change: sikkerchat's tables,
// the conversation keys, and bridgev2's users and logins.
func (pb *provBridge) state() map[string]string {
	pb.t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for part, query := range map[string]string{
		"conversation": "SELECT id, room_id, label_sealed, status, closed_at, purge_after, hold FROM sikkerchat_conversation ORDER BY id",
		"invite":       "SELECT conversation_id, token_hash, used_at, revoked_at, failed_attempts FROM sikkerchat_invite ORDER BY conversation_id, token_hash",
		"session":      "SELECT conversation_id, token_hash, revoked_at FROM sikkerchat_guest_session ORDER BY conversation_id, token_hash",
		"transcript":   "SELECT conversation_id, seq, status, sealed FROM sikkerchat_transcript ORDER BY conversation_id, seq",
		"file":         "SELECT conversation_id, file_id FROM sikkerchat_file ORDER BY conversation_id, file_id",
		"audit":        "SELECT seq, actor, action, conversation_id, detail FROM sikkerchat_audit ORDER BY seq",
		"inbox":        "SELECT event_id, room_id, attempts FROM sikkerchat_inbox ORDER BY event_id",
		"user":         `SELECT mxid FROM "user" ORDER BY mxid`,
		"user_login":   "SELECT user_mxid, id FROM user_login ORDER BY user_mxid, id",
		"portal":       "SELECT id, mxid FROM portal ORDER BY id",
		"ghost":        "SELECT id FROM ghost ORDER BY id",
	} {
		rows, err := pb.sc.DB.Query(ctx, query)
		require.NoError(pb.t, err, part)
		cols, err := rows.Columns()
		require.NoError(pb.t, err)
		var sb strings.Builder
		for rows.Next() {
			values := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range values {
				ptrs[i] = &values[i]
			}
			require.NoError(pb.t, rows.Scan(ptrs...))
			for _, v := range values {
				fmt.Fprintf(&sb, "%q|", v.String)
			}
			sb.WriteString("\n")
		}
		require.NoError(pb.t, rows.Err())
		require.NoError(pb.t, rows.Close())
		out[part] = sb.String()
	}
	keys, err := os.ReadDir(pb.sc.Config.KeyDir)
	require.NoError(pb.t, err)
	var names []string
	for _, k := range keys {
		names = append(names, k.Name())
	}
	out["keys"] = strings.Join(names, ",")
	return out
}

type provBadRequest struct {
	name   string
	method string
	path   string // under /_matrix/provision/v3/sikkerchat unless it starts with /_matrix
	query  string // added to ?user_id=…; "-" sends no user_id at all
	user   id.UserID
	auth   string // the Authorization header; "" means the right shared secret, "-" none
	body   string
	status int
	// errcode is bridgev2's (M_…) or ours (NO.SIKKERCHAT.…).
	errcode string
	// allow names parts of the state (see provBridge.state) this call may change.
	allow []string
}

func TestProvisioningBadRequests(t *testing.T) {
	pb := newProvBridge(t)
	open := pb.conversation(provOfficer, StatusActive)
	fresh := pb.conversation(provOfficer, StatusCreated)
	closed := pb.conversation(provOfficer, StatusClosed)
	expired := pb.conversation(provOfficer, StatusExpired)
	colleagues := pb.conversation(provColleague, StatusActive)
	// The officer, the colleague and the admin have used the API before:
	// bridgev2 has made their user rows already.
	for _, u := range []id.UserID{provOfficer, provColleague, provAdmin} {
		_, err := pb.sc.Bridge.GetUserByMXID(context.Background(), u)
		require.NoError(t, err)
	}

	var rows []provBadRequest
	add := func(r ...provBadRequest) { rows = append(rows, r...) }
	routes := []struct{ method, path string }{
		{"POST", "/conversations"}, {"GET", "/conversations"}, {"GET", "/conversations/" + open.ID},
		{"POST", "/conversations/" + open.ID + "/close"}, {"GET", "/conversations/" + open.ID + "/audit"},
		{"POST", "/conversations/" + open.ID + "/export"}, {"GET", "/stats"},
	}

	// bridgev2's shared-secret auth, on every route.
	for _, r := range routes {
		for _, a := range []struct{ name, auth, errcode string }{
			{"no Authorization", "-", "M_MISSING_TOKEN"},
			{"wrong secret", "Bearer wrong-secret-wrong-secret", "M_UNKNOWN_TOKEN"},
			{"secret in another case", "Bearer " + strings.ToUpper(provSecret), "M_UNKNOWN_TOKEN"},
			{"secret with a suffix", "Bearer " + provSecret + "x", "M_UNKNOWN_TOKEN"},
			{"secret as Basic auth", "Basic " + provSecret, "M_UNKNOWN_TOKEN"},
			// The one other way in is an officer's own Matrix token, and only
			// with provisioning.allow_matrix_auth (off here).
			{"Matrix access token, Matrix auth off", "Bearer syt_b2ZmaWNlcg_notarealtoken_0a1b2c", "M_UNKNOWN_TOKEN"},
			{"OpenID token, Matrix auth off", "Bearer openid:notarealopenidtoken", "M_UNKNOWN_TOKEN"},
		} {
			add(provBadRequest{name: r.method + " " + r.path + ": " + a.name, method: r.method, path: r.path, user: provOfficer,
				auth: a.auth, body: `{"label":"x"}`, status: 401, errcode: a.errcode})
		}
	}
	add(provBadRequest{name: "empty Bearer", method: "GET", path: "/conversations", user: provOfficer, auth: "Bearer ", status: 401, errcode: "M_MISSING_TOKEN"})
	add(provBadRequest{name: "Bearer in lower case", method: "GET", path: "/conversations", user: provOfficer, auth: "bearer " + provSecret, status: 401, errcode: "M_UNKNOWN_TOKEN"})
	add(provBadRequest{name: "Bearer with two spaces", method: "GET", path: "/conversations", user: provOfficer, auth: "Bearer  " + provSecret, status: 401, errcode: "M_UNKNOWN_TOKEN"})
	add(provBadRequest{name: "secret in the query", method: "GET", path: "/conversations", user: provOfficer, query: "access_token=" + provSecret, auth: "-", status: 401, errcode: "M_MISSING_TOKEN"})

	// Who the call is for: bridgev2 refuses everyone without login permission
	// (M_FORBIDDEN) before sikkerchat's handlers run. It does make a user row
	// for a Matrix ID it has not seen (bridgev2's behaviour).
	newUser := []string{"user"}
	for _, r := range routes {
		add(provBadRequest{name: r.method + " " + r.path + ": no user_id", method: r.method, path: r.path, query: "-", status: 403, errcode: "M_FORBIDDEN", allow: newUser})
		add(provBadRequest{name: r.method + " " + r.path + ": user of another server", method: r.method, path: r.path, user: "@citizen:other.example",
			body: `{"label":"x"}`, status: 403, errcode: "M_FORBIDDEN", allow: newUser})
	}
	for _, u := range []struct{ name, user string }{
		{"blocked user", "@blocked:example.org"}, {"user with commands only", provCommandsOnly}, {"not a Matrix ID", "officer"},
		{"officer with a trailing space", provOfficer + " "}, {"officer of a look-alike server", "@officer:example.org.evil"},
	} {
		add(provBadRequest{name: "GET /conversations: " + u.name, method: "GET", path: "/conversations", user: id.UserID(u.user), status: 403, errcode: "M_FORBIDDEN", allow: newUser})
	}
	add(provBadRequest{name: "GET /conversations: two user_ids, the first no officer", method: "GET", path: "/conversations", user: "@citizen:other.example",
		query: "user_id=" + provOfficer, status: 403, errcode: "M_FORBIDDEN", allow: newUser})
	// bridgev2 looks a bare server name up as a user with that server's
	// permissions; sikkerchat wants a Matrix user ID.
	for _, r := range routes {
		add(provBadRequest{name: r.method + " " + r.path + ": server name as user_id", method: r.method, path: r.path, user: "example.org",
			body: `{"label":"x"}`, status: 400, errcode: "M_INVALID_PARAM", allow: newUser})
	}

	// Wrong methods and unknown paths: bridgev2's M_UNRECOGNIZED.
	for _, m := range []struct{ method, path string }{
		{"PUT", "/conversations"}, {"DELETE", "/conversations"}, {"PATCH", "/conversations"},
		{"POST", "/conversations/" + open.ID}, {"PUT", "/conversations/" + open.ID}, {"DELETE", "/conversations/" + open.ID},
		{"GET", "/conversations/" + open.ID + "/close"}, {"DELETE", "/conversations/" + open.ID + "/close"},
		{"GET", "/conversations/" + open.ID + "/export"}, {"POST", "/conversations/" + open.ID + "/audit"}, {"POST", "/stats"},
	} {
		add(provBadRequest{name: "wrong method " + m.method + " " + m.path, method: m.method, path: m.path, user: provOfficer, status: 405, errcode: "M_UNRECOGNIZED"})
	}
	for _, p := range []string{"/nope", "/conversations/" + open.ID + "/reissue", "/conversations/" + open.ID + "/close/now", "/_matrix/provision/v3/nope",
		"/_matrix/provision/v2/sikkerchat/conversations", "/conversations/" + open.ID + "/hold", "/conversations/", "/conversations/" + open.ID + "/"} {
		add(provBadRequest{name: "unknown path " + p, method: "GET", path: p, user: provOfficer, status: 404, errcode: "M_UNRECOGNIZED"})
	}

	// Conversation IDs: unknown, malformed, someone else's.
	for _, c := range []struct{ name, id string }{
		{"unknown id", "aaaaaaaaaaaaaaaa"}, {"id too long", strings.Repeat("a", 65)}, {"id with a backslash", "a%5Cb"},
		{"id with an encoded slash", "..%2F..%2Fetc"}, {"id with NUL", "a%00b"}, {"id with invalid UTF-8", "%ff%fe"},
		{"id with a space", "a%20b"}, {"id with SQL", "x'%20OR%20'1'='1"}, {"id of another officer", colleagues.ID},
		{"id in upper case", strings.ToUpper(open.ID)},
	} {
		for _, action := range []struct{ method, suffix string }{{"GET", ""}, {"POST", "/close"}, {"POST", "/export"}, {"GET", "/audit"}} {
			add(provBadRequest{name: action.method + " conversation" + action.suffix + ": " + c.name, method: action.method,
				path: "/conversations/" + c.id + action.suffix, user: provOfficer, status: 404, errcode: "M_NOT_FOUND"})
		}
	}
	for _, c := range []struct{ name, id string }{{"unknown id", "aaaaaaaaaaaaaaaa"}, {"id with NUL", "a%00b"}, {"id with invalid UTF-8", "%ff"}, {"id too long", strings.Repeat("a", 65)}} {
		add(provBadRequest{name: "admin audit: " + c.name, method: "GET", path: "/conversations/" + c.id + "/audit", user: provAdmin, status: 404, errcode: "M_NOT_FOUND"})
		add(provBadRequest{name: "admin get: " + c.name, method: "GET", path: "/conversations/" + c.id, user: provAdmin, status: 404, errcode: "M_NOT_FOUND"})
	}

	// Closing what is closed already.
	for _, c := range []struct {
		name string
		conv *Conversation
		user id.UserID
	}{{"closed", closed, provOfficer}, {"expired", expired, provOfficer}, {"closed, by an admin", closed, provAdmin}} {
		add(provBadRequest{name: "close again: " + c.name, method: "POST", path: "/conversations/" + c.conv.ID + "/close", user: c.user,
			status: 409, errcode: "NO.SIKKERCHAT.ALREADY_CLOSED"})
	}

	// Create: the body.
	for _, c := range []struct{ name, body, errcode string }{
		{"malformed JSON", `{"label":`, "M_NOT_JSON"},
		{"JSON array", `[]`, "M_NOT_JSON"},
		{"JSON string", `"sak 1"`, "M_NOT_JSON"},
		{"JSON null", `null`, "M_NOT_JSON"},
		{"unknown field", `{"label":"sak 1","officer":"@x:y"}`, "M_NOT_JSON"},
		{"label is a number", `{"label":5}`, "M_NOT_JSON"},
		{"label is an object", `{"label":{"text":"x"}}`, "M_NOT_JSON"},
		{"label is an array", `{"label":["x"]}`, "M_NOT_JSON"},
		{"trailing object", `{"label":"sak 1"}{}`, "M_NOT_JSON"},
		{"trailing garbage", `{"label":"sak 1"} x`, "M_NOT_JSON"},
		{"invalid UTF-8", "{\"label\":\"sak \xff\"}", "M_NOT_JSON"},
		{"raw NUL", "{\"label\":\"sak\x001\"}", "M_NOT_JSON"},
		{"label over 64 characters", `{"label":"` + strings.Repeat("a", 65) + `"}`, "M_INVALID_PARAM"},
		{"label over 64 characters of 4 bytes", `{"label":"` + strings.Repeat("🙂", 65) + `"}`, "M_INVALID_PARAM"},
		{"body over 4 KiB", `{"label":"` + strings.Repeat("a", 5000) + `"}`, "M_TOO_LARGE"},
	} {
		status := 400
		if c.errcode == "M_TOO_LARGE" {
			status = 413
		}
		add(provBadRequest{name: "create: " + c.name, method: "POST", path: "/conversations", user: provOfficer, body: c.body, status: status, errcode: c.errcode})
	}

	// Statistics.
	for _, days := range []string{"abc", "0", "-1", "3661", "5x", "1.5", "1e2", "0x10", "99999999999999999999", "%205", "%00"} {
		add(provBadRequest{name: "stats: days=" + days, method: "GET", path: "/stats", query: "days=" + days, user: provOfficer, status: 400, errcode: "M_INVALID_PARAM"})
	}

	before0 := pb.state()
	names := map[string]bool{}
	for _, row := range rows {
		require.False(t, names[row.name], "duplicate row name %q", row.name)
		names[row.name] = true
		before := pb.state()
		res := pb.send(row)
		after := pb.state()
		t.Run(row.name, func(t *testing.T) {
			body := res.Body.String()
			require.Equal(t, row.status, res.Code, "%s %s: %s", row.method, row.path, body)
			require.True(t, strings.HasPrefix(res.Header().Get("Content-Type"), "application/json"), res.Header().Get("Content-Type"))
			var e struct {
				ErrCode string `json:"errcode"`
				Error   string `json:"error"`
			}
			require.NoError(t, json.Unmarshal(res.Body.Bytes(), &e), body)
			require.Equal(t, row.errcode, e.ErrCode, body)
			require.NotEmpty(t, e.Error)
			require.NotContains(t, body, "SQL", "no database errors to the caller")
			for part := range before {
				if !slices.Contains(row.allow, part) {
					require.Equal(t, before[part], after[part], "the bad request changed %s", part)
				}
			}
		})
	}
	after0 := pb.state()
	for part := range before0 {
		if part != "user" {
			require.Equal(t, before0[part], after0[part], part)
		}
	}
	require.GreaterOrEqual(t, len(rows), 150)
	// Nothing was closed or lost: the open conversations answer as before.
	for _, c := range []*Conversation{open, fresh} {
		got, err := pb.sc.DB.Conversation.Get(context.Background(), c.ID)
		require.NoError(t, err)
		require.Equal(t, c.Status, got.Status)
	}
	res := pb.send(provBadRequest{method: "GET", path: "/conversations/" + open.ID + "/audit", user: provOfficer})
	require.Equal(t, http.StatusOK, res.Code, res.Body.String())
	require.Contains(t, res.Body.String(), `"chain_ok":true`)
	t.Logf("%d bad requests to the provisioning API", len(rows))
}

func (pb *provBridge) send(row provBadRequest) *httptest.ResponseRecorder {
	target := row.path
	if !strings.HasPrefix(target, "/_matrix/") {
		target = provPrefix + target
	}
	var query []string
	if row.query != "-" {
		query = append(query, "user_id="+strings.ReplaceAll(string(row.user), " ", "%20"))
		if row.query != "" {
			query = append(query, row.query)
		}
	}
	if len(query) > 0 {
		target += "?" + strings.Join(query, "&")
	}
	var body *strings.Reader
	if row.body != "" {
		body = strings.NewReader(row.body)
	} else {
		body = strings.NewReader("")
	}
	req := httptest.NewRequest(row.method, target, body)
	switch row.auth {
	case "":
		req.Header.Set("Authorization", "Bearer "+provSecret)
	case "-":
	default:
		req.Header.Set("Authorization", row.auth)
	}
	if row.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	pb.handler.ServeHTTP(rec, req)
	return rec
}
