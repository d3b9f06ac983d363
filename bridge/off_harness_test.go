package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

// The officer side of sikkerchat, whole: a real bridgev2 bridge with
// sikkerchat's connector, bridgev2's command processor and provisioning API,
// and the appservice's Matrix client, talking to a homeserver double
// (offHomeserver) that answers the client-server API the bridge uses and
// remembers rooms, state and events. End-to-bridge encryption is a double
// too (offCrypto), so the tests can read what reached the "homeserver" and
// prove that only ciphertext did.

const (
	offOfficer   = id.UserID("@betjent:example.org")
	offColleague = id.UserID("@kollega:example.org")
	offAdmin     = id.UserID("@leder:example.org")
	offCitizen   = id.UserID("@innbygger:other.example")
	offCmdsOnly  = id.UserID("@kommandoer:example.org")
	offBot       = id.UserID("@sikkerchatbot:example.org")
	offSecret    = "provisioning-secret-for-off-tests"
)

// offEvent is one event the homeserver double holds.
type offEvent struct {
	ID       id.EventID      `json:"event_id"`
	Room     id.RoomID       `json:"room_id"`
	Sender   id.UserID       `json:"sender"`
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key,omitempty"`
	Content  json.RawMessage `json:"content"`
	TS       int64           `json:"origin_server_ts"`
}

// offRequest is one request the homeserver double received.
type offRequest struct {
	Method string
	Path   string // unescaped
	User   id.UserID
	Body   []byte
}

// offHomeserver answers the Matrix client-server API as far as the bridge
// uses it, and records every request.
type offHomeserver struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []offRequest
	events   []*offEvent
	state    map[id.RoomID]map[string]*offEvent // "type\x00state_key"
	rooms    int
	media    map[string][]byte
	creates  []mautrix.ReqCreateRoom
	// fail makes requests whose "METHOD path user" contains one of these
	// answer failStatus (403 unless failWith says otherwise).
	fail       []string
	failStatus int
}

func newOffHomeserver(t *testing.T) *offHomeserver {
	hs := &offHomeserver{state: map[id.RoomID]map[string]*offEvent{}, media: map[string][]byte{}}
	hs.srv = httptest.NewServer(hs)
	t.Cleanup(hs.srv.Close)
	return hs
}

// failOn makes matching requests fail for good (403).
func (hs *offHomeserver) failOn(what ...string) { hs.failWith(http.StatusForbidden, what...) }

// failWith makes matching requests fail with status (a 5xx is "try again").
func (hs *offHomeserver) failWith(status int, what ...string) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.fail, hs.failStatus = what, status
}

func offWriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// addEvent appends an event (and keeps it as current state when it is one).
func (hs *offHomeserver) addEvent(room id.RoomID, sender id.UserID, evtType string, stateKey *string, content json.RawMessage) *offEvent {
	evt := &offEvent{ID: id.EventID(fmt.Sprintf("$offev%d", len(hs.events)+1)), Room: room, Sender: sender, Type: evtType,
		StateKey: stateKey, Content: content, TS: time.Now().UnixMilli()}
	hs.events = append(hs.events, evt)
	if stateKey != nil {
		if hs.state[room] == nil {
			hs.state[room] = map[string]*offEvent{}
		}
		hs.state[room][evtType+"\x00"+*stateKey] = evt
	}
	return evt
}

func (hs *offHomeserver) setMembership(room id.RoomID, sender, user id.UserID, membership event.Membership, reason string) {
	content, _ := json.Marshal(map[string]any{"membership": membership, "reason": reason})
	key := user.String()
	hs.addEvent(room, sender, event.StateMember.Type, &key, content)
}

