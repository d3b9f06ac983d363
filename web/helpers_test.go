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
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/internal/matrixtest"
	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

const testOrigin = "https://chat.example.no"

type testServer struct {
	*Server
	t      testing.TB
	sc     *bridge.Connector
	matrix *matrixtest.Fake
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

func newTestConfig(t testing.TB) bridge.Config {
	t.Helper()
	var cfg bridge.Config
	require.NoError(t, yaml.Unmarshal([]byte(bridge.ExampleConfig), &cfg))
	cfg.MasterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	cfg.KeyDir = t.TempDir()
	return cfg
}

func newTestServer(t testing.TB, cfg bridge.Config) *testServer {
	t.Helper()
	raw, _ := testdb.New(t)
	fm := &matrixtest.Fake{}
	sc, err := bridge.NewDetached(context.Background(), cfg, raw, fm)
	require.NoError(t, err)
	logs := &lockedBuffer{}
	log := zerolog.New(logs).Level(zerolog.TraceLevel)
	srv := New(sc, log)
	ctx, cancel := context.WithCancel(log.WithContext(context.Background()))
	outboxDone := make(chan struct{})
	go func() {
		defer close(outboxDone)
		sc.Outbox.Run(ctx)
	}()
	// Before the database and its folder go: the outbox and what a join or a
	// typing mark left running in the background.
	t.Cleanup(func() {
		srv.Stop() // the event streams on taken-over connections end
		cancel()
		<-outboxDone
		require.True(t, sc.WaitBackground(time.Minute), "background work did not end")
	})
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
	require.NoError(ts.t, ts.sc.DB.Conversation.Insert(context.Background(), conv, inv))
	return createdInvite{conv: conv, token: token, code: code}
}

type response struct {
	*httptest.ResponseRecorder
	t testing.TB
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
