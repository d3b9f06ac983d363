package web

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// badRequest is one request the guest listener must refuse: with the status
// and errcode of docs/guest-api.md, as JSON with the security headers, and
// without changing anything.
type badRequest struct {
	name    string
	method  string
	path    string
	headers map[string]string // on top of what the page sends; "" removes a header
	body    any               // string, []byte, or a value sent as JSON
	cookie  string            // a session of badFixtures.cookies ("" for none)
	status  int
	errcode string // "" only for an answer without a body (204)
	// allow names the parts of the state (see guestState) that this request
	// may change, e.g. the failed-attempt count of a wrong code word.
	allow []string
}

// badFixtures is the world the bad requests are sent into.
type badFixtures struct {
	ts      *testServer
	cookies map[string]*http.Cookie
	live    *bridge.Conversation // the conversation of the "live" session
	ownFile string               // a file of the live conversation
	// otherFile belongs to another conversation with its own live session.
	otherFile string
	// sentClientID was used for a stored text "hei" in the live conversation.
	sentClientID string

	freshToken, freshCode string // an unused invite that must stay unused
	wrongToken            string // an invite that takes one wrong code word
	usedToken, usedCode   string
	expiredToken          string
	expiredCode           string
	revokedToken          string
	revokedCode           string
	burnedToken           string
	burnedCode            string
	// usedUpToken has had every wrong code word it allows, and its burn has
	// not landed yet (a guess racing the last one).
	usedUpToken, usedUpCode string
	closedToken             string
	closedCode              string
	unknownToken            string

	activeStates int // "active" state events setup causes
	clientIDs    int
}

func newBadFixtures(t *testing.T) *badFixtures {
	cfg := newTestConfig(t)
	cfg.Guest.MaxFileBytes = 4096
	ts := newTestServer(t, cfg)
	ctx := context.Background()
	fx := &badFixtures{ts: ts, cookies: map[string]*http.Cookie{}}

	live := ts.newInvite(time.Hour)
	fx.live = live.conv
	fx.cookies["live"] = fx.join(live)
	fx.sentClientID = "sent-message-0000001"
	res := ts.request("POST", "/api/messages", map[string]string{"client_id": fx.sentClientID, "text": "hei"}, nil, fx.cookies["live"])
	require.Equal(t, http.StatusAccepted, res.Code, res.Body.String())
	fx.ownFile = ts.officerFile(live.conv.ID, "svar.png", pngBytes)

	other := ts.newInvite(time.Hour)
	fx.cookies["other"] = fx.join(other)
	fx.otherFile = ts.officerFile(other.conv.ID, "hemmelig.png", pngBytes)

	left := ts.newInvite(time.Hour)
	fx.cookies["left"] = fx.join(left)
	res = ts.request("POST", "/api/leave", "", nil, fx.cookies["left"])
	require.Equal(t, http.StatusNoContent, res.Code)

	reissued := ts.newInvite(time.Hour)
	fx.cookies["reissued"] = fx.join(reissued)
	conv, err := ts.sc.DB.Conversation.Get(ctx, reissued.conv.ID)
	require.NoError(t, err)
	_, err = ts.sc.Conversations.Reissue(ctx, conv, "@officer:example.org")
	require.NoError(t, err)
	fx.activeStates++ // the reissue updates the state event of an active room

	closed := ts.newInvite(time.Hour)
	fx.cookies["closed"] = fx.join(closed)
	fx.closedToken, fx.closedCode = closed.token, closed.code
	conv, err = ts.sc.DB.Conversation.Get(ctx, closed.conv.ID)
	require.NoError(t, err)
	require.NoError(t, ts.sc.Conversations.Close(ctx, conv, "@officer:example.org", bridge.CloseByOfficer))

	// Cookies that were never sessions.
	fx.cookies["unknown"] = &http.Cookie{Name: "__Host-sikkerchat", Value: "bm90LWEtc2Vzc2lvbi1idXQtbG9va3MtbGlrZS1vbmUx"}
	fx.cookies["empty"] = &http.Cookie{Name: "__Host-sikkerchat", Value: ""}
	fx.cookies["long"] = &http.Cookie{Name: "__Host-sikkerchat", Value: strings.Repeat("A", 200)}
	fx.cookies["wrong name"] = &http.Cookie{Name: "sikkerchat_session", Value: fx.cookies["live"].Value}

	fresh := ts.newInvite(time.Hour)
	fx.freshToken, fx.freshCode = fresh.token, fresh.code
	fx.wrongToken = ts.newInvite(time.Hour).token
	used := ts.newInvite(time.Hour)
	fx.usedToken, fx.usedCode = used.token, used.code
	fx.join(used)
	expired := ts.newInvite(-time.Minute)
	fx.expiredToken, fx.expiredCode = expired.token, expired.code
	revoked := ts.newInvite(time.Hour)
	fx.revokedToken, fx.revokedCode = revoked.token, revoked.code
	conv, err = ts.sc.DB.Conversation.Get(ctx, revoked.conv.ID)
	require.NoError(t, err)
	_, err = ts.sc.Conversations.Reissue(ctx, conv, "@officer:example.org")
	require.NoError(t, err)
	burned := ts.newInvite(time.Hour)
	fx.burnedToken, fx.burnedCode = burned.token, burned.code
	ts.resetLimits()
	for range ts.sc.Config.MaxCodeAttempts {
		res = ts.request("POST", "/api/join", map[string]string{"token": burned.token, "code": "feil 00"}, nil)
	}
	require.Equal(t, errInviteRevoked, res.errcode(), "burned")
	usedUp := ts.newInvite(time.Hour)
	fx.usedUpToken, fx.usedUpCode = usedUp.token, usedUp.code
	_, err = ts.sc.DB.Exec(ctx, "UPDATE sikkerchat_invite SET failed_attempts=$2 WHERE conversation_id=$1", usedUp.conv.ID, ts.sc.Config.MaxCodeAttempts)
	require.NoError(t, err)
	fx.unknownToken, _, err = bridge.NewInviteToken()
	require.NoError(t, err)
	return fx
}

