package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/appservice"
	"github.com/sikkerchat/sikkerchat/internal/metasim"
	"github.com/sikkerchat/sikkerchat/internal/testdb"
	"github.com/sikkerchat/sikkerchat/meta"
)

const (
	socPage    = "106512345678901"
	socIG      = "17841400000000001"
	socToken   = "EAAG-page-token-for-tests"
	socSecret  = "0123456789abcdef0123456789abcdef"
	socAppID   = "1517776481860111"
	socVerify  = "verify-token-of-sixteen"
	socOfficer = id.UserID("@patrulje:example.org")
)

// socRoom is the homeserver as the patrol inbox sees it: it records rooms,
// what each sender sent, reads and state events, and can be made to fail.
type socRoom struct {
	mu      sync.Mutex
	rooms   map[id.RoomID]SocialRoomSpec
	sent    []socSent
	reads   []socRead
	states  []*appservice.SocialState
	notices []string
	told    []socTold
	files   map[id.ContentURIString][]byte
	invited []id.UserID
	failing bool
	// uploadLimit, when set, is the homeserver's upload limit (M_TOO_LARGE above it).
	uploadLimit int
	// refuse fails every send whose text contains it (a broken event).
	refuse string
}

// socTold is a notice to the officers' own rooms with the bot.
type socTold struct {
	Officers []id.UserID
	Text     string
}

type socSent struct {
	Room    id.RoomID
	Sender  string
	TxnID   string
	Type    event.Type
	Content *event.Content
	ID      id.EventID
}

func (s socSent) body() string {
	if msg, ok := s.Content.Parsed.(*event.MessageEventContent); ok {
		return msg.Body
	}
	return ""
}

type socRead struct {
	Room   id.RoomID
	Sender string
	Event  id.EventID
}

// errHomeserverDown is what mautrix returns when the homeserver cannot be reached.
var errHomeserverDown = mautrix.HTTPError{Message: "homeserver unreachable (test)", WrappedError: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}

// errBrokenEvent is a homeserver's answer to one request that keeps failing
// while every other request succeeds.
var errBrokenEvent = mautrix.HTTPError{Response: &http.Response{StatusCode: http.StatusInternalServerError},
	RespError: &mautrix.RespError{ErrCode: "M_UNKNOWN", Err: "Internal server error", StatusCode: http.StatusInternalServerError}}

func (r *socRoom) CreateSocialRoom(ctx context.Context, spec SocialRoomSpec) (id.RoomID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return "", errHomeserverDown
	}
	room := id.RoomID(fmt.Sprintf("!social%d:example.org", len(r.rooms)+1))
	if r.rooms == nil {
		r.rooms = map[id.RoomID]SocialRoomSpec{}
	}
	r.rooms[room] = spec
	r.states = append(r.states, spec.State)
	return room, nil
}

func (r *socRoom) InviteOfficers(ctx context.Context, roomID id.RoomID, officers []id.UserID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return errHomeserverDown
	}
	r.invited = append(r.invited, officers...)
	return nil
}

func (r *socRoom) SendAs(ctx context.Context, roomID id.RoomID, ghostID, txnID string, evtType event.Type, content *event.Content) (id.EventID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return "", errHomeserverDown
	}
	if msg, ok := content.Parsed.(*event.MessageEventContent); ok && r.refuse != "" && strings.Contains(msg.Body, r.refuse) {
		return "", errBrokenEvent
	}
	// No transaction ID de-duplication: Dendrite forgets the IDs of requests
	// whose client went away, so the bridge must not rely on it.
	evtID := id.EventID(fmt.Sprintf("$ev%d", len(r.sent)+1))
	r.sent = append(r.sent, socSent{roomID, ghostID, txnID, evtType, content, evtID})
	return evtID, nil
}

func (r *socRoom) Upload(ctx context.Context, roomID id.RoomID, ghostID, name, mimeType string, data []byte) (*event.Content, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return nil, errHomeserverDown
	}
	if r.uploadLimit > 0 && len(data) > r.uploadLimit {
		return nil, mautrix.HTTPError{Response: &http.Response{StatusCode: http.StatusRequestEntityTooLarge},
			RespError: &mautrix.RespError{ErrCode: "M_TOO_LARGE", Err: "File too large", StatusCode: http.StatusRequestEntityTooLarge}}
	}
	uri := id.ContentURIString(fmt.Sprintf("mxc://example.org/f%d", len(r.files)+1))
	if r.files == nil {
		r.files = map[id.ContentURIString][]byte{}
	}
	r.files[uri] = bytes.Clone(data)
	return &event.Content{Parsed: &event.MessageEventContent{MsgType: event.MessageType(matrixMsgType(mimeType)), Body: name, FileName: name,
		URL: uri, Info: &event.FileInfo{MimeType: mimeType, Size: len(data)}}}, nil
}

func (r *socRoom) FindSentAs(ctx context.Context, roomID id.RoomID, ghostID, txnID string) (id.EventID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return "", errHomeserverDown
	}
	for _, s := range r.sent {
		if s.Room == roomID && s.Sender == ghostID && s.TxnID == txnID {
			return s.ID, nil
		}
	}
	return "", nil
}

func (r *socRoom) MarkRead(ctx context.Context, roomID id.RoomID, ghostID string, eventID id.EventID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads = append(r.reads, socRead{roomID, ghostID, eventID})
	return nil
}

func (r *socRoom) SetSocialState(ctx context.Context, roomID id.RoomID, state *appservice.SocialState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, state)
	return nil
}

func (r *socRoom) SetStateEvent(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) error {
	return nil
}

func (r *socRoom) SocialNotice(ctx context.Context, roomID id.RoomID, markdown string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notices = append(r.notices, markdown)
}

func (r *socRoom) NotifyOfficers(ctx context.Context, officers []id.UserID, markdown string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.told = append(r.told, socTold{officers, markdown})
}

