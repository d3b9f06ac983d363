package web

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
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/appservice"
	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

const testOrigin = "https://chat.example.no"

// fakeMatrix records what the guest side asked of the room.
type fakeMatrix struct {
	lock    sync.Mutex
	sent    []string
	txnIDs  map[string]id.EventID
	notices []string
	states  []string
	typing  []bool
	reads   []id.EventID
	failing bool
	// refuse makes the homeserver refuse this text for good (e.g. too large).
	refuse string
	// loseAnswers: this many sends reach the room but their answer is lost.
	loseAnswers int
	// forgetTxnIDs: the homeserver keeps no transaction IDs (as Dendrite, whose
	// cache misses requests whose client went away mid-request).
	forgetTxnIDs bool
	// stall holds typing calls until it is closed.
	stall chan struct{}
}

func (f *fakeMatrix) SendGuestText(ctx context.Context, conv *bridge.Conversation, txnID, text string) (id.EventID, error) {
	f.lock.Lock()
	defer f.lock.Unlock()
	if f.failing {
		return "", fmt.Errorf("homeserver down")
	}
	if f.refuse != "" && text == f.refuse {
		return "", mautrix.HTTPError{Response: &http.Response{StatusCode: http.StatusRequestEntityTooLarge}}
	}
	if f.txnIDs == nil {
		f.txnIDs = map[string]id.EventID{}
	}
	if evt, ok := f.txnIDs[txnID]; ok && !f.forgetTxnIDs {
		return evt, nil // a homeserver answers a repeated transaction with the same event
	}
	evt := id.EventID(fmt.Sprintf("$event%d", len(f.sent)+1))
	f.txnIDs[txnID] = evt
	f.sent = append(f.sent, text)
	if f.loseAnswers > 0 {
		f.loseAnswers--
		return "", fmt.Errorf("connection reset by peer")
	}
	return evt, nil
}

func (f *fakeMatrix) SendGuestFile(ctx context.Context, conv *bridge.Conversation, txnID string, info bridge.FileInfo, data []byte) (id.EventID, error) {
	return f.SendGuestText(ctx, conv, txnID, "file:"+info.Name+":"+info.SHA256)
}

// FindSent answers as a homeserver's room would: the event an earlier send made.
func (f *fakeMatrix) FindSent(ctx context.Context, conv *bridge.Conversation, txnID string) (id.EventID, error) {
	f.lock.Lock()
	defer f.lock.Unlock()
	if f.failing {
		return "", fmt.Errorf("homeserver down")
	}
	return f.txnIDs[txnID], nil
}

func (f *fakeMatrix) Notice(ctx context.Context, conv *bridge.Conversation, markdown string) {
	f.lock.Lock()
	defer f.lock.Unlock()
	f.notices = append(f.notices, markdown)
}

func (f *fakeMatrix) CloseRoom(ctx context.Context, conv *bridge.Conversation, state *appservice.ConversationState, notice string) {
	f.lock.Lock()
	defer f.lock.Unlock()
	f.states = append(f.states, state.Status)
	f.notices = append(f.notices, notice)
}

func (f *fakeMatrix) SendExport(ctx context.Context, conv *bridge.Conversation, name string, data []byte) error {
	return nil
}

func (f *fakeMatrix) ForgetRoom(ctx context.Context, conv *bridge.Conversation) {}

func (f *fakeMatrix) InviteOfficer(ctx context.Context, conv *bridge.Conversation, officer id.UserID) error {
	return nil
}

func (f *fakeMatrix) UpdateState(ctx context.Context, conv *bridge.Conversation, state *appservice.ConversationState) {
	f.lock.Lock()
	defer f.lock.Unlock()
	f.states = append(f.states, state.Status)
}

func (f *fakeMatrix) GuestTyping(ctx context.Context, conv *bridge.Conversation, typing bool, timeout time.Duration) {
	f.lock.Lock()
	stall := f.stall
	f.lock.Unlock()
	if stall != nil {
		<-stall // a homeserver that does not answer
	}
	f.lock.Lock()
	defer f.lock.Unlock()
	f.typing = append(f.typing, typing)
}

func (f *fakeMatrix) GuestRead(ctx context.Context, conv *bridge.Conversation, eventID id.EventID) error {
	f.lock.Lock()
	defer f.lock.Unlock()
	f.reads = append(f.reads, eventID)
	return nil
}