// join opens a session and counts what the join does in the room later.
func (fx *badFixtures) join(inv createdInvite) *http.Cookie {
	fx.ts.resetLimits()
	fx.activeStates++
	cookie := fx.ts.join(inv)
	// The "active" state event is published in the background from the row
	// as it is then: wait for it, or a close right after would turn it into
	// "closed" and the count below would never be reached.
	require.Eventually(fx.ts.t, func() bool { return fx.activeCount() >= fx.activeStates }, 10*time.Second, 5*time.Millisecond, "the join's state event")
	return cookie
}

func (fx *badFixtures) activeCount() int {
	fm := fx.ts.matrix
	fm.Lock()
	defer fm.Unlock()
	active := 0
	for _, s := range fm.States {
		if s == string(bridge.StatusActive) {
			active++
		}
	}
	return active
}

// expired is a fresh session that has been idle longer than the timeout.
func (fx *badFixtures) expired() string {
	ts := fx.ts
	name := fmt.Sprintf("expired %d", len(fx.cookies))
	inv := ts.newInvite(time.Hour)
	fx.cookies[name] = fx.join(inv)
	_, err := ts.sc.DB.Exec(context.Background(), "UPDATE sikkerchat_guest_session SET last_seen_at=$2 WHERE conversation_id=$1",
		inv.conv.ID, time.Now().Add(-24*time.Hour).UnixMilli())
	require.NoError(ts.t, err)
	return name
}

// clientID is a valid client_id never used before, so that a request that
// should have been refused would show up as a new message.
func (fx *badFixtures) clientID() string {
	fx.clientIDs++
	return fmt.Sprintf("bad-request-%08d", fx.clientIDs)
}

func (fx *badFixtures) message() map[string]string {
	return map[string]string{"client_id": fx.clientID(), "text": "MARKER-skal-ikke-lagres"}
}

// upload is a valid multipart upload of a PNG.
func (fx *badFixtures) upload() (string, map[string]string) {
	body, ct := multipartBody(fx.ts.t, fx.clientID(), "bilde.png", "image/png", pngBytes)
	return string(body), map[string]string{"Content-Type": ct}
}

// settle waits for what setup set going in the background (each first join
// ends with an "active" state event after its notice; the stored message goes
// out), so that nothing moves while the bad requests are measured.
func (fx *badFixtures) settle(t *testing.T) {
	require.Eventually(t, func() bool {
		if fx.activeCount() != fx.activeStates {
			return false
		}
		fx.ts.matrix.Lock()
		defer fx.ts.matrix.Unlock()
		return len(fx.ts.matrix.Sent) == 1
	}, 10*time.Second, 5*time.Millisecond, "setup did not settle")
	require.Eventually(t, func() bool {
		e, err := fx.ts.sc.Transcript.ByClientID(context.Background(), fx.live.ID, fx.sentClientID)
		return err == nil && e != nil && e.Status == bridge.EntryDelivered
	}, 10*time.Second, 5*time.Millisecond)
}

func (ts *testServer) resetLimits() {
	for _, l := range []*limiter{ts.joinLimit, ts.messageLimit, ts.fileLimit, ts.ipLimit} {
		l.lock.Lock()
		l.buckets = map[string]*bucket{}
		l.lock.Unlock()
	}
}

// guestState is everything a guest request could change, per part: the
// sikkerchat tables, the conversation keys on disk and what reached the room.
// last_seen_at is left out: any request with a live session is activity.
func (ts *testServer) guestState() map[string]string {
	ts.t.Helper()
	ctx := context.Background()
	state := map[string]string{}
	for part, query := range map[string]string{
		"conversation": "SELECT id, status, closed_at, purge_after, joined_at, invite_expires_at, officer_read_seq, hold FROM sikkerchat_conversation ORDER BY id",
		"invite":       "SELECT conversation_id, token_hash, used_at, revoked_at, failed_attempts, expires_at FROM sikkerchat_invite ORDER BY conversation_id, token_hash",
		"session":      "SELECT conversation_id, token_hash, created_at, revoked_at FROM sikkerchat_guest_session ORDER BY conversation_id, token_hash",
		"transcript":   "SELECT conversation_id, seq, direction, matrix_event_id, client_id, status, sealed FROM sikkerchat_transcript ORDER BY conversation_id, seq",
		"file":         "SELECT conversation_id, file_id, sealed FROM sikkerchat_file ORDER BY conversation_id, file_id",
		"audit":        "SELECT seq, actor, action, conversation_id, detail FROM sikkerchat_audit ORDER BY seq",
		"stats":        "SELECT day, direction, kind, count FROM sikkerchat_stats_daily ORDER BY day, direction, kind",
		"inbox":        "SELECT event_id, room_id, attempts FROM sikkerchat_inbox ORDER BY event_id",
	} {
		rows, err := ts.sc.DB.Query(ctx, query)
		require.NoError(ts.t, err, part)
		cols, err := rows.Columns()
		require.NoError(ts.t, err)
		var sb strings.Builder
		for rows.Next() {
			values := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range values {
				ptrs[i] = &values[i]
			}
			require.NoError(ts.t, rows.Scan(ptrs...))
			for _, v := range values {
				fmt.Fprintf(&sb, "%q|", v.String)
			}
			sb.WriteString("\n")
		}
		require.NoError(ts.t, rows.Err())
		require.NoError(ts.t, rows.Close())
		state[part] = sb.String()
	}
	keys, err := os.ReadDir(ts.sc.Config.KeyDir)
	require.NoError(ts.t, err)
	var names []string
	for _, k := range keys {
		names = append(names, k.Name())
	}
	state["keys"] = strings.Join(names, ",")
	fm := ts.matrix
	fm.Lock()
	state["room"] = fmt.Sprintf("sent=%q notices=%d states=%q typing=%v reads=%v", fm.Sent, len(fm.Notices), fm.States, fm.Typing, fm.Reads)
	fm.Unlock()
	return state
}