func (r *socRoom) Download(ctx context.Context, uri id.ContentURIString, file *event.EncryptedFileInfo) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, ok := r.files[uri]
	if !ok {
		return nil, errors.New("no such media")
	}
	return data, nil
}

func (r *socRoom) GhostMXID(ghostID string) id.UserID {
	return id.UserID("@sikkerchat_" + ghostID + ":example.org")
}

func (r *socRoom) ForgetSocialRoom(ctx context.Context, socialID string, roomID id.RoomID, ghostID string) {
}

// sentBy lists what a sender sent, in order.
func (r *socRoom) sentBy(sender string) []socSent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []socSent
	for _, s := range r.sent {
		if s.Sender == sender {
			out = append(out, s)
		}
	}
	return out
}

func (r *socRoom) setFailing(f bool) {
	r.mu.Lock()
	r.failing = f
	r.mu.Unlock()
}

// socBridge is the patrol inbox over a fresh database, the recording
// homeserver and the Meta simulator.
type socBridge struct {
	t     *testing.T
	ctx   context.Context
	sc    *Connector
	s     *Social
	room  *socRoom
	sim   *metasim.Sim
	graph *httptest.Server
	hook  http.Handler
	logs  *bytes.Buffer
	logMu *sync.Mutex
	// offset moves the inbox's clock (nanoseconds).
	offset atomic.Int64
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func newSocBridge(t *testing.T, change func(*MetaConfig)) *socBridge {
	t.Helper()
	cfg := validConfig(t)
	cfg.KeyDir = t.TempDir()
	cfg.Meta = MetaConfig{
		AppSecret: socSecret, AppID: socAppID, VerifyToken: socVerify, Listen: "127.0.0.1:0",
		GraphURL: "http://placeholder", APIVersion: "v25.0",
		Pages:    []MetaPage{{PageID: socPage, AccessToken: socToken, InstagramAccountID: socIG}},
		Officers: []id.UserID{socOfficer}, IdleClose: "168h", Retention: "2160h",
		NewRoomBudget: 30, NewRoomWindow: "1h", ReplayWindow: "36h",
	}
	if change != nil {
		change(&cfg.Meta)
	}
	raw, _ := testdb.New(t)
	logs, mu := &bytes.Buffer{}, &sync.Mutex{}
	log := zerolog.New(lockedWriter{mu, logs}).Level(zerolog.TraceLevel)
	ctx := log.WithContext(context.Background())
	sc, err := NewDetached(ctx, cfg, raw, &infSide{})
	require.NoError(t, err)
	room := &socRoom{}
	sc.Social = newSocial(sc, room)
	sc.Social.log = log
	sim := metasim.New(metasim.Config{
		AppSecret: socSecret, AppID: socAppID, HumanAgent: cfg.Meta.HumanAgent,
		Accounts:    []metasim.Account{{ID: socPage, Token: socToken}, {ID: socIG, Instagram: true, Token: socToken}},
		RetryDelays: []time.Duration{0, 20 * time.Millisecond},
	})
	t.Cleanup(sim.Close)
	graph := httptest.NewServer(sim.Handler())
	t.Cleanup(graph.Close)
	sc.Social.graph.GraphURL = graph.URL
	b := &socBridge{t: t, ctx: ctx, sc: sc, s: sc.Social, room: room, sim: sim, graph: graph, hook: sc.Social.Handler(), logs: logs, logMu: mu}
	sc.Social.now = func() time.Time { return time.Now().Add(time.Duration(b.offset.Load())) }
	return b
}

// later moves the inbox's clock forward (retries and budgets come due).
func (b *socBridge) later(d time.Duration) { b.offset.Add(int64(d)) }

// allowCDN lets the inbox fetch attachments from a test server, as the local
// stack's config lets it fetch from the Meta simulator.
func (b *socBridge) allowCDN(origin string) {
	b.s.media = &meta.MediaFetcher{Origins: []string{origin}}
}

func (b *socBridge) logText() string {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.logs.String()
}

// post sends a webhook delivery the way Meta does.
func (b *socBridge) post(body []byte, signature string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, webhookPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if signature != "" {
		req.Header.Set(meta.SignatureHeader, signature)
	}
	rec := httptest.NewRecorder()
	b.hook.ServeHTTP(rec, req)
	return rec
}

func (b *socBridge) postSigned(body string) *httptest.ResponseRecorder {
	return b.post([]byte(body), meta.Sign(socSecret, []byte(body)))
}

// stored counts the deliveries kept and the events waiting in their lanes.
func (b *socBridge) stored() int {
	pending, err := b.sc.DB.MetaDelivery.Pending(b.ctx, 1000)
	require.NoError(b.t, err)
	waiting, _, err := b.sc.DB.MetaEvent.Count(b.ctx)
	require.NoError(b.t, err)
	return len(pending) + waiting
}

// drain handles what is stored, as the running inbox does after a delivery.
func (b *socBridge) drain() bool { return b.s.drainInbox(b.ctx) }

func messengerText(person, mid, text string, ts int64) string {
	return fmt.Sprintf(`{"object":"page","entry":[{"id":%q,"time":%d,"messaging":[{"sender":{"id":%q},"recipient":{"id":%q},"timestamp":%d,"message":{"mid":%q,"text":%q}}]}]}`,
		socPage, ts, person, socPage, ts, mid, text)
}

// Meta's subscription check: the challenge back as plain text for the right
// token, 403 for anything else.
func TestWebhookSubscriptionCheck(t *testing.T) {
	b := newSocBridge(t, nil)
	get := func(q string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		b.hook.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, webhookPath+"?"+q, nil))
		return rec
	}
	rec := get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=" + socVerify)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "1158201444", rec.Body.String())
	require.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
	for _, q := range []string{
		"hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=wrong",
		"hub.mode=unsubscribe&hub.challenge=1158201444&hub.verify_token=" + socVerify,
		"hub.mode=subscribe&hub.challenge=%3Cscript%3E&hub.verify_token=" + socVerify,
		"",
	} {
		rec = get(q)
		require.Equal(t, http.StatusForbidden, rec.Code, q)
		require.JSONEq(t, `{"errcode":"NO.SIKKERCHAT.META_VERIFY_FAILED","error":"Verification failed"}`, rec.Body.String())
	}
}