func (hs *offHomeserver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	user := id.UserID(r.URL.Query().Get("user_id"))
	if user == "" {
		user = offBot
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.requests = append(hs.requests, offRequest{Method: r.Method, Path: r.URL.Path, User: user, Body: body})
	for _, f := range hs.fail {
		if strings.Contains(r.Method+" "+r.URL.Path+" "+user.String(), f) {
			offWriteJSON(w, hs.failStatus, map[string]string{"errcode": "M_FORBIDDEN", "error": "refused by the test"})
			return
		}
	}
	path := r.URL.Path
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	switch {
	case path == "/_matrix/client/versions":
		offWriteJSON(w, 200, map[string]any{"versions": []string{"v1.11"}})
	case strings.HasSuffix(path, "/register"):
		var req struct{ Username string }
		_ = json.Unmarshal(body, &req)
		offWriteJSON(w, 200, map[string]any{"user_id": "@" + req.Username + ":example.org"})
	case strings.HasSuffix(path, "/createRoom"):
		hs.createRoom(w, user, body)
	case strings.HasSuffix(path, "/upload"):
		uri := fmt.Sprintf("mxc://example.org/offmedia%d", len(hs.media)+1)
		hs.media[uri] = body
		offWriteJSON(w, 200, map[string]any{"content_uri": uri})
	case strings.Contains(path, "/download/"):
		i := strings.Index(path, "/download/")
		data, ok := hs.media["mxc://"+path[i+len("/download/"):]]
		if !ok {
			offWriteJSON(w, 404, map[string]string{"errcode": "M_NOT_FOUND", "error": "no such media"})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	case len(parts) >= 5 && parts[3] == "join":
		room := id.RoomID(parts[4])
		hs.setMembership(room, user, user, event.MembershipJoin, "")
		offWriteJSON(w, 200, map[string]any{"room_id": room})
	case len(parts) >= 6 && parts[3] == "rooms":
		hs.roomRequest(w, r.Method, user, id.RoomID(parts[4]), parts[5:], body)
	default:
		offWriteJSON(w, 200, map[string]any{})
	}
}

func (hs *offHomeserver) createRoom(w http.ResponseWriter, user id.UserID, body []byte) {
	var req mautrix.ReqCreateRoom
	if err := json.Unmarshal(body, &req); err != nil {
		offWriteJSON(w, 400, map[string]string{"errcode": "M_BAD_JSON", "error": err.Error()})
		return
	}
	hs.creates = append(hs.creates, req)
	hs.rooms++
	room := id.RoomID(fmt.Sprintf("!offroom%d:example.org", hs.rooms))
	empty := ""
	create, _ := json.Marshal(map[string]any{"creator": user})
	hs.addEvent(room, user, event.StateCreate.Type, &empty, create)
	hs.setMembership(room, user, user, event.MembershipJoin, "")
	var raw struct {
		PowerLevels json.RawMessage `json:"power_level_content_override"`
	}
	_ = json.Unmarshal(body, &raw)
	if raw.PowerLevels != nil {
		hs.addEvent(room, user, event.StatePowerLevels.Type, &empty, raw.PowerLevels)
	}
	for _, evt := range req.InitialState {
		key := ""
		if evt.StateKey != nil {
			key = *evt.StateKey
		}
		hs.addEvent(room, user, evt.Type.Type, &key, evt.Content.VeryRaw)
	}
	if req.Name != "" {
		name, _ := json.Marshal(map[string]string{"name": req.Name})
		hs.addEvent(room, user, event.StateRoomName.Type, &empty, name)
	}
	for _, invitee := range req.Invite {
		hs.setMembership(room, user, invitee, event.MembershipInvite, "")
	}
	offWriteJSON(w, 200, map[string]any{"room_id": room})
}

func (hs *offHomeserver) roomRequest(w http.ResponseWriter, method string, user id.UserID, room id.RoomID, rest []string, body []byte) {
	var target struct {
		UserID id.UserID `json:"user_id"`
		Reason string    `json:"reason"`
	}
	_ = json.Unmarshal(body, &target)
	switch {
	case rest[0] == "join":
		hs.setMembership(room, user, user, event.MembershipJoin, "")
		offWriteJSON(w, 200, map[string]any{"room_id": room})
	case rest[0] == "leave":
		hs.setMembership(room, user, user, event.MembershipLeave, "")
		offWriteJSON(w, 200, map[string]any{})
	case rest[0] == "invite":
		hs.setMembership(room, user, target.UserID, event.MembershipInvite, "")
		offWriteJSON(w, 200, map[string]any{})
	case rest[0] == "kick":
		hs.setMembership(room, user, target.UserID, event.MembershipLeave, target.Reason)
		offWriteJSON(w, 200, map[string]any{})
	case rest[0] == "send" && len(rest) >= 2:
		evt := hs.addEvent(room, user, rest[1], nil, body)
		offWriteJSON(w, 200, map[string]any{"event_id": evt.ID})
	case rest[0] == "state" && len(rest) >= 2 && method == http.MethodPut:
		key := strings.Join(rest[2:], "/")
		evt := hs.addEvent(room, user, rest[1], &key, body)
		offWriteJSON(w, 200, map[string]any{"event_id": evt.ID})
	case rest[0] == "state" && len(rest) >= 2:
		evt := hs.state[room][rest[1]+"\x00"+strings.Join(rest[2:], "/")]
		if evt == nil {
			offWriteJSON(w, 404, map[string]string{"errcode": "M_NOT_FOUND", "error": "Event not found."})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(evt.Content)
	case rest[0] == "members":
		var chunk []*offEvent
		for _, evt := range hs.state[room] {
			if evt.Type == event.StateMember.Type {
				chunk = append(chunk, evt)
			}
		}
		offWriteJSON(w, 200, map[string]any{"chunk": chunk})
	case rest[0] == "messages":
		var chunk []*offEvent
		for i := len(hs.events) - 1; i >= 0; i-- {
			if hs.events[i].Room == room {
				chunk = append(chunk, hs.events[i])
			}
		}
		offWriteJSON(w, 200, map[string]any{"chunk": chunk, "start": "s0"})
	default:
		offWriteJSON(w, 200, map[string]any{})
	}
}

// stateOf is a room's current state event content ("" when it has none).
func (hs *offHomeserver) stateOf(room id.RoomID, evtType, stateKey string) map[string]any {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	evt := hs.state[room][evtType+"\x00"+stateKey]
	if evt == nil {
		return nil
	}
	var out map[string]any
	_ = json.Unmarshal(evt.Content, &out)
	return out
}

// membership is a user's membership in a room as the homeserver has it.
func (hs *offHomeserver) membership(room id.RoomID, user id.UserID) event.Membership {
	m := hs.stateOf(room, event.StateMember.Type, user.String())
	if m == nil {
		return ""
	}
	return event.Membership(m["membership"].(string))
}

// requestsTo lists the recorded requests whose "METHOD path" contains what.
func (hs *offHomeserver) requestsTo(what string) []offRequest {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var out []offRequest
	for _, r := range hs.requests {
		if strings.Contains(r.Method+" "+r.Path, what) {
			out = append(out, r)
		}
	}
	return out
}

// allTraffic is every request body the homeserver received, for checking
// that nothing secret reached it in plaintext.
func (hs *offHomeserver) allTraffic() string {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var sb strings.Builder
	for _, r := range hs.requests {
		sb.WriteString(r.Method + " " + r.Path + "\n")
		sb.Write(r.Body)
		sb.WriteString("\n")
	}
	return sb.String()
}

// offCrypto stands in for the bridge's Megolm: Encrypt keeps the plaintext
// to itself and gives the homeserver a ciphertext reference.
type offCrypto struct {
	mu    sync.Mutex
	plain map[string]offPlain
}

type offPlain struct {
	Type    event.Type
	Content json.RawMessage
}

var _ matrix.Crypto = (*offCrypto)(nil)

func (c *offCrypto) Encrypt(ctx context.Context, roomID id.RoomID, evtType event.Type, content *event.Content) error {
	data, err := json.Marshal(content)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.plain == nil {
		c.plain = map[string]offPlain{}
	}
	ref := fmt.Sprintf("offcipher%d", len(c.plain)+1)
	c.plain[ref] = offPlain{Type: evtType, Content: data}
	content.Parsed = &event.EncryptedEventContent{Algorithm: id.AlgorithmMegolmV1, SessionID: "offsession", MegolmCiphertext: []byte(ref)}
	content.Raw = nil
	return nil
}

func (c *offCrypto) Decrypt(ctx context.Context, evt *event.Event) (*event.Event, error) {
	enc := evt.Content.AsEncrypted()
	c.mu.Lock()
	p, ok := c.plain[string(enc.MegolmCiphertext)]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown session")
	}
	out := &event.Event{ID: evt.ID, RoomID: evt.RoomID, Sender: evt.Sender, Timestamp: evt.Timestamp, Type: p.Type,
		Content: event.Content{VeryRaw: p.Content}}
	out.Mautrix.WasEncrypted = true
	return out, nil
}

func (c *offCrypto) HandleMemberEvent(context.Context, *event.Event) {}
func (c *offCrypto) WaitForSession(context.Context, id.RoomID, id.SenderKey, id.SessionID, time.Duration) bool {
	return true
}
func (c *offCrypto) RequestSession(context.Context, id.RoomID, id.SenderKey, id.SessionID, id.UserID, id.DeviceID) {
}
func (c *offCrypto) ResetSession(context.Context, id.RoomID)               {}
func (c *offCrypto) Init(context.Context) error                            { return nil }
func (c *offCrypto) Start()                                                {}
func (c *offCrypto) Stop()                                                 {}
func (c *offCrypto) Reset(context.Context, bool) error                     { return nil }
func (c *offCrypto) Client() *mautrix.Client                               { return nil }
func (c *offCrypto) ShareKeys(context.Context) error                       { return nil }
func (c *offCrypto) BeeperStreamPublisher() bridgev2.BeeperStreamPublisher { return nil }

// offPurger is the homeserver admin API double.
type offPurger struct {
	mu     sync.Mutex
	purged []id.RoomID
	err    error
}

func (p *offPurger) PurgeRoom(ctx context.Context, roomID id.RoomID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.purged = append(p.purged, roomID)
	return nil
}

// offSyncBuffer is a log sink that tests read while the bridge writes.
type offSyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *offSyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *offSyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// offBridge is the whole officer side over a fresh database.
type offBridge struct {
	t      *testing.T
	ctx    context.Context
	sc     *Connector
	br     *bridgev2.Bridge
	mc     *matrix.Connector
	hs     *offHomeserver
	crypto *offCrypto
	purger *offPurger
	log    *offSyncBuffer
	// sqlitePath is the database file ("" on PostgreSQL).
	sqlitePath string
	// dm is the officers' encrypted direct chat with the bot.
	dm       id.RoomID
	commands int
}

// newOffBridge builds the bridge; network adjusts sikkerchat's config.
func newOffBridge(t *testing.T, network func(*Config)) *offBridge {
	t.Helper()
	hs := newOffHomeserver(t)
	raw, sqlitePath := testdb.New(t)
	var netCfg Config
	require.NoError(t, yaml.Unmarshal([]byte(ExampleConfig), &netCfg))
	netCfg.MasterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	netCfg.KeyDir = t.TempDir()
	if network != nil {
		network(&netCfg)
	}
	sc := &Connector{Config: netCfg}
	require.NoError(t, sc.ValidateConfig())

	user, admin, commandsOnly := bridgeconfig.PermissionLevelUser, bridgeconfig.PermissionLevelAdmin, bridgeconfig.PermissionLevelCommands
	relay := bridgeconfig.PermissionLevelRelay
	cfg := &bridgeconfig.Config{
		Homeserver: bridgeconfig.HomeserverConfig{Address: hs.srv.URL, Domain: "example.org"},
		AppService: bridgeconfig.AppserviceConfig{
			ID: "sikkerchat", Bot: bridgeconfig.BotUserConfig{Username: "sikkerchatbot"},
			ASToken: "as-token", HSToken: "hs-token", UsernameTemplate: "sikkerchat_{{.}}",
		},
		Bridge: bridgeconfig.BridgeConfig{CommandPrefix: "!sc", Permissions: bridgeconfig.PermissionConfig{
			"*": &relay, "example.org": &user, offAdmin.String(): &admin, offCmdsOnly.String(): &commandsOnly,
		}},
		Provisioning: bridgeconfig.ProvisioningConfig{SharedSecret: offSecret},
		Encryption:   bridgeconfig.EncryptionConfig{Allow: true, Default: true, Require: true, PickleKey: "off-pickle-key"},
	}
	logs := &offSyncBuffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel)
	mc := matrix.NewConnector(cfg)
	br := bridgev2.NewBridge("sikkerchat", raw, log, &cfg.Bridge, mc, sc, commands.NewProcessor)
	ctx := log.WithContext(context.Background())
	bgCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	br.BackgroundCtx = bgCtx
	require.NoError(t, br.DB.Upgrade(ctx))
	require.NoError(t, sc.DB.Upgrade(ctx))
	require.NoError(t, mc.StateStore.Upgrade(ctx))
	// The tables the real crypto helper makes at start (Megolm sessions among them).
	cryptoStore := matrix.NewSQLCryptoStore(br.DB.Database, dbutil.NoopLogger, "sikkerchat", offBot, "@sikkerchat_%:example.org", "off-pickle-key")
	require.NoError(t, cryptoStore.DB.Upgrade(ctx))
	crypto := &offCrypto{}
	mc.Crypto = crypto
	mc.SpecVersions = &mautrix.RespVersions{}
	mc.AS.DefaultHTTPRetries = 0
	mc.Bot.DefaultHTTPRetries = 0
	mc.Provisioning.Init()
	registerProvisioning(sc)
	sc.gateCommands() // as Start does
	purger := &offPurger{}
	sc.Purger = purger

	ob := &offBridge{t: t, ctx: ctx, sc: sc, br: br, mc: mc, hs: hs, crypto: crypto, purger: purger, log: logs, sqlitePath: sqlitePath, dm: "!offdm:example.org"}
	ob.encryptedRoom(ob.dm)
	return ob
}

// encryptedRoom makes a room the bot is in and knows to be encrypted.
func (ob *offBridge) encryptedRoom(room id.RoomID) {
	require.NoError(ob.t, ob.mc.StateStore.SetEncryptionEvent(ob.ctx, room, &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}))
	require.NoError(ob.t, ob.mc.StateStore.SetMembership(ob.ctx, room, offBot, event.MembershipJoin))
}