// cancelOnStream ends the request as soon as an event stream opens, so that
// a Last-Event-ID that was wrongly accepted fails the row instead of hanging.
type cancelOnStream struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (c *cancelOnStream) WriteHeader(code int) {
	c.ResponseRecorder.WriteHeader(code)
	if code == http.StatusOK {
		c.cancel()
	}
}

func (fx *badFixtures) send(row badRequest) *httptest.ResponseRecorder {
	ts := fx.ts
	t := ts.t
	var reader io.Reader
	switch b := row.body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	case []byte:
		reader = bytes.NewReader(b)
	case io.Reader:
		reader = b // no Content-Length, as with chunked encoding
	default:
		data, err := json.Marshal(b)
		require.NoError(t, err)
		reader = bytes.NewReader(data)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, row.method, row.path, reader)
	req.RemoteAddr = "203.0.113.9:4444"
	if row.method == http.MethodPost {
		req.Header.Set("Origin", testOrigin)
		req.Header.Set("X-Sikkerchat", "1")
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range row.headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if row.cookie != "" {
		cookie, ok := fx.cookies[row.cookie]
		require.True(t, ok, "no cookie fixture %q", row.cookie)
		req.AddCookie(cookie)
	}
	rec := &cancelOnStream{ResponseRecorder: httptest.NewRecorder(), cancel: cancel}
	ts.Handler().ServeHTTP(rec, req)
	return rec.ResponseRecorder
}

var securityHeaderChecks = map[string]func(string) bool{
	"Content-Security-Policy": func(v string) bool {
		return strings.Contains(v, "default-src 'self'") && strings.Contains(v, "frame-ancestors 'none'") && !strings.Contains(v, "unsafe-inline")
	},
	"Referrer-Policy":              func(v string) bool { return v == "no-referrer" },
	"Cache-Control":                func(v string) bool { return v == "no-store" },
	"X-Content-Type-Options":       func(v string) bool { return v == "nosniff" },
	"X-Frame-Options":              func(v string) bool { return v == "DENY" },
	"Cross-Origin-Opener-Policy":   func(v string) bool { return v == "same-origin" },
	"Cross-Origin-Resource-Policy": func(v string) bool { return v == "same-origin" },
	"Permissions-Policy":           func(v string) bool { return strings.Contains(v, "camera=()") },
}

func TestGuestBadRequests(t *testing.T) {
	fx := newBadFixtures(t)
	rows := guestBadRequestTable(fx)
	fx.settle(t)
	ts := fx.ts
	liveSub := ts.sc.Hub.Subscribe(fx.live.ID)
	defer liveSub.Close()

	names := map[string]bool{}
	for _, row := range rows {
		require.False(t, names[row.name], "duplicate row name %q", row.name)
		names[row.name] = true
		ts.resetLimits() // the limits have their own test; here every request gets through to be judged
		before := ts.guestState()
		res := fx.send(row)
		after := ts.guestState()
		t.Run(row.name, func(t *testing.T) {
			body := res.Body.String()
			require.Equal(t, row.status, res.Code, "%s %s: %s", row.method, row.path, body)
			for header, ok := range securityHeaderChecks {
				require.True(t, ok(res.Header().Get(header)), "%s: %q", header, res.Header().Get(header))
			}
			if row.errcode == "" {
				require.Empty(t, body)
			} else {
				require.True(t, strings.HasPrefix(res.Header().Get("Content-Type"), "application/json"), res.Header().Get("Content-Type"))
				var e struct {
					ErrCode      string `json:"errcode"`
					Error        string `json:"error"`
					AttemptsLeft *int   `json:"attempts_left"`
				}
				dec := json.NewDecoder(strings.NewReader(body))
				dec.DisallowUnknownFields()
				require.NoError(t, dec.Decode(&e), body)
				require.Equal(t, row.errcode, e.ErrCode, body)
				require.NotEmpty(t, e.Error)
				require.NotContains(t, e.Error, ".go:", "no stack traces")
				require.Equal(t, row.errcode == errCodeWrong, e.AttemptsLeft != nil, "attempts_left only for a wrong code word")
			}
			for _, c := range res.Result().Cookies() {
				require.True(t, c.Value == "" && c.MaxAge < 0, "a bad request never gets a session cookie: %v", c)
			}
			for part := range before {
				if !slices.Contains(row.allow, part) {
					require.Equal(t, before[part], after[part], "the bad request changed %s", part)
				}
			}
			select {
			case evt := <-liveSub.C:
				t.Fatalf("the bad request reached the guest page: %+v", evt)
			default:
			}
		})
	}
	require.GreaterOrEqual(t, len(rows), 150)

	// Bad input lost nothing: the live session, the conversation, the unused link.
	res := ts.request("GET", "/api/session", nil, nil, fx.cookies["live"])
	require.Equal(t, http.StatusOK, res.Code)
	conv, err := ts.sc.DB.Conversation.Get(context.Background(), fx.live.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.StatusActive, conv.Status)
	entries, err := ts.sc.Transcript.Since(context.Background(), fx.live.ID, 0)
	require.NoError(t, err)
	require.Len(t, entries, 2, "the stored message and the officer's file, nothing else")
	ts.resetLimits()
	ts.join(createdInvite{token: fx.freshToken, code: fx.freshCode})
	t.Logf("%d bad requests to the guest listener", len(rows))
}

// stalledBody gives its bytes and then the error of a read deadline that
// passed: a client that stopped sending in the middle of its body.
type stalledBody struct{ data string }

func (b *stalledBody) Read(p []byte) (int, error) {
	if b.data == "" {
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

// multipartRaw builds a form by hand, for the shapes multipart.Writer refuses to make.
func multipartRaw(boundary string, parts ...[2]string) string {
	var sb strings.Builder
	for _, p := range parts {
		sb.WriteString("--" + boundary + "\r\n" + p[0] + "\r\n\r\n" + p[1] + "\r\n")
	}
	sb.WriteString("--" + boundary + "--\r\n")
	return sb.String()
}

func multipartWith(t testing.TB, build func(mw *multipart.Writer)) (string, map[string]string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	build(mw)
	require.NoError(t, mw.Close())
	return buf.String(), map[string]string{"Content-Type": mw.FormDataContentType()}
}

func filePart(t testing.TB, mw *multipart.Writer, field, name, contentType string, data []byte) {
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, field, name))
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	part, err := mw.CreatePart(h)
	require.NoError(t, err)
	_, err = part.Write(data)
	require.NoError(t, err)
}