// Every delivery gets its exact status; only a good one is kept, and it is
// kept before Meta hears 200.
func TestWebhookDeliveryStatuses(t *testing.T) {
	b := newSocBridge(t, nil)
	good := messengerText("7010000000000001", "m_good", "hei", time.Now().UnixMilli())
	stale := messengerText("7010000000000002", "m_old", "gammel", time.Now().Add(-37*time.Hour).UnixMilli())
	for _, tc := range []struct {
		name      string
		body      []byte
		signature string
		status    int
		errcode   string
		kept      int
	}{
		{"good signature", []byte(good), meta.Sign(socSecret, []byte(good)), 200, "", 1},
		{"replayed delivery (kept once)", []byte(good), meta.Sign(socSecret, []byte(good)), 200, "", 0},
		{"wrong signature", []byte(good), meta.Sign("another-app-secret", []byte(good)), 401, "NO.SIKKERCHAT.META_SIGNATURE_INVALID", 0},
		{"missing signature", []byte(good), "", 401, "NO.SIKKERCHAT.META_SIGNATURE_MISSING", 0},
		{"sha1 only", []byte(good), "sha1=" + strings.Repeat("a", 40), 401, "NO.SIKKERCHAT.META_SIGNATURE_INVALID", 0},
		{"body changed after signing", []byte(strings.Replace(good, "hei", "hai", 1)), meta.Sign(socSecret, []byte(good)), 401, "NO.SIKKERCHAT.META_SIGNATURE_INVALID", 0},
		{"signed but not JSON", []byte("{nope"), meta.Sign(socSecret, []byte("{nope")), 400, "NO.SIKKERCHAT.META_MALFORMED", 0},
		{"signed but another object", []byte(`{"object":"user","entry":[]}`), meta.Sign(socSecret, []byte(`{"object":"user","entry":[]}`)), 400, "NO.SIKKERCHAT.META_MALFORMED", 0},
		{"oversized body", bytes.Repeat([]byte(" "), maxDelivery+1), "sha256=" + strings.Repeat("0", 64), 413, "NO.SIKKERCHAT.TOO_LARGE", 0},
		{"signature not hex", []byte(good), "sha256=" + strings.Repeat("z", 64), 401, "NO.SIKKERCHAT.META_SIGNATURE_INVALID", 0},
		{"signature too short", []byte(good), "sha256=abcdef", 401, "NO.SIKKERCHAT.META_SIGNATURE_INVALID", 0},
		{"oversized body without a signature", bytes.Repeat([]byte(" "), maxDelivery+1), "", 401, "NO.SIKKERCHAT.META_SIGNATURE_MISSING", 0},
		{"events older than the replay window", []byte(stale), meta.Sign(socSecret, []byte(stale)), 400, "NO.SIKKERCHAT.META_STALE", 0},
	} {
		before := b.stored()
		rec := b.post(tc.body, tc.signature)
		require.Equal(t, tc.status, rec.Code, tc.name)
		if tc.errcode == "" {
			require.Equal(t, "EVENT_RECEIVED", rec.Body.String(), tc.name)
		} else {
			var body map[string]string
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), tc.name)
			require.Equal(t, tc.errcode, body["errcode"], tc.name)
		}
		require.Equal(t, before+tc.kept, b.stored(), tc.name)
		require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	}
	// Nothing else is served.
	for _, path := range []string{"/", "/_matrix/app/v1/transactions/1", "/meta/webhook/x", "/metrics"} {
		rec := httptest.NewRecorder()
		b.hook.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusNotFound, rec.Code, path)
	}
	rec := httptest.NewRecorder()
	b.hook.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, webhookPath, strings.NewReader(good)))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	// The stored delivery is sealed: not a byte of the message in the database.
	pending, err := b.sc.DB.MetaDelivery.Pending(b.ctx, 10)
	require.NoError(t, err)
	for _, d := range pending {
		require.NotContains(t, string(d.Sealed), "hei")
		require.NotContains(t, string(d.Sealed), "7010000000000001")
	}

	// Meta sent the same delivery twice: the person's message reaches the room once.
	require.False(t, b.drain())
	require.Equal(t, 0, b.stored())
	texts := b.room.sentBy(b.onlyConversation().GhostID)
	require.Len(t, texts, 1)
	require.Equal(t, "hei", texts[0].body())
}

func (b *socBridge) conversations() []*SocialConversation {
	all, err := b.sc.DB.Social.ListWithRoom(b.ctx)
	require.NoError(b.t, err)
	return all
}

func (b *socBridge) onlyConversation() *SocialConversation {
	all := b.conversations()
	require.Len(b.t, all, 1)
	return all[0]
}