// offMessage is a message event as the officers' clients read it (decrypted).
type offMessage struct {
	ID        id.EventID
	Sender    id.UserID
	Type      string
	Encrypted bool
	Content   map[string]any
}

func (m offMessage) body() string {
	s, _ := m.Content["body"].(string)
	return s
}

// replyTo is the event a message answers ("" if none).
func (m offMessage) replyTo() id.EventID {
	rel, _ := m.Content["m.relates_to"].(map[string]any)
	in, _ := rel["m.in_reply_to"].(map[string]any)
	evt, _ := in["event_id"].(string)
	return id.EventID(evt)
}

// messages lists a room's non-state events, decrypted.
func (ob *offBridge) messages(room id.RoomID) []offMessage {
	ob.hs.mu.Lock()
	events := append([]*offEvent(nil), ob.hs.events...)
	ob.hs.mu.Unlock()
	var out []offMessage
	for _, evt := range events {
		if evt.Room != room || evt.StateKey != nil {
			continue
		}
		msg := offMessage{ID: evt.ID, Sender: evt.Sender, Type: evt.Type}
		content := evt.Content
		if evt.Type == event.EventEncrypted.Type {
			var enc struct {
				Ciphertext string `json:"ciphertext"`
			}
			require.NoError(ob.t, json.Unmarshal(evt.Content, &enc))
			ob.crypto.mu.Lock()
			plain, ok := ob.crypto.plain[enc.Ciphertext]
			ob.crypto.mu.Unlock()
			require.True(ob.t, ok, "ciphertext %s was not made by the bridge", enc.Ciphertext)
			msg.Type, msg.Encrypted, content = plain.Type.Type, true, plain.Content
		}
		require.NoError(ob.t, json.Unmarshal(content, &msg.Content))
		out = append(out, msg)
	}
	return out
}