func guestBadRequestTable(fx *badFixtures) []badRequest {
	t := fx.ts.t
	var rows []badRequest
	add := func(r ...badRequest) { rows = append(rows, r...) }
	join := func(token, code string) map[string]string { return map[string]string{"token": token, "code": code} }

	// Routes that change state, each with a body that would be fine.
	type route struct {
		path   string
		cookie string
		body   func() (any, map[string]string)
	}
	stateChanging := []route{
		{"/api/join", "", func() (any, map[string]string) { return join(fx.freshToken, fx.freshCode), nil }},
		{"/api/messages", "live", func() (any, map[string]string) { return fx.message(), nil }},
		{"/api/files", "live", func() (any, map[string]string) { return fx.upload() }},
		{"/api/typing", "live", func() (any, map[string]string) { return map[string]bool{"typing": true}, nil }},
		{"/api/read", "live", func() (any, map[string]string) { return map[string]int{"seq": 1}, nil }},
		{"/api/leave", "live", func() (any, map[string]string) { return "", nil }},
	}
	with := func(h map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for hk, hv := range h {
			if hk != k {
				out[hk] = hv
			}
		}
		return out
	}

	// Same-origin Origin on every POST.
	for _, r := range stateChanging {
		for _, o := range []struct{ name, origin string }{
			{"no Origin", ""}, {"foreign Origin", "https://evil.example"}, {"Origin null", "null"},
			{"Origin over http", "http://chat.example.no"}, {"Origin with another port", "https://chat.example.no:8443"},
		} {
			body, h := r.body()
			add(badRequest{name: r.path + ": " + o.name, method: "POST", path: r.path, body: body, headers: with(h, "Origin", o.origin),
				cookie: r.cookie, status: 403, errcode: errBadOrigin})
		}
	}
	for _, o := range []string{"https://chat.example.no/", "https://CHAT.EXAMPLE.NO", "https://chat.example.no.evil.example", "https://evil.example/https://chat.example.no"} {
		add(badRequest{name: "messages: Origin " + o, method: "POST", path: "/api/messages", body: fx.message(),
			headers: map[string]string{"Origin": o}, cookie: "live", status: 403, errcode: errBadOrigin})
	}

	// The custom header on every POST but the beacon-friendly leave.
	for _, r := range stateChanging[:5] {
		for _, v := range []string{"", "0"} {
			body, h := r.body()
			add(badRequest{name: fmt.Sprintf("%s: X-Sikkerchat %q", r.path, v), method: "POST", path: r.path, body: body,
				headers: with(h, "X-Sikkerchat", v), cookie: r.cookie, status: 403, errcode: errMissingHeader})
		}
	}
	add(badRequest{name: "messages: X-Sikkerchat true", method: "POST", path: "/api/messages", body: fx.message(),
		headers: map[string]string{"X-Sikkerchat": "true"}, cookie: "live", status: 403, errcode: errMissingHeader})
	add(badRequest{name: "leave: JSON body without X-Sikkerchat is no beacon", method: "POST", path: "/api/leave", body: `{}`,
		headers: map[string]string{"X-Sikkerchat": ""}, cookie: "live", status: 403, errcode: errMissingHeader})

	// Sessions: none, never one, ended, expired, of a closed conversation.
	sessionRoutes := []struct {
		method, path string
		body         func() (any, map[string]string)
	}{
		{"GET", "/api/session", func() (any, map[string]string) { return nil, nil }},
		{"GET", "/api/events", func() (any, map[string]string) { return nil, nil }},
		{"POST", "/api/messages", func() (any, map[string]string) { return fx.message(), nil }},
		{"POST", "/api/files", func() (any, map[string]string) { return fx.upload() }},
		{"GET", "/api/files/" + fx.ownFile, func() (any, map[string]string) { return nil, nil }},
		{"POST", "/api/typing", func() (any, map[string]string) { return map[string]bool{"typing": true}, nil }},
		{"POST", "/api/read", func() (any, map[string]string) { return map[string]int{"seq": 1}, nil }},
	}
	for _, r := range sessionRoutes {
		for _, c := range []struct {
			cookie, errcode string
			status          int
		}{
			{"", errNoSession, 401}, {"unknown", errNoSession, 401}, {"left", errNoSession, 401},
			{"reissued", errNoSession, 401}, {"closed", errConversationClosed, 410},
		} {
			body, h := r.body()
			name := c.cookie
			if name == "" {
				name = "no cookie"
			}
			add(badRequest{name: fmt.Sprintf("%s %s: %s", r.method, r.path, name), method: r.method, path: r.path, body: body, headers: h,
				cookie: c.cookie, status: c.status, errcode: c.errcode})
		}
		body, h := r.body()
		add(badRequest{name: fmt.Sprintf("%s %s: session idle too long", r.method, r.path), method: r.method, path: r.path, body: body, headers: h,
			cookie: fx.expired(), status: 401, errcode: errSessionExpired, allow: []string{"session"}})
	}
	for _, c := range []string{"empty", "long", "wrong name"} {
		add(badRequest{name: "session: cookie " + c, method: "GET", path: "/api/session", cookie: c, status: 401, errcode: errNoSession})
		add(badRequest{name: "messages: cookie " + c, method: "POST", path: "/api/messages", body: fx.message(), cookie: c, status: 401, errcode: errNoSession})
	}

	// Wrong methods and unknown paths: JSON 404s.
	for _, m := range []struct{ method, path string }{
		{"GET", "/api/join"}, {"PUT", "/api/join"}, {"GET", "/api/messages"}, {"PUT", "/api/messages"}, {"DELETE", "/api/messages"},
		{"PATCH", "/api/messages"}, {"OPTIONS", "/api/messages"}, {"GET", "/api/typing"}, {"GET", "/api/read"}, {"GET", "/api/leave"},
		{"DELETE", "/api/leave"}, {"POST", "/api/config"}, {"POST", "/api/session"}, {"DELETE", "/api/session"}, {"POST", "/api/events"},
		{"PUT", "/api/files"}, {"GET", "/api/files"}, {"DELETE", "/api/files/" + fx.ownFile}, {"POST", "/api/files/" + fx.ownFile},
		{"POST", "/healthz"}, {"POST", "/"}, {"DELETE", "/"},
	} {
		add(badRequest{name: "wrong method " + m.method + " " + m.path, method: m.method, path: m.path, cookie: "live", status: 404, errcode: errNotFound})
	}
	for _, p := range []string{"/api/whatever", "/api", "/api/", "/api/join/extra", "/API/join", "/api/messages/1", "/api/files/", "/api/files/a/b",
		"/index.html", "/.git/config", "/static/app.js.map", "/_test/conversations/x/rows"} {
		add(badRequest{name: "unknown path " + p, method: "GET", path: p, cookie: "live", status: 404, errcode: errNotFound})
	}
	for _, p := range []string{"/api/../etc/passwd", "/../../etc/passwd", "/api/files/../../../etc/passwd", "//api/session", "/api/./session"} {
		add(badRequest{name: "path traversal " + p, method: "GET", path: p, cookie: "live", status: 404, errcode: errNotFound})
	}
	add(badRequest{name: "path traversal POST /api/../api/messages", method: "POST", path: "/api/../api/messages", body: fx.message(),
		cookie: "live", status: 404, errcode: errNotFound})

	// JSON bodies (messages carry the most rules).
	msg := func(name string, body any, status int, errcode string) {
		add(badRequest{name: "messages: " + name, method: "POST", path: "/api/messages", body: body, cookie: "live", status: status, errcode: errcode})
	}
	cid := fx.clientID
	msg("malformed JSON", `{"client_id":`, 400, errBadJSON)
	msg("empty body", ``, 400, errBadJSON)
	msg("JSON array", `[]`, 400, errBadJSON)
	msg("JSON string", `"hei"`, 400, errBadJSON)
	msg("JSON number", `42`, 400, errBadJSON)
	msg("unknown field", map[string]string{"client_id": cid(), "text": "hei", "room_id": "!x:y"}, 400, errBadJSON)
	msg("field of another endpoint", map[string]any{"client_id": cid(), "text": "hei", "typing": true}, 400, errBadJSON)
	msg("trailing object", `{"client_id":"`+cid()+`","text":"hei"}{}`, 400, errBadJSON)
	msg("trailing garbage", `{"client_id":"`+cid()+`","text":"hei"} x`, 400, errBadJSON)
	msg("two objects", `{"client_id":"`+cid()+`","text":"a"}`+"\n"+`{"client_id":"`+cid()+`","text":"b"}`, 400, errBadJSON)
	msg("text is a number", `{"client_id":"`+cid()+`","text":5}`, 400, errBadJSON)
	msg("text is an array", `{"client_id":"`+cid()+`","text":["hei"]}`, 400, errBadJSON)
	msg("text is an object", `{"client_id":"`+cid()+`","text":{"body":"hei"}}`, 400, errBadJSON)
	msg("text is true", `{"client_id":"`+cid()+`","text":true}`, 400, errBadJSON)
	msg("client_id is a number", `{"client_id":12345678901234567890,"text":"hei"}`, 400, errBadJSON)
	msg("huge body", `{"client_id":"`+cid()+`","text":"`+strings.Repeat("a", 600<<10)+`"}`, 413, errTooLarge)
	msg("huge body of whitespace", strings.Repeat(" ", 600<<10)+`{}`, 413, errTooLarge)
	msg("raw NUL in JSON", "{\"client_id\":\""+cid()+"\",\"text\":\"a\x00b\"}", 400, errBadJSON)
	msg("raw newline in a JSON string", "{\"client_id\":\""+cid()+"\",\"text\":\"a\nb\"}", 400, errBadJSON)
	msg("invalid UTF-8", "{\"client_id\":\""+cid()+"\",\"text\":\"hei \xff\xfe\"}", 400, errBadJSON)
	msg("overlong UTF-8", "{\"client_id\":\""+cid()+"\",\"text\":\"\xc0\xafetc\"}", 400, errBadJSON)
	msg("Latin-1 instead of UTF-8", "{\"client_id\":\""+cid()+"\",\"text\":\"bl\xe5b\xe6r\"}", 400, errBadJSON)
	msg("null body", `null`, 400, errBadClientID)
	msg("empty object", `{}`, 400, errBadClientID)
	msg("empty text", map[string]string{"client_id": cid(), "text": ""}, 400, errEmptyMessage)
	msg("no text", map[string]string{"client_id": cid()}, 400, errEmptyMessage)
	msg("text null", `{"client_id":"`+cid()+`","text":null}`, 400, errEmptyMessage)
	msg("whitespace only", map[string]string{"client_id": cid(), "text": " \t \n\r\n "}, 400, errEmptyMessage)
	msg("newlines only", map[string]string{"client_id": cid(), "text": "\n\n\n"}, 400, errEmptyMessage)
	msg("unicode spaces only", map[string]string{"client_id": cid(), "text": "\u00a0\u2003\u3000"}, 400, errEmptyMessage)
	msg("text over max_message_length", map[string]string{"client_id": cid(), "text": strings.Repeat("a", 4001)}, 413, errMessageTooLong)
	msg("4-byte characters over max_message_length", map[string]string{"client_id": cid(), "text": strings.Repeat("🙂", 4001)}, 413, errMessageTooLong)
	msg("client_id empty", map[string]string{"client_id": "", "text": "hei"}, 400, errBadClientID)
	msg("client_id missing", map[string]string{"text": "hei"}, 400, errBadClientID)
	msg("client_id null", `{"client_id":null,"text":"hei"}`, 400, errBadClientID)
	msg("client_id too short", map[string]string{"client_id": strings.Repeat("a", 15), "text": "hei"}, 400, errBadClientID)
	msg("client_id too long", map[string]string{"client_id": strings.Repeat("a", 65), "text": "hei"}, 400, errBadClientID)
	msg("client_id very long", map[string]string{"client_id": strings.Repeat("a", 10000), "text": "hei"}, 400, errBadClientID)
	msg("client_id with a space", map[string]string{"client_id": "aaaaaaaa aaaaaaaa", "text": "hei"}, 400, errBadClientID)
	msg("client_id with a slash", map[string]string{"client_id": "aaaaaaaa/../aaaaaaaa", "text": "hei"}, 400, errBadClientID)
	msg("client_id with dots", map[string]string{"client_id": "aaaaaaaa.aaaaaaaa", "text": "hei"}, 400, errBadClientID)
	msg("client_id with letters outside ASCII", map[string]string{"client_id": "æøåæøåæøåæøåæøåæøå", "text": "hei"}, 400, errBadClientID)
	msg("client_id with NUL", map[string]string{"client_id": "aaaaaaaa\x00aaaaaaaa", "text": "hei"}, 400, errBadClientID)
	msg("client_id with a newline", map[string]string{"client_id": "aaaaaaaaaaaaaaaa\n", "text": "hei"}, 400, errBadClientID)
	msg("client_id with SQL", map[string]string{"client_id": "x'); DROP TABLE sikkerchat_transcript;--", "text": "hei"}, 400, errBadClientID)
	msg("client_id replayed with other text", map[string]string{"client_id": fx.sentClientID, "text": "noe annet"}, 409, errClientIDReused)
	msg("client_id replayed with the text and more", map[string]string{"client_id": fx.sentClientID, "text": "hei!"}, 409, errClientIDReused)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx", "application/json-seq", "text/json"} {
		add(badRequest{name: "messages: Content-Type " + ct, method: "POST", path: "/api/messages", body: fx.message(),
			headers: map[string]string{"Content-Type": ct}, cookie: "live", status: 415, errcode: errBadJSON})
	}

	// Joining.
	jn := func(name string, body any, status int, errcode string, allow ...string) {
		add(badRequest{name: "join: " + name, method: "POST", path: "/api/join", body: body, status: status, errcode: errcode, allow: allow})
	}
	jn("malformed JSON", `{"token":`, 400, errBadJSON)
	jn("empty body", ``, 400, errBadJSON)
	jn("JSON array", `[]`, 400, errBadJSON)
	jn("unknown field", map[string]string{"token": fx.freshToken, "code": fx.freshCode, "admin": "1"}, 400, errBadJSON)
	jn("trailing data", `{"token":"`+fx.freshToken+`","code":"`+fx.freshCode+`"}{}`, 400, errBadJSON)
	jn("token is a number", `{"token":1,"code":"tiger 47"}`, 400, errBadJSON)
	jn("code is a number", `{"token":"`+fx.freshToken+`","code":47}`, 400, errBadJSON)
	jn("code is an array", `{"token":"`+fx.freshToken+`","code":["tiger","47"]}`, 400, errBadJSON)
	jn("huge body", `{"token":"`+strings.Repeat("a", 600<<10)+`"}`, 413, errTooLarge)
	jn("invalid UTF-8 in code", "{\"token\":\""+fx.freshToken+"\",\"code\":\"tiger \xff47\"}", 400, errBadJSON)
	add(badRequest{name: "join: form instead of JSON", method: "POST", path: "/api/join", body: "token=" + fx.freshToken + "&code=x",
		headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 415, errcode: errBadJSON})
	jn("empty object", `{}`, 400, errBadToken)
	jn("null body", `null`, 400, errBadToken)
	jn("token missing", map[string]string{"code": fx.freshCode}, 400, errBadToken)
	jn("token empty", join("", fx.freshCode), 400, errBadToken)
	jn("token too short", join(fx.freshToken[:42], fx.freshCode), 400, errBadToken)
	jn("token too long", join(fx.freshToken+"A", fx.freshCode), 400, errBadToken)
	jn("token twice as long", join(fx.freshToken+fx.freshToken, fx.freshCode), 400, errBadToken)
	jn("token with padding", join(fx.freshToken+"=", fx.freshCode), 400, errBadToken)
	jn("token in standard base64", join("+/"+fx.freshToken[2:], fx.freshCode), 400, errBadToken)
	jn("token with a space", join(fx.freshToken[:20]+" "+fx.freshToken[21:], fx.freshCode), 400, errBadToken)
	jn("token with a fragment mark", join("#"+fx.freshToken[1:], fx.freshCode), 400, errBadToken)
	jn("token as hex", join(strings.Repeat("ab", 32), fx.freshCode), 400, errBadToken)
	jn("token with NUL", join(fx.freshToken[:42]+"\x00", fx.freshCode), 400, errBadToken)
	jn("whole link as token", join("https://chat.example.no/#"+fx.freshToken, fx.freshCode), 400, errBadToken)
	jn("code missing", map[string]string{"token": fx.freshToken}, 400, errCodeMissing)
	jn("code empty", join(fx.freshToken, ""), 400, errCodeMissing)
	jn("code blank", join(fx.freshToken, "   "), 400, errCodeMissing)
	jn("code punctuation only", join(fx.freshToken, " - . - "), 400, errCodeMissing)
	jn("code null", `{"token":"`+fx.freshToken+`","code":null}`, 400, errCodeMissing)
	jn("unknown link", join(fx.unknownToken, "tiger 47"), 404, errInviteUnknown)
	jn("used link", join(fx.usedToken, fx.usedCode), 410, errInviteUsed)
	jn("used link, wrong code", join(fx.usedToken, "feil 00"), 410, errInviteUsed)
	jn("expired link", join(fx.expiredToken, fx.expiredCode), 410, errInviteExpired)
	jn("expired link, wrong code", join(fx.expiredToken, "feil 00"), 410, errInviteExpired)
	jn("reissued link", join(fx.revokedToken, fx.revokedCode), 410, errInviteRevoked)
	jn("burned link, right code", join(fx.burnedToken, fx.burnedCode), 410, errInviteRevoked)
	jn("right code after every attempt was used, before the burn", join(fx.usedUpToken, fx.usedUpCode), 410, errInviteRevoked)
	jn("link of a closed conversation", join(fx.closedToken, fx.closedCode), 410, errInviteRevoked)
	jn("wrong code", join(fx.wrongToken, "feil 00"), 403, errCodeWrong, "invite", "audit")
	jn("code of another link", join(fx.wrongToken, fx.freshCode), 403, errCodeWrong, "invite", "audit")

	// Files.
	up := func(name string, body string, headers map[string]string, status int, errcode string, cookie ...string) {
		c := "live"
		if len(cookie) > 0 {
			c = cookie[0]
		}
		add(badRequest{name: "files: " + name, method: "POST", path: "/api/files", body: body, headers: headers, cookie: c, status: status, errcode: errcode})
	}
	one := func(clientID, name, ct string, data []byte) (string, map[string]string) {
		body, contentType := multipartBody(t, clientID, name, ct, data)
		return string(body), map[string]string{"Content-Type": contentType}
	}
	body, h := one(cid(), "a.png", "image/png", pngBytes)
	up("JSON instead of multipart", `{"client_id":"`+cid()+`"}`, nil, 400, errBadJSON)
	up("multipart without boundary", body, map[string]string{"Content-Type": "multipart/form-data"}, 400, errBadJSON)
	up("wrong boundary", body, map[string]string{"Content-Type": "multipart/form-data; boundary=not-the-boundary"}, 400, errBadJSON)
	up("multipart/mixed", body, map[string]string{"Content-Type": strings.Replace(h["Content-Type"], "form-data", "mixed", 1)}, 400, errBadJSON)
	up("no Content-Type", body, map[string]string{"Content-Type": ""}, 400, errBadJSON)
	up("truncated form", body[:len(body)/2], h, 400, errBadJSON)
	up("empty body", "", h, 400, errBadJSON)
	up("form without parts", multipartRaw("b0undary"), map[string]string{"Content-Type": "multipart/form-data; boundary=b0undary"}, 400, errFileMissing)
	body, h = one(cid(), "", "", nil)
	up("no file part", body, h, 400, errFileMissing)
	body, h = multipartWith(t, func(mw *multipart.Writer) {
		require.NoError(t, mw.WriteField("client_id", cid()))
		filePart(t, mw, "file", "a.png", "image/png", pngBytes)
		filePart(t, mw, "file", "b.png", "image/png", pngBytes)
	})
	up("two files", body, h, 400, errFileMissing)
	body, h = multipartWith(t, func(mw *multipart.Writer) {
		require.NoError(t, mw.WriteField("client_id", cid()))
		filePart(t, mw, "file", "a.png", "image/png", pngBytes)
		require.NoError(t, mw.WriteField("caption", "hei"))
	})
	up("unknown form field", body, h, 400, errBadJSON)
	body, h = multipartWith(t, func(mw *multipart.Writer) {
		require.NoError(t, mw.WriteField("client_id", cid()))
		filePart(t, mw, "attachment", "a.png", "image/png", pngBytes)
	})
	up("file under another field name", body, h, 400, errBadJSON)
	body, h = one(cid(), "tom.png", "image/png", []byte{})
	up("empty file", body, h, 400, errFileMissing)
	big := append(append([]byte{}, pngBytes...), bytes.Repeat([]byte{0}, 5000)...)
	body, h = one(cid(), "stor.png", "image/png", big)
	up("file over max_file_bytes", body, h, 413, errFileTooLarge)
	body, h = one(cid(), "enorm.png", "image/png", append(append([]byte{}, pngBytes...), bytes.Repeat([]byte{0}, 200<<10)...))
	up("body over max_file_bytes and the form's room", body, h, 413, errFileTooLarge)
	add(badRequest{name: "files: chunked body over max_file_bytes", method: "POST", path: "/api/files", body: io.MultiReader(strings.NewReader(body)),
		headers: h, cookie: "live", status: 413, errcode: errFileTooLarge})
	body, h = one(cid(), "lur.png", "image/png", pdfBytes)
	up("PDF claiming to be PNG", body, h, 422, errFileTypeMismatch)
	body, h = one(cid(), "lur.pdf", "application/pdf", pngBytes)
	up("PNG claiming to be PDF", body, h, 422, errFileTypeMismatch)
	body, h = one(cid(), "lur.mp4", "video/mp4", pngBytes)
	up("PNG claiming to be video", body, h, 422, errFileTypeMismatch)
	for _, f := range []struct {
		name, fileName, ct string
		data               []byte
	}{
		{"plain text", "notat.txt", "text/plain", []byte("hei på deg")},
		{"HTML disguised as PNG", "x.png", "image/png", []byte("<html><script>alert(1)</script>")},
		{"SVG", "x.svg", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)},
		{"Windows executable", "x.exe", "application/octet-stream", []byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff")},
		{"ELF executable", "x", "", []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00")},
		{"ZIP archive", "bilder.zip", "application/zip", []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00")},
		{"Windows executable with ftyp at offset 4", "x.exe", "video/mp4", []byte("MZ\x90\x00ftypisom\x00\x00\x02\x00isomiso2")},
		{"HTML page with ftyp at offset 4", "x.html", "video/mp4", []byte("<htmftypmp42\x00\x00\x00\x00<script>alert(1)</script>")},
		{"ISO media of an unknown brand", "x.mp4", "video/mp4", []byte("\x00\x00\x00\x18ftypevil\x00\x00\x00\x00evilisom")},
		{"name with path and control characters", "../../etc/\"passwd\r\n.png", "image/png", []byte("plain text, not a picture")},
		{"name with NUL", "a\x00.png", "image/png", []byte("plain text, not a picture")},
	} {
		body, h = one(cid(), f.fileName, f.ct, f.data)
		up("refused type: "+f.name, body, h, 415, errFileTypeRefused)
	}
	body, h = one("", "a.png", "image/png", pngBytes)
	up("client_id missing", body, h, 400, errBadClientID)
	body, h = one("x", "a.png", "image/png", pngBytes)
	up("client_id too short", body, h, 400, errBadClientID)
	body, h = one(strings.Repeat("a", 300), "a.png", "image/png", pngBytes)
	up("client_id too long", body, h, 400, errBadClientID)
	body, h = one("aaaaaaaa/../aaaaaaaa", "a.png", "image/png", pngBytes)
	up("client_id with bad characters", body, h, 400, errBadClientID)
	body, h = one(fx.sentClientID, "a.png", "image/png", pngBytes)
	up("client_id of a text message", body, h, 409, errClientIDReused)
	big = append(append([]byte{}, pngBytes...), bytes.Repeat([]byte{0}, 200<<10)...)
	add(badRequest{name: "files: Content-Length over the limit", method: "POST", path: "/api/files", body: big,
		headers: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, cookie: "live", status: 413, errcode: errFileTooLarge})

	// Downloads.
	for _, d := range []struct{ name, id string }{
		{"unknown id", "o" + strings.Repeat("a", 26)},
		{"numeric id", "12345"},
		{"id of another conversation", fx.otherFile},
		{"id too long", strings.Repeat("a", 81)},
		{"id with encoded slash", "..%2F..%2Fetc%2Fpasswd"},
		{"id with encoded dots and slashes", "%2e%2e%2f%2e%2e%2fetc%2fpasswd"},
		{"id with encoded NUL", "o%00"},
		{"id with invalid UTF-8", "%ff%fe"},
		{"id with quotes", "%22%3E%3Cscript%3E"},
		{"own id with a suffix", fx.ownFile + "x"},
		{"own id in upper case", strings.ToUpper(fx.ownFile)},
	} {
		add(badRequest{name: "download: " + d.name, method: "GET", path: "/api/files/" + d.id, cookie: "live", status: 404, errcode: errFileNotFound})
	}
	add(badRequest{name: "download: another conversation's file with no session", method: "GET", path: "/api/files/" + fx.otherFile, status: 401, errcode: errNoSession})

	// The event stream.
	for _, last := range []string{"abc", "-1", "1.5", "0x10", "1e3", "99999999999999999999", "1,2", "١"} {
		add(badRequest{name: "events: Last-Event-ID " + last, method: "GET", path: "/api/events", headers: map[string]string{"Last-Event-ID": last},
			cookie: "live", status: 400, errcode: errBadSeq})
	}

	// Typing and read state.
	for _, c := range []struct {
		name, body string
	}{{"empty object", `{}`}, {"string", `{"typing":"yes"}`}, {"number", `{"typing":1}`}, {"null", `{"typing":null}`},
		{"unknown field", `{"typing":true,"seq":1}`}, {"trailing data", `{"typing":true}{}`}, {"malformed", `{"typing":`}, {"empty body", ``}, {"array", `[true]`}} {
		add(badRequest{name: "typing: " + c.name, method: "POST", path: "/api/typing", body: c.body, cookie: "live", status: 400, errcode: errBadJSON})
	}
	add(badRequest{name: "typing: text/plain", method: "POST", path: "/api/typing", body: `{"typing":true}`,
		headers: map[string]string{"Content-Type": "text/plain"}, cookie: "live", status: 415, errcode: errBadJSON})
	for _, c := range []struct {
		name, body, errcode string
	}{
		{"seq 0", `{"seq":0}`, errBadSeq}, {"negative seq", `{"seq":-1}`, errBadSeq}, {"seq beyond the conversation", `{"seq":99}`, errBadSeq},
		{"largest seq", `{"seq":9223372036854775807}`, errBadSeq}, {"no seq", `{}`, errBadSeq}, {"seq null", `{"seq":null}`, errBadSeq},
		{"seq as string", `{"seq":"1"}`, errBadJSON}, {"fractional seq", `{"seq":1.5}`, errBadJSON}, {"seq too large for a number", `{"seq":1e30}`, errBadJSON},
		{"seq overflowing int64", `{"seq":9223372036854775808}`, errBadJSON}, {"unknown field", `{"seq":1,"typing":true}`, errBadJSON},
		{"trailing data", `{"seq":1} 2`, errBadJSON}, {"malformed", `{"seq":}`, errBadJSON},
	} {
		add(badRequest{name: "read: " + c.name, method: "POST", path: "/api/read", body: c.body, cookie: "live", status: 400, errcode: c.errcode})
	}

	// Bodies that stop coming before their end: the read deadline cuts them
	// off (bodyDeadline; TestSlowRequestBodiesAreCutOff on a real
	// connection). Here the deadline's error comes from the body itself.
	for _, c := range []struct{ path, cookie, start string }{
		{"/api/join", "", `{"token":"` + fx.freshToken + `","co`},
		{"/api/messages", "live", `{"client_id":"` + fx.clientID() + `","text":"MARKER-skal-`},
		{"/api/typing", "live", `{"typ`},
		{"/api/read", "live", `{"seq":`},
	} {
		add(badRequest{name: "body cut off by the read deadline: " + c.path, method: "POST", path: c.path,
			body: &stalledBody{data: c.start}, cookie: c.cookie, status: 408, errcode: errRequestTimeout})
	}
	// An upload that stops in its file's bytes (its own rolling deadline).
	upload, uploadHeaders := fx.upload()
	upload = upload[:strings.Index(upload, "image/png\r\n\r\n")+len("image/png\r\n\r\n")+8]
	add(badRequest{name: "body cut off by the read deadline: /api/files", method: "POST", path: "/api/files",
		body: &stalledBody{data: upload}, headers: uploadHeaders, cookie: "live", status: 408, errcode: errUploadTimeout})

	// Leaving is always allowed (quick exit must never fail visibly): without a
	// session it changes nothing and still answers 204.
	for _, c := range []string{"", "unknown", "left", "closed", "long"} {
		name := c
		if name == "" {
			name = "no cookie"
		}
		add(badRequest{name: "leave: " + name, method: "POST", path: "/api/leave", body: "", cookie: c, status: 204})
	}
	add(badRequest{name: "leave: beacon without session", method: "POST", path: "/api/leave", body: "",
		headers: map[string]string{"X-Sikkerchat": "", "Content-Type": "text/plain;charset=UTF-8"}, status: 204})
	return rows
}