// A first message opens a room with the person, the page and the patrol
// officers in it, its state event, and the person's ID only sealed.
func TestFirstMessageOpensAnEncryptedRoom(t *testing.T) {
	b := newSocBridge(t, nil)
	now := time.Now().UnixMilli()
	require.Equal(t, 200, b.postSigned(messengerText("7010000000000001", "m_1", "Jeg trenger hjelp", now)).Code)
	require.False(t, b.drain())
	th := b.onlyConversation()
	spec := b.room.rooms[th.RoomID]
	require.Equal(t, []id.UserID{socOfficer}, spec.Officers)
	require.Equal(t, []id.UserID{socOfficer}, b.room.invited, "invited once the room is known")
	require.Regexp(t, `^Messenger: Messenger-bruker \d{4}$`, spec.Name)
	require.Equal(t, "page"+socPage, spec.PageID)
	require.Equal(t, "messenger", spec.State.Platform)
	require.Equal(t, "open", spec.State.Status)
	require.Equal(t, socPage, th.AccountID)
	require.NotContains(t, string(th.PersonSealed), "7010000000000001")
	person, err := b.s.person(b.ctx, th)
	require.NoError(t, err)
	require.Equal(t, "7010000000000001", person)
	require.Equal(t, time.UnixMilli(now), th.LastInboundAt)
	require.Equal(t, []string{AuditSocialCreate}, auditActionsOf(t, b.sc, th.ID))

	// The same person again: the same room. Someone else: a room of their own.
	b.postSigned(messengerText("7010000000000001", "m_2", "Er dere der?", now+1000))
	b.postSigned(messengerText("7010000000000002", "m_3", "Hei", now+2000))
	require.False(t, b.drain())
	require.Len(t, b.conversations(), 2)
	require.Equal(t, []string{"Jeg trenger hjelp", "Er dere der?"}, bodies(b.room.sentBy(th.GhostID)))
}

func bodies(sent []socSent) []string {
	var out []string
	for _, s := range sent {
		out = append(out, s.body())
	}
	return out
}

func auditActionsOf(t *testing.T, sc *Connector, conversationID string) []string {
	t.Helper()
	rows, err := sc.Audit.ForConversation(context.Background(), conversationID)
	require.NoError(t, err)
	var out []string
	for _, r := range rows {
		out = append(out, r.Action)
	}
	return out
}

// One delivery may carry many entries and events, with fields sikkerchat
// does not know: every event is handled, in order.
func TestBatchedDeliveryWithUnknownFields(t *testing.T) {
	b := newSocBridge(t, nil)
	now := time.Now().UnixMilli()
	body := fmt.Sprintf(`{"object":"page","new_top_level":{"x":1},"entry":[
		{"id":%[1]q,"time":%[2]d,"messaging":[
			{"sender":{"id":"p1"},"recipient":{"id":%[1]q},"timestamp":%[2]d,"message":{"mid":"m_a","text":"en","future_field":[1,2]}},
			{"sender":{"id":"p1"},"recipient":{"id":%[1]q},"timestamp":%[3]d,"message":{"mid":"m_b","text":"to"}}]},
		{"id":%[1]q,"time":%[2]d,"messaging":[
			{"sender":{"id":"p2"},"recipient":{"id":%[1]q},"timestamp":%[2]d,"message":{"mid":"m_c","text":"tre"}},
			{"sender":{"id":"p2"},"recipient":{"id":%[1]q},"timestamp":%[2]d,"pass_thread_control":{"new_owner_app_id":"1"}}]}]}`,
		socPage, now, now+1)
	require.Equal(t, 200, b.postSigned(body).Code)
	require.False(t, b.drain())
	require.Equal(t, []string{"en", "to"}, bodies(b.room.sentBy(b.conversationOf("p1").GhostID)))
	require.Equal(t, []string{"tre"}, bodies(b.room.sentBy(b.conversationOf("p2").GhostID)))
	require.Len(t, b.conversations(), 2)
}

// conversationOf is the open conversation of a person.
func (b *socBridge) conversationOf(person string) *SocialConversation {
	b.t.Helper()
	for _, c := range b.conversations() {
		if p, _ := b.s.person(b.ctx, c); p == person {
			return c
		}
	}
	b.t.Fatalf("no conversation of %s", person)
	return nil
}

// While the homeserver is away, deliveries wait (sealed) and nothing is lost;
// when it is back they reach the room once each, in order.
func TestDeliveriesWaitForTheHomeserver(t *testing.T) {
	b := newSocBridge(t, nil)
	now := time.Now().UnixMilli()
	b.room.setFailing(true)
	for i := range 3 {
		require.Equal(t, 200, b.postSigned(messengerText("p1", fmt.Sprintf("m_%d", i), fmt.Sprintf("melding %d", i), now+int64(i))).Code)
	}
	require.True(t, b.drain(), "must be tried again")
	// An outage longer than any number of tries loses nothing: the tries
	// while nothing gets through are not the events' own failures.
	for range 3 * laneMaxAttempts {
		b.later(laneMaxBackoff)
		require.True(t, b.drain())
	}
	require.Equal(t, 3, b.stored())
	b.room.setFailing(false)
	b.later(laneMaxBackoff)
	require.False(t, b.drain())
	require.Equal(t, 0, b.stored())
	th := b.onlyConversation()
	require.Equal(t, []string{"melding 0", "melding 1", "melding 2"}, bodies(b.room.sentBy(th.GhostID)))
}

// What the page wrote in Meta's own tools shows in the room as the page; an
// echo of what the bridge itself sent does not show twice.
func TestEchoesFromMetasOwnToolsShowAsThePage(t *testing.T) {
	b := newSocBridge(t, nil)
	now := time.Now().UnixMilli()
	b.postSigned(messengerText("p1", "m_1", "hei", now))
	require.False(t, b.drain())
	th := b.onlyConversation()
	echo := func(mid, text, appID, metadata string) string {
		md := ""
		if metadata != "" {
			md = fmt.Sprintf(`,"metadata":%q`, metadata)
		}
		return fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":%[1]q},"recipient":{"id":"p1"},"timestamp":%[2]d,"message":{"is_echo":true,"app_id":%[3]s,"mid":%[4]q,"text":%[5]q%[6]s}}]}]}`,
			socPage, now+5, appID, mid, text, md)
	}
	b.postSigned(echo("m_suite", "Svar fra Business Suite", "263902037430900", ""))
	b.postSigned(echo("m_ours", "Svar fra sikkerchat", socAppID, ""))
	require.False(t, b.drain())
	page := b.room.sentBy(pageGhostID(socPage))
	require.Equal(t, []string{"Svar fra Business Suite"}, bodies(page))
	require.Len(t, b.room.sentBy(th.GhostID), 1)
}