// command runs `!sc <text>` from a user in a room, as bridgev2 hands it to
// the processor, and returns what the bot answered there.
func (ob *offBridge) command(user id.UserID, room id.RoomID, text string) []offMessage {
	ob.t.Helper()
	before := len(ob.messages(room))
	ob.commands++
	u, err := ob.br.GetUserByMXID(ob.ctx, user)
	require.NoError(ob.t, err)
	eventID := id.EventID(fmt.Sprintf("$offcmd%d", ob.commands))
	// Each event gets its own logger, as bridgev2 gives it: the processor
	// adds the command's name to the logger in the context.
	log := zerolog.Ctx(ob.ctx).With().Logger()
	ob.br.Commands.Handle(log.WithContext(ob.ctx), room, eventID, u, text, "")
	answers := ob.messages(room)[before:]
	var replies []offMessage
	for _, m := range answers {
		if m.Sender == offBot && m.replyTo() == eventID {
			replies = append(replies, m)
		}
	}
	return replies
}

// reply runs a command and returns the one notice that answers it.
func (ob *offBridge) reply(user id.UserID, room id.RoomID, text string) offMessage {
	ob.t.Helper()
	replies := ob.command(user, room, text)
	require.Len(ob.t, replies, 1, "one answer to %q", text)
	require.Equal(ob.t, "m.notice", replies[0].Content["msgtype"])
	require.True(ob.t, replies[0].Encrypted, "the bot answers encrypted")
	return replies[0]
}