func (f *fakeMatrix) snapshot() (sent, notices []string) {
	f.lock.Lock()
	defer f.lock.Unlock()
	return append([]string(nil), f.sent...), append([]string(nil), f.notices...)
}

type testServer struct {
	*Server
	t      *testing.T
	sc     *bridge.Connector
	matrix *fakeMatrix
	logs   *lockedBuffer
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	lock sync.Mutex
	buf  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.lock.Lock()
	defer b.lock.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.lock.Lock()
	defer b.lock.Unlock()
	return b.buf.String()
}

func newTestConfig(t *testing.T) bridge.Config {
	t.Helper()
	var cfg bridge.Config
	require.NoError(t, yaml.Unmarshal([]byte(bridge.ExampleConfig), &cfg))
	cfg.MasterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	cfg.KeyDir = t.TempDir()
	return cfg
}

func newTestServer(t *testing.T, cfg bridge.Config) *testServer {
	t.Helper()
	raw, _ := testdb.New(t)
	fm := &fakeMatrix{}
	sc, err := bridge.NewDetached(context.Background(), cfg, raw, fm)
	require.NoError(t, err)
	logs := &lockedBuffer{}
	log := zerolog.New(logs).Level(zerolog.TraceLevel)
	srv := New(sc, log)
	ctx, cancel := context.WithCancel(log.WithContext(context.Background()))
	t.Cleanup(cancel)
	go sc.RunOutbox(ctx)
	return &testServer{Server: srv, t: t, sc: sc, matrix: fm, logs: logs}
}

type createdInvite struct {
	conv  *bridge.Conversation
	token string
	code  string
}

// newInvite stores a conversation with a fresh invite, as `!sc new` does.
func (ts *testServer) newInvite(ttl time.Duration) createdInvite {
	ts.t.Helper()
	now := time.UnixMilli(time.Now().UnixMilli())
	conv := &bridge.Conversation{
		ID: fmt.Sprintf("conv%d", time.Now().UnixNano()), GhostID: "ghost", RoomID: id.RoomID(fmt.Sprintf("!room%d:example.org", time.Now().UnixNano())),
		Status: bridge.StatusCreated, CreatedBy: "@officer:example.org", CreatedAt: now, InviteExpiresAt: now.Add(ttl),
	}
	token, hash, err := bridge.NewInviteToken()
	require.NoError(ts.t, err)
	code, err := bridge.NewCodeWord()
	require.NoError(ts.t, err)
	require.NoError(ts.t, ts.sc.Transcript.CreateKey(conv.ID))
	inv := &bridge.Invite{TokenHash: hash, ConversationID: conv.ID, CodeMAC: bridge.CodeMAC(token, code), CreatedAt: now, ExpiresAt: now.Add(ttl)}
	require.NoError(ts.t, ts.sc.Store.InsertConversation(context.Background(), conv, inv))
	return createdInvite{conv: conv, token: token, code: code}
}

type response struct {
	*httptest.ResponseRecorder
	t *testing.T
}

func (r response) json() map[string]any {
	r.t.Helper()
	var out map[string]any
	require.NoError(r.t, json.Unmarshal(r.Body.Bytes(), &out), r.Body.String())
	return out
}

func (r response) errcode() string {
	r.t.Helper()
	code, _ := r.json()["errcode"].(string)
	return code
}

// request sends a request like the guest page does, unless headers override.
func (ts *testServer) request(method, target string, body any, headers map[string]string, cookies ...*http.Cookie) response {
	ts.t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	case []byte:
		reader = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		require.NoError(ts.t, err)
		reader = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, target, reader)
	req.RemoteAddr = "203.0.113.7:5555"
	if method == http.MethodPost {
		req.Header.Set("Origin", testOrigin)
		req.Header.Set("X-Sikkerchat", "1")
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		if k == "RemoteAddr" {
			req.RemoteAddr = v
			continue
		}
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	ts.Handler().ServeHTTP(rec, req)
	return response{rec, ts.t}
}

// join consumes the invite and returns the session cookie.
func (ts *testServer) join(inv createdInvite) *http.Cookie {
	ts.t.Helper()
	res := ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": inv.code}, nil)
	require.Equal(ts.t, http.StatusOK, res.Code, res.Body.String())
	for _, c := range res.Result().Cookies() {
		if c.Name == "__Host-sikkerchat" && c.Value != "" {
			return c
		}
	}
	ts.t.Fatal("no session cookie")
	return nil
}