// A read receipt shows on the newest message the unit sent up to it; a
// postback is shown as what the person tapped.
func TestReadsAndPostbacks(t *testing.T) {
	b := newSocBridge(t, nil)
	now := time.Now().UnixMilli()
	b.postSigned(messengerText("p1", "m_1", "hei", now))
	require.False(t, b.drain())
	th := b.onlyConversation()
	// Two replies from the page (Meta's own tools), then a read up to the first.
	for i, text := range []string{"første", "andre"} {
		b.postSigned(fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":%[1]q},"recipient":{"id":"p1"},"timestamp":%[2]d,"message":{"is_echo":true,"app_id":1,"mid":"m_out%[3]d","text":%[4]q}}]}]}`,
			socPage, now+int64(10+i*10), i, text))
	}
	b.postSigned(fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":"p1"},"recipient":{"id":%[1]q},"timestamp":%[2]d,"read":{"watermark":%[3]d}}]}]}`,
		socPage, now+30, now+15))
	b.postSigned(fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":"p1"},"recipient":{"id":%[1]q},"timestamp":%[2]d,"postback":{"mid":"m_pb","title":"Snakk med politiet","payload":"X"}}]}]}`,
		socPage, now+40))
	require.False(t, b.drain())
	page := b.room.sentBy(pageGhostID(socPage))
	require.Len(t, page, 2)
	require.Len(t, b.room.reads, 1)
	require.Equal(t, page[0].ID, b.room.reads[0].Event, "read up to the watermark: the first reply")
	require.Equal(t, th.GhostID, b.room.reads[0].Sender)
	require.Equal(t, []string{"hei", "[Trykket på «Snakk med politiet»]"}, bodies(b.room.sentBy(th.GhostID)))
}