// offCreated is what `!sc new` gave the officer.
type offCreated struct {
	conv  *Conversation
	room  id.RoomID
	url   string
	code  string
	token string
	reply offMessage
}

// newConversation runs `!sc new [label]` in the officer's direct chat.
func (ob *offBridge) newConversation(officer id.UserID, label string) offCreated {
	ob.t.Helper()
	msg := ob.reply(officer, ob.dm, strings.TrimSpace("new "+label))
	// The ghost's join and the first notice follow the answer in the background.
	require.True(ob.t, ob.sc.WaitBackground(time.Minute))
	field, ok := msg.Content["no.sikkerchat.invite"].(map[string]any)
	require.True(ob.t, ok, "the reply carries no.sikkerchat.invite: %s", msg.body())
	created := offCreated{room: id.RoomID(field["room_id"].(string)), url: field["url"].(string), code: field["code"].(string), reply: msg}
	_, created.token, _ = strings.Cut(created.url, "#")
	conv, err := ob.sc.DB.Conversation.Get(ob.ctx, field["conversation_id"].(string))
	require.NoError(ob.t, err)
	require.NotNil(ob.t, conv)
	created.conv = conv
	return created
}

// conv reads a conversation as stored now.
func (ob *offBridge) conv(conversationID string) *Conversation {
	ob.t.Helper()
	conv, err := ob.sc.DB.Conversation.Get(ob.ctx, conversationID)
	require.NoError(ob.t, err)
	return conv
}