// Attachments are fetched at once and uploaded to the room; one Meta no
// longer serves becomes a line saying so, not a silent gap.
func TestAttachmentsAreFetchedAtOnce(t *testing.T) {
	b := newSocBridge(t, nil)
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00")
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/expired" {
			http.Error(w, "URL signature expired", http.StatusForbidden)
			return
		}
		_, _ = w.Write(png)
	}))
	defer cdn.Close()
	b.allowCDN(cdn.URL)
	now := time.Now().UnixMilli()
	b.postSigned(fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":"p1"},"recipient":{"id":%[1]q},"timestamp":%[2]d,"message":{"mid":"m_img","text":"se her","attachments":[
		{"type":"image","payload":{"url":%[3]q}},{"type":"image","payload":{"url":%[4]q}},{"type":"fallback","payload":{"title":"lenke"}}]}}]}]}`,
		socPage, now, cdn.URL+"/a.jpg?oh=sig", cdn.URL+"/expired"))
	require.False(t, b.drain())
	th := b.onlyConversation()
	sent := b.room.sentBy(th.GhostID)
	require.Len(t, sent, 3)
	require.Equal(t, "se her", sent[0].body())
	require.Equal(t, "bilde-1.png", sent[1].body())
	msg := sent[1].Content.Parsed.(*event.MessageEventContent)
	require.Equal(t, png, b.room.files[msg.URL])
	require.Equal(t, "[fallback som ikke kan vises her]", sent[2].body())
	notices := b.room.sentBy("")
	require.Len(t, notices, 1, "the expired one is a notice from the bot")
	require.Equal(t, "Et vedlegg fra personen kunne ikke hentes inn (bilde). Meta leverer det ikke lenger (lenken er utløpt, eller vedlegget er slettet).", notices[0].body())
	require.Equal(t, event.MsgNotice, notices[0].Content.Parsed.(*event.MessageEventContent).MsgType)
	require.NotContains(t, b.logText(), "oh=sig", "attachment URLs are credentials")
}

// Officers' replies go out through the Send API with the right messaging
// type for the window, and Meta's echo does not show them twice.
func TestOfficerRepliesFollowTheWindow(t *testing.T) {
	// The replay window is widened: the person's messages are posted days late.
	b := newSocBridge(t, func(m *MetaConfig) { m.HumanAgent = true; m.ReplayWindow = "240h" })
	sim := b.sim

	for _, tc := range []struct {
		ago      time.Duration
		typ, tag string
		refused  bool
	}{
		{time.Minute, meta.TypeResponse, "", false},
		{30 * time.Hour, meta.TypeMessageTag, meta.TagHumanAgent, false},
		{8 * 24 * time.Hour, "", "", true},
	} {
		person := fmt.Sprintf("p%d", int(tc.ago.Minutes()))
		_, err := sim.Message(metasim.Incoming{Account: socPage, Person: person, Text: "hei", Ago: tc.ago})
		require.NoError(t, err)
		at := time.Now().Add(-tc.ago).UnixMilli()
		b.postSigned(messengerText(person, "m_"+person, "hei", at))
		require.False(t, b.drain())
		var th *SocialConversation
		for _, c := range b.conversations() {
			if p, _ := b.s.person(b.ctx, c); p == person {
				th = c
			}
		}
		require.NotNil(t, th)
		before := len(sim.Sends())
		err = b.s.HandleOfficerMessage(b.ctx, th, officerText(th, "$reply_"+person, "Vi er her"))
		if tc.refused {
			require.ErrorIs(t, err, errSocialWindow)
			require.Contains(t, b.room.sentBy("")[len(b.room.sentBy(""))-1].body(), "mer enn 7 dager")
			require.Len(t, sim.Sends(), before, "refused before it reached Meta")
			continue
		}
		require.NoError(t, err)
		b.s.sendWaiting(b.ctx, &outboxState{attempted: map[string]time.Time{}, started: time.Now()})
		sends := sim.Sends()
		require.Len(t, sends, before+1)
		last := sends[len(sends)-1]
		require.Equal(t, 200, last.Status)
		require.Equal(t, person, last.Recipient)
		require.Equal(t, tc.typ, last.MessagingType)
		require.Equal(t, tc.tag, last.Tag)
		require.Equal(t, "Vi er her", last.Text)
	}
}

// officerText is an officer's text message in a social conversation's room,
// as bridgev2 hands it to the connector.
func officerText(th *SocialConversation, eventID, text string) *bridgev2.MatrixMessage {
	return &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
		Event:   &event.Event{ID: id.EventID(eventID), Sender: socOfficer, RoomID: th.RoomID, Timestamp: time.Now().UnixMilli()},
		Content: &event.MessageEventContent{MsgType: event.MsgText, Body: text},
	}}
}

// socPurger records purged rooms.
type socPurger struct{ purged []id.RoomID }

func (p *socPurger) PurgeRoom(ctx context.Context, roomID id.RoomID) error {
	p.purged = append(p.purged, roomID)
	return nil
}

func (b *socBridge) openConversation(person, text string, at time.Time) *SocialConversation {
	b.t.Helper()
	_, err := b.sim.Message(metasim.Incoming{Account: socPage, Person: person, Text: text, Ago: time.Since(at)})
	require.NoError(b.t, err)
	require.Equal(b.t, 200, b.postSigned(messengerText(person, "m_"+person+fmt.Sprint(at.UnixNano()), text, at.UnixMilli())).Code)
	require.False(b.t, b.drain())
	for _, c := range b.conversations() {
		if p, _ := b.s.person(b.ctx, c); p == person && c.Status == "open" {
			return c
		}
	}
	b.t.Fatalf("no open conversation for %s", person)
	return nil
}

func (b *socBridge) sendOutbox() {
	b.s.sendWaiting(b.ctx, &outboxState{attempted: map[string]time.Time{}, started: b.s.now()})
}

// Close ends what can be sent, destroys the person's ID with the key, and a
// new message from the same person opens a new room; retention, hold and
// purge work as for secure conversations.
func TestSocialCloseHoldAndPurge(t *testing.T) {
	b := newSocBridge(t, nil)
	purger := &socPurger{}
	b.sc.Purger = purger
	th := b.openConversation("p1", "hei", time.Now())
	require.NoError(t, b.s.HandleOfficerMessage(b.ctx, th, officerText(th, "$queued", "svar")))
	b.sim.SetSendOutage(http.StatusServiceUnavailable)
	b.sendOutbox()
	require.NoError(t, b.s.Close(b.ctx, th, "@patrulje:example.org", CloseByOfficer))
	require.ErrorIs(t, b.s.Close(b.ctx, th, "@patrulje:example.org", CloseByOfficer), ErrAlreadyClosed)
	closed, err := b.sc.DB.SocialOutbox.Waiting(b.ctx)
	require.NoError(t, err)
	require.Empty(t, closed, "what waited for Meta is given up")
	stored, _ := b.sc.DB.Social.Get(b.ctx, th.ID)
	require.Nil(t, stored.PersonSealed)
	_, err = b.s.Transcript.Keys().Get(th.ID)
	require.Error(t, err, "the key is destroyed")
	require.Contains(t, b.room.notices[len(b.room.notices)-1], "Samtalen er avsluttet")
	require.Equal(t, "closed", b.room.states[len(b.room.states)-1].Status)
	require.ErrorIs(t, b.s.HandleOfficerMessage(b.ctx, stored, officerText(stored, "$late", "x")), errSocialClosed)

	b.sim.SetSendOutage(0)
	again := b.openConversation("p1", "hei igjen", time.Now())
	require.NotEqual(t, th.ID, again.ID, "a new conversation after close")

	// Retention: held rooms stay, others are purged.
	require.NoError(t, b.s.SetHold(b.ctx, stored, "@patrulje:example.org", true, ""))
	b.s.now = func() time.Time { return time.Now().Add(91 * 24 * time.Hour) }
	b.s.PurgeDue(b.ctx)
	require.Empty(t, purger.purged)
	require.NoError(t, b.s.SetHold(b.ctx, stored, "@admin:example.org", false, "saken er avsluttet"))
	b.s.PurgeDue(b.ctx)
	require.Equal(t, []id.RoomID{th.RoomID}, purger.purged)
	gone, _ := b.sc.DB.Social.Get(b.ctx, th.ID)
	require.Nil(t, gone)
	require.Equal(t, []string{AuditSocialCreate, AuditClose, AuditHold, AuditUnhold, AuditPurge}, auditActionsOf(t, b.sc, th.ID))

	// The newer conversation's person has been silent past idle_close: closed.
	b.s.CloseDue(b.ctx)
	newer, _ := b.sc.DB.Social.Get(b.ctx, again.ID)
	require.Equal(t, "closed", string(newer.Status))
}

// A social conversation's room already on legal hold when it closes is kept
// until the hold is lifted, and the close notice says so instead of giving
// a purge date (also when the close works from a copy read before the hold).
func TestSocialCloseNoticeOfAHeldRoomSaysItIsKept(t *testing.T) {
	b := newSocBridge(t, nil)
	th := b.openConversation("p1", "hei", time.Now())
	before := *th
	require.NoError(t, b.s.SetHold(b.ctx, th, "@patrulje:example.org", true, ""))
	require.NoError(t, b.s.Close(b.ctx, &before, "@patrulje:example.org", CloseByOfficer))
	notice := b.room.notices[len(b.room.notices)-1]
	require.Equal(t, "Samtalen er avsluttet (avsluttet av @patrulje:example.org). Nye meldinger fra personen kommer i et nytt rom. "+
		"Rommet er satt på vent (rettslig hold) og beholdes til en administrator opphever ventingen med `!sc unhold`.", notice)

	other := b.openConversation("p2", "hei", time.Now())
	require.NoError(t, b.s.Close(b.ctx, other, "@patrulje:example.org", CloseByOfficer))
	stored, err := b.sc.DB.Social.Get(b.ctx, other.ID)
	require.NoError(t, err)
	require.Contains(t, b.room.notices[len(b.room.notices)-1], "Rommet slettes "+formatTime(stored.PurgeAfter, LangBokmal))
}

// The move: the link and the code word reach the person as two messages,
// in that order, and the officer is told once both went.
func TestMoveSendsLinkAndCodeAsTwoMessages(t *testing.T) {
	b := newSocBridge(t, nil)
	th := b.openConversation("p1", "hei", time.Now())
	created := &CreatedConversation{
		Conversation: &Conversation{ID: "secure1", RoomID: "!secure:example.org"},
		URL:          "https://chat.example.no/#token-of-the-link", Code: "blå-hest-42",
	}
	require.NoError(t, b.s.Move(b.ctx, th, created, "@patrulje:example.org"))
	b.sendOutbox()
	sends := b.sim.Sends()
	require.Len(t, sends, 2)
	require.Contains(t, sends[0].Text, "https://chat.example.no/#token-of-the-link")
	require.NotContains(t, sends[0].Text, "blå-hest-42")
	require.Equal(t, "Kodeordet er: blå-hest-42", sends[1].Text)
	for _, s := range sends {
		require.Equal(t, "p1", s.Recipient)
		require.Equal(t, meta.TypeResponse, s.MessagingType)
	}
	require.Contains(t, b.room.notices[len(b.room.notices)-1], "Lenken og kodeordet er sendt")
	linked, _ := b.sc.DB.Social.Get(b.ctx, th.ID)
	require.Equal(t, "secure1", linked.LinkedConversation)
	require.Equal(t, []string{"secure1"}, b.room.states[len(b.room.states)-1].LinkedConversations)
	require.Contains(t, auditActionsOf(t, b.sc, "secure1"), AuditSocialMove)

	// A reissue in the secure room sends the new link the same way.
	created.URL, created.Code = "https://chat.example.no/#new-token", "rød-katt-7"
	sent, err := b.s.Reissued(b.ctx, created)
	require.NoError(t, err)
	require.True(t, sent)
	b.sendOutbox()
	sends = b.sim.Sends()
	require.Len(t, sends, 4)
	require.Contains(t, sends[2].Text, "#new-token")
	require.Equal(t, "Kodeordet er: rød-katt-7", sends[3].Text)
	require.NotContains(t, b.logText(), "token-of-the-link")
	require.NotContains(t, b.logText(), "blå-hest-42")
}

// A call that may have reached Meta before the bridge stopped is not sent
// again while Meta's echo can still say it arrived; the echo settles it.
func TestOutboxWaitsForMetasEchoBeforeSendingAgain(t *testing.T) {
	b := newSocBridge(t, nil)
	th := b.openConversation("p1", "hei", time.Now())
	require.NoError(t, b.s.HandleOfficerMessage(b.ctx, th, officerText(th, "$a", "første")))
	require.NoError(t, b.s.HandleOfficerMessage(b.ctx, th, officerText(th, "$b", "andre")))
	// A previous run called Meta for the first and stopped before the answer.
	require.NoError(t, b.sc.DB.SocialOutbox.MarkSending(b.ctx, th.ID, 1))
	st := &outboxState{attempted: map[string]time.Time{}, started: time.Now()}
	b.s.sendWaiting(b.ctx, st)
	require.Empty(t, b.sim.Sends(), "waits for the echo, and the second waits behind the first")

	// Meta's echo names the entry: sent, never again.
	echo := fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":1,"messaging":[{"sender":{"id":%[1]q},"recipient":{"id":"p1"},"timestamp":%[2]d,"message":{"is_echo":true,"app_id":%[3]s,"mid":"m_echoed","text":"første","metadata":%[4]q}}]}]}`,
		socPage, time.Now().UnixMilli(), socAppID, outboxMetadata(th.ID, 1))
	require.Equal(t, 200, b.postSigned(echo).Code)
	require.False(t, b.drain())
	b.s.sendWaiting(b.ctx, st)
	sends := b.sim.Sends()
	require.Len(t, sends, 1)
	require.Equal(t, "andre", sends[0].Text)
	first, _ := b.sc.DB.SocialOutbox.Get(b.ctx, th.ID, 1)
	require.Equal(t, "sent", first.State)
	require.Equal(t, "m_echoed", first.MessageID)

	// Without an echo, the entry goes again once the grace is over.
	require.NoError(t, b.s.HandleOfficerMessage(b.ctx, th, officerText(th, "$c", "tredje")))
	require.NoError(t, b.sc.DB.SocialOutbox.MarkSending(b.ctx, th.ID, 3))
	b.s.sendWaiting(b.ctx, st)
	require.Len(t, b.sim.Sends(), 1)
	b.s.now = func() time.Time { return time.Now().Add(echoGrace + time.Second) }
	b.s.sendWaiting(b.ctx, st)
	require.Len(t, b.sim.Sends(), 2)
}

// Meta's refusals reach the officer as notices; what may pass is retried.
func TestMetaRefusalsBecomeNotices(t *testing.T) {
	b := newSocBridge(t, nil)
	th := b.openConversation("p1", "hei", time.Now())
	for i, tc := range []struct {
		code, subcode int
		notice        string
	}{
		{551, 1545041, "kan ikke nås"},
		{10, 2018278, "tidsvinduet"},
		{100, 0, "Meta avviste meldingen"},
	} {
		b.sim.FailNext(1, tc.code, tc.subcode)
		src := fmt.Sprintf("$r%d", i)
		require.NoError(t, b.s.HandleOfficerMessage(b.ctx, th, officerText(th, src, "svar")))
		b.sendOutbox()
		notices := b.room.sentBy("")
		last := notices[len(notices)-1]
		require.Contains(t, last.body(), tc.notice)
		require.Equal(t, id.EventID(src), last.Content.Parsed.(*event.MessageEventContent).RelatesTo.GetReplyTo())
	}
	// A transient error is retried: the message goes once Meta takes it.
	b.sim.FailNext(1, 1200, 0)
	require.NoError(t, b.s.HandleOfficerMessage(b.ctx, th, officerText(th, "$t", "prøv igjen")))
	b.sendOutbox()
	waiting, _ := b.sc.DB.SocialOutbox.Waiting(b.ctx)
	require.Len(t, waiting, 1)
	b.s.now = func() time.Time { return time.Now().Add(time.Hour) }
	b.sendOutbox()
	sends := b.sim.Sends()
	require.Equal(t, "prøv igjen", sends[len(sends)-1].Text)
	require.Equal(t, 200, sends[len(sends)-1].Status)
}