// audit lists a conversation's audit rows, oldest first.
func (ob *offBridge) audit(conversationID string) []*AuditRow {
	ob.t.Helper()
	rows, err := ob.sc.Audit.ForConversation(ob.ctx, conversationID)
	require.NoError(ob.t, err)
	return rows
}

func (ob *offBridge) lastAudit(conversationID string) *AuditRow {
	ob.t.Helper()
	rows := ob.audit(conversationID)
	require.NotEmpty(ob.t, rows)
	return rows[len(rows)-1]
}

// joinGuest opens the conversation as the citizen does and returns the
// session, once the room has been told (the bridge tells it in the background).
func (ob *offBridge) joinGuest(created offCreated) string {
	ob.t.Helper()
	session, _, err := ob.sc.Guests.Join(ob.ctx, created.token, created.code)
	require.NoError(ob.t, err)
	require.Eventually(ob.t, func() bool {
		return ob.hs.stateOf(created.room, "no.sikkerchat.conversation", "")["status"] == "active"
	}, 10*time.Second, 5*time.Millisecond)
	return session
}

func offCount(list []string, what string) (n int) {
	for _, s := range list {
		if s == what {
			n++
		}
	}
	return n
}

// setState changes a room's state on the homeserver behind the bridge's back
// (an older sikkerchat, a homeserver admin).
func (hs *offHomeserver) setState(room id.RoomID, sender id.UserID, evtType, stateKey string, content any) {
	data, _ := json.Marshal(content)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.addEvent(room, sender, evtType, &stateKey, data)
}

// inject puts an event into a room as if someone else had sent it.
func (hs *offHomeserver) inject(room id.RoomID, sender id.UserID, evtType string, content any) id.EventID {
	data, _ := json.Marshal(content)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.addEvent(room, sender, evtType, nil, data).ID
}