// Nothing the person wrote, no ID of theirs, no token or attachment URL ends
// up in the logs, even at trace level.
func TestPatrolInboxLogsNoContentOrIDs(t *testing.T) {
	b := newSocBridge(t, nil)
	marker := "MARKØR-4711-innhold"
	th := b.openConversation("7019999999999999", marker, time.Now())
	require.NoError(t, b.s.HandleOfficerMessage(b.ctx, th, officerText(th, "$o", "svar "+marker)))
	b.sendOutbox()
	b.post([]byte(messengerText("7019999999999999", "m_bad", marker, 1)), meta.Sign("wrong", []byte("x")))
	logs := b.logText()
	require.NotEmpty(t, logs)
	for _, secret := range []string{marker, "7019999999999999", socToken, socSecret, socVerify} {
		require.NotContains(t, logs, secret)
	}
}

// Typing and seen marks go to the person as sender actions (nothing else in
// the call), and only while Meta allows replies.
func TestSenderActionsFollowTheWindow(t *testing.T) {
	b := newSocBridge(t, nil)
	th := b.openConversation("p1", "hei", time.Now())
	b.s.SenderAction(b.ctx, th, meta.ActionTypingOn)
	b.s.SenderAction(b.ctx, th, meta.ActionMarkSeen)
	sends := b.sim.Sends()
	require.Len(t, sends, 2)
	require.Equal(t, "typing_on", sends[0].SenderAction)
	require.Equal(t, "mark_seen", sends[1].SenderAction)
	for _, s := range sends {
		require.Equal(t, 200, s.Status, "Meta takes them: nothing but the recipient and the action")
		require.Empty(t, s.MessagingType)
	}
	old := b.openConversation("p2", "hei", time.Now().Add(-25*time.Hour))
	b.s.SenderAction(b.ctx, old, meta.ActionTypingOn)
	require.Len(t, b.sim.Sends(), 2, "outside the window (no Human Agent): nothing is sent")
}

// With network.meta.fetch_profiles the room shows the person's name from the
// profile API; without a profile it falls back to a number.
func TestProfileNames(t *testing.T) {
	b := newSocBridge(t, func(m *MetaConfig) { m.FetchProfiles = true })
	b.sim.AddPerson(metasim.Person{ID: "p1", FirstName: "Kari", LastName: "Nordmann"})
	b.sim.AddPerson(metasim.Person{ID: "p2", NoProfile: true})
	named := b.openConversation("p1", "hei", time.Now())
	require.Equal(t, "Messenger: Kari Nordmann", b.room.rooms[named.RoomID].Name)
	require.NotContains(t, string(named.NameSealed), "Kari", "the name is sealed in the database")
	unnamed := b.openConversation("p2", "hei", time.Now())
	require.Regexp(t, `^Messenger: Messenger-bruker \d{4}$`, b.room.rooms[unnamed.RoomID].Name)
	require.NotContains(t, b.logText(), "Kari")
}

// The export of a secure conversation moved from Messenger carries the
// social conversation's room as a package of its own, inside and verified
// with the rest.
func TestExportOfAMovedConversationIncludesTheSocialHistory(t *testing.T) {
	e := infNewEvidence(t)
	e.stageRoom()
	ctx := context.Background()
	sc := e.sc
	sc.Config.Meta = MetaConfig{AppSecret: socSecret, AppID: socAppID, Pages: []MetaPage{{PageID: socPage, AccessToken: socToken}}}
	sc.Social = newSocial(sc, &socRoom{})
	th := &SocialConversation{ID: "social1", Platform: "messenger", AccountID: socPage, PersonHash: []byte("h"), GhostID: "pg",
		Status: "open", CreatedAt: time.Now(), RoomID: "!socialroom:example.org", LinkedConversation: e.conv.ID}
	require.NoError(t, sc.DB.Social.Insert(ctx, th))

	data, err := sc.Evidence.BuildExport(ctx, e.conv, string(infOfficer))
	require.NoError(t, err)
	require.Empty(t, VerifyExportBytes(data))
	nested := exportFile(t, data, "linked/social-social1.zip")
	require.Empty(t, VerifyExportBytes(nested), "the social package verifies on its own")
	var manifest Manifest
	require.NoError(t, json.Unmarshal(exportFile(t, nested, "manifest.json"), &manifest))
	require.Equal(t, "social1", manifest.ConversationID)
	require.Equal(t, id.RoomID("!socialroom:example.org"), manifest.RoomID)
	var outer Manifest
	require.NoError(t, json.Unmarshal(exportFile(t, data, "manifest.json"), &outer))
	require.Contains(t, outer.Files, "linked/social-social1.zip", "the outer manifest covers the inner package")

	// Without a link, no social package.
	require.NoError(t, sc.DB.Social.SetLinked(ctx, "social1", "another"))
	data, err = sc.Evidence.BuildExport(ctx, e.conv, string(infOfficer))
	require.NoError(t, err)
	var plain Manifest
	require.NoError(t, json.Unmarshal(exportFile(t, data, "manifest.json"), &plain))
	require.NotContains(t, plain.Files, "linked/social-social1.zip")
}
