package web

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
)

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	for _, target := range []string{"/", "/healthz", "/nope", "/api/unknown", "/api/session", "/api/config"} {
		res := ts.request("GET", target, nil, nil)
		h := res.Header()
		csp := h.Get("Content-Security-Policy")
		require.Contains(t, csp, "default-src 'self'", target)
		require.Contains(t, csp, "frame-ancestors 'none'", target)
		require.NotContains(t, csp, "unsafe-inline", target)
		require.Equal(t, "no-referrer", h.Get("Referrer-Policy"), target)
		require.Equal(t, "no-store", h.Get("Cache-Control"), target)
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), target)
	}
}

func TestUnknownPathsGetJSONErrors(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	for _, target := range []string{"/api/whatever", "/nope", "/_test/conversations/x/transcript"} {
		res := ts.request("GET", target, nil, nil)
		require.Equal(t, http.StatusNotFound, res.Code, target)
		require.True(t, strings.HasPrefix(res.Header().Get("Content-Type"), "application/json"), target)
		require.Equal(t, errNotFound, res.errcode(), target)
	}
	res := ts.request("DELETE", "/api/messages", nil, nil)
	require.Equal(t, errNotFound, res.errcode(), "wrong methods get a JSON error too")
}

// A link-preview crawler fetching the link, with or without the fragment, changes nothing.
func TestCrawlerGetConsumesNothing(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	srv := httptest.NewServer(ts.Handler())
	defer srv.Close()
	for _, target := range []string{"/", "/#" + inv.token, "/?t=" + inv.token} {
		req, _ := http.NewRequest("GET", srv.URL+target, nil)
		req.Header.Set("User-Agent", "facebookexternalhit/1.1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, target)
		require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	}
	ts.join(inv)
}

func TestJoin(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)

	res := ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": strings.ToUpper(inv.code) + " "}, nil)
	require.Equal(t, http.StatusOK, res.Code, res.Body.String())
	require.Equal(t, "Politiet – Nettpatruljen", res.json()["unit_name"])
	cookie := res.Result().Cookies()[0]
	require.Equal(t, "__Host-sikkerchat", cookie.Name)
	require.True(t, cookie.HttpOnly)
	require.True(t, cookie.Secure)
	require.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	require.Equal(t, "/", cookie.Path)
	require.Empty(t, cookie.Domain)
	require.GreaterOrEqual(t, len(cookie.Value), 43)

	// Single use: a second browser with the same link is refused.
	res = ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": inv.code}, nil)
	require.Equal(t, http.StatusGone, res.Code)
	require.Equal(t, errInviteUsed, res.errcode())

	require.Eventually(t, func() bool { _, notices := ts.matrix.Snapshot(); return len(notices) == 1 }, 5*time.Second, 10*time.Millisecond)
	conv, err := ts.sc.DB.Conversation.Get(context.Background(), inv.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.StatusActive, conv.Status)

	res = ts.request("GET", "/api/session", nil, nil, cookie)
	require.Equal(t, http.StatusOK, res.Code)
}

func TestJoinErrors(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	valid := ts.newInvite(time.Hour)
	expired := ts.newInvite(-time.Minute)
	unknownToken, _, err := bridge.NewInviteToken()
	require.NoError(t, err)
	cases := []struct {
		name    string
		body    any
		headers map[string]string
		status  int
		errcode string
	}{
		{"no origin", map[string]string{"token": valid.token, "code": valid.code}, map[string]string{"Origin": ""}, 403, errBadOrigin},
		{"foreign origin", map[string]string{"token": valid.token, "code": valid.code}, map[string]string{"Origin": "https://evil.example"}, 403, errBadOrigin},
		{"origin with other scheme", map[string]string{"token": valid.token, "code": valid.code}, map[string]string{"Origin": "http://chat.example.no"}, 403, errBadOrigin},
		{"no custom header", map[string]string{"token": valid.token, "code": valid.code}, map[string]string{"X-Sikkerchat": ""}, 403, errMissingHeader},
		{"bad json", `{"token":`, nil, 400, errBadJSON},
		{"json array", `[]`, nil, 400, errBadJSON},
		{"unknown field", map[string]string{"token": valid.token, "code": valid.code, "admin": "1"}, nil, 400, errBadJSON},
		{"trailing data", `{"token":"x","code":"y"}{}`, nil, 400, errBadJSON},
		{"wrong type", `{"token":1,"code":2}`, nil, 400, errBadJSON},
		{"form content type", `token=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, errBadJSON},
		{"huge body", `{"token":"` + strings.Repeat("a", 600<<10) + `"}`, nil, 413, errTooLarge},
		{"missing token", map[string]string{"code": valid.code}, nil, 400, errBadToken},
		{"malformed token", map[string]string{"token": "abc", "code": valid.code}, nil, 400, errBadToken},
		{"missing code", map[string]string{"token": valid.token}, nil, 400, errCodeMissing},
		{"blank code", map[string]string{"token": valid.token, "code": " - "}, nil, 400, errCodeMissing},
		{"unknown link", map[string]string{"token": unknownToken, "code": "tiger 47"}, nil, 404, errInviteUnknown},
		{"expired link", map[string]string{"token": expired.token, "code": expired.code}, nil, 410, errInviteExpired},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.headers == nil {
				c.headers = map[string]string{}
			}
			c.headers["RemoteAddr"] = fmt.Sprintf("198.51.100.%d:1234", i+1) // apart from the rate limit
			res := ts.request("POST", "/api/join", c.body, c.headers)
			require.Equal(t, c.status, res.Code, res.Body.String())
			require.Equal(t, c.errcode, res.errcode())
			require.Empty(t, res.Result().Cookies())
		})
	}
	ts.join(valid) // none of the bad requests used the invite up
}

func TestWrongCodeFiveTimesBurnsInvite(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	for i := 1; i <= 5; i++ {
		res := ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": "feil 00"}, nil)
		if i < 5 {
			require.Equal(t, http.StatusForbidden, res.Code)
			require.Equal(t, errCodeWrong, res.errcode())
			require.EqualValues(t, 5-i, res.json()["attempts_left"])
		} else {
			require.Equal(t, http.StatusGone, res.Code, ts.logs.String())
			require.Equal(t, errInviteRevoked, res.errcode())
		}
	}
	// Even the right code cannot use a burned link now.
	res := ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": inv.code}, nil)
	require.Equal(t, http.StatusGone, res.Code)
	require.Equal(t, errInviteRevoked, res.errcode())
	_, notices := ts.matrix.Snapshot()
	require.Len(t, notices, 1)
	require.Contains(t, notices[0], "reissue", "the officers are told how to make a new link")
}

func TestReissueRevokesOldLinkAndSessions(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	conv, err := ts.sc.DB.Conversation.Get(context.Background(), inv.conv.ID)
	require.NoError(t, err)
	created, err := ts.sc.Conversations.Reissue(context.Background(), conv, "@officer:example.org")
	require.NoError(t, err)

	res := ts.request("GET", "/api/session", nil, nil, cookie)
	require.Equal(t, http.StatusUnauthorized, res.Code)
	require.Equal(t, errNoSession, res.errcode())
	res = ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": inv.code}, nil)
	require.Equal(t, http.StatusGone, res.Code)

	newToken := created.URL[strings.Index(created.URL, "#")+1:]
	ts.join(createdInvite{conv: conv, token: newToken, code: created.Code})
}

func TestSessionRequired(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	bogus := &http.Cookie{Name: "__Host-sikkerchat", Value: "bm90LWEtc2Vzc2lvbg"}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/session"}, {"GET", "/api/events"}, {"POST", "/api/messages"}, {"POST", "/api/typing"}, {"POST", "/api/read"},
	} {
		for _, cookies := range [][]*http.Cookie{nil, {bogus}} {
			res := ts.request(c.method, c.path, map[string]any{}, nil, cookies...)
			require.Equal(t, http.StatusUnauthorized, res.Code, c.path)
			require.Equal(t, errNoSession, res.errcode(), c.path)
		}
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.Guest.SessionIdleTimeout = "50ms"
	ts := newTestServer(t, cfg)
	cookie := ts.join(ts.newInvite(time.Hour))
	time.Sleep(100 * time.Millisecond)
	res := ts.request("GET", "/api/session", nil, nil, cookie)
	require.Equal(t, http.StatusUnauthorized, res.Code)
	require.Equal(t, errSessionExpired, res.errcode())
	res = ts.request("GET", "/api/session", nil, nil, cookie)
	require.Equal(t, errNoSession, res.errcode(), "an expired session stays dead")
}

func TestMessages(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	clientID := "c0ffee00-1111-2222-3333-444455556666"

	res := ts.request("POST", "/api/messages", map[string]string{"client_id": clientID, "text": "Hei, jeg trenger hjelp"}, nil, cookie)
	require.Equal(t, http.StatusAccepted, res.Code, res.Body.String())
	require.Equal(t, "stored", res.json()["status"])
	seq := res.json()["seq"]

	// The retried POST (its answer was lost) is the same message, not a second one.
	res = ts.request("POST", "/api/messages", map[string]string{"client_id": clientID, "text": "Hei, jeg trenger hjelp"}, nil, cookie)
	require.Equal(t, http.StatusOK, res.Code)
	require.Equal(t, seq, res.json()["seq"])

	res = ts.request("POST", "/api/messages", map[string]string{"client_id": clientID, "text": "noe annet"}, nil, cookie)
	require.Equal(t, http.StatusConflict, res.Code)
	require.Equal(t, errClientIDReused, res.errcode())

	require.Eventually(t, func() bool { sent, _ := ts.matrix.Snapshot(); return len(sent) == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	sent, _ := ts.matrix.Snapshot()
	require.Equal(t, []string{"Hei, jeg trenger hjelp"}, sent, "exactly one Matrix event")

	for _, c := range []struct {
		name    string
		body    any
		status  int
		errcode string
	}{
		{"empty", map[string]string{"client_id": "aaaaaaaaaaaaaaaa1", "text": ""}, 400, errEmptyMessage},
		{"whitespace", map[string]string{"client_id": "aaaaaaaaaaaaaaaa2", "text": " \n\t "}, 400, errEmptyMessage},
		{"too long", map[string]string{"client_id": "aaaaaaaaaaaaaaaa3", "text": strings.Repeat("å", 4001)}, 413, errMessageTooLong},
		{"huge", `{"client_id":"aaaaaaaaaaaaaaaa4","text":"` + strings.Repeat("a", 600<<10) + `"}`, 413, errTooLarge},
		{"short client id", map[string]string{"client_id": "abc", "text": "hei"}, 400, errBadClientID},
		{"client id with symbols", map[string]string{"client_id": "aaaaaaaaaaaaaaaa/../", "text": "hei"}, 400, errBadClientID},
		{"long client id", map[string]string{"client_id": strings.Repeat("a", 65), "text": "hei"}, 400, errBadClientID},
		{"missing client id", map[string]string{"text": "hei"}, 400, errBadClientID},
		{"bad json", `{"client_id":`, 400, errBadJSON},
		{"text not a string", `{"client_id":"aaaaaaaaaaaaaaaa5","text":5}`, 400, errBadJSON},
	} {
		res := ts.request("POST", "/api/messages", c.body, nil, cookie)
		require.Equal(t, c.status, res.Code, c.name+": "+res.Body.String())
		require.Equal(t, c.errcode, res.errcode(), c.name)
	}
	res = ts.request("POST", "/api/messages", map[string]string{"client_id": "aaaaaaaaaaaaaaaa6", "text": strings.Repeat("å", 4000)}, nil, cookie)
	require.Equal(t, http.StatusAccepted, res.Code, "exactly the maximum is fine")
}

func TestMessagesWaitForHomeserver(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	cookie := ts.join(ts.newInvite(time.Hour))
	ts.matrix.Lock()
	ts.matrix.Failing = true
	ts.matrix.Unlock()
	for i, text := range []string{"en", "to", "tre"} {
		res := ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("b", 16) + string(rune('a'+i)), "text": text}, nil, cookie)
		require.Equal(t, http.StatusAccepted, res.Code, "the guest's message is stored even while the homeserver is down")
	}
	time.Sleep(100 * time.Millisecond)
	ts.matrix.Lock()
	ts.matrix.Failing = false
	ts.matrix.Unlock()
	ts.sc.Outbox.RunOnce(context.Background())
	sent, _ := ts.matrix.Snapshot()
	require.Equal(t, []string{"en", "to", "tre"}, sent, "delivered once each, in order")
	require.Equal(t, 3.0, metricValue(t, ts.sc.Metrics, "sikkerchat_messages_total", "to_room", "text"), "counted once each")
	require.GreaterOrEqual(t, metricValue(t, ts.sc.Metrics, "sikkerchat_errors_total", "homeserver_send"), 1.0, "the failed sends are counted")
}

// metricValue reads a counter or gauge with the given label values (in label order).
func metricValue(t *testing.T, m *bridge.Metrics, name string, labels ...string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, metric := range f.GetMetric() {
			if len(metric.GetLabel()) != len(labels) {
				continue
			}
			for i, l := range metric.GetLabel() {
				if l.GetValue() != labels[i] {
					continue next
				}
			}
			if c := metric.GetCounter(); c != nil {
				return c.GetValue()
			}
			return metric.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// A send that reached the room but whose answer was lost (the bridge died, the
// connection broke) is found in the room on the next try, not sent again, even
// when the homeserver has forgotten the transaction ID.
func TestLostSendAnswerIsNotSentTwice(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	ts.matrix.Lock()
	ts.matrix.LoseAnswers, ts.matrix.ForgetTxnIDs = 1, true
	ts.matrix.Unlock()
	res := ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("c", 16), "text": "bare én gang"}, nil, cookie)
	require.Equal(t, http.StatusAccepted, res.Code)
	conv := inv.conv.ID
	require.Eventually(t, func() bool {
		entries, err := ts.sc.Transcript.Since(context.Background(), conv, 0)
		return err == nil && len(entries) == 1 && entries[0].Status == bridge.EntryDelivered
	}, 20*time.Second, 20*time.Millisecond, "delivered after the lost answer")
	sent, _ := ts.matrix.Snapshot()
	require.Equal(t, []string{"bare én gang"}, sent, "in the room once")
}

// Typing marks never hold up the guest's requests while the homeserver does
// not answer (the browser has few connections; stuck typing calls would queue
// the guest's messages behind them), and only the newest one waits.
func TestTypingDoesNotWaitForHomeserver(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	cookie := ts.join(ts.newInvite(time.Hour))
	stall := make(chan struct{})
	ts.matrix.Lock()
	ts.matrix.Stall = stall
	ts.matrix.Unlock()
	for i := range 10 {
		res := ts.request("POST", "/api/typing", map[string]bool{"typing": i%2 == 0}, nil, cookie)
		require.Equal(t, http.StatusNoContent, res.Code, "answered while the homeserver hangs")
	}
	res := ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("d", 16), "text": "hei"}, nil, cookie)
	require.Equal(t, http.StatusAccepted, res.Code)
	close(stall)
	require.Eventually(t, func() bool {
		ts.matrix.Lock()
		defer ts.matrix.Unlock()
		n := len(ts.matrix.Typing)
		return n >= 1 && !ts.matrix.Typing[n-1]
	}, 10*time.Second, 5*time.Millisecond, "the newest typing state arrives")
	ts.matrix.Lock()
	defer ts.matrix.Unlock()
	require.LessOrEqual(t, len(ts.matrix.Typing), 2, "the stale ones were dropped, not queued")
}

func TestTypingAndRead(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	cookie := ts.join(ts.newInvite(time.Hour))
	res := ts.request("POST", "/api/typing", map[string]bool{"typing": true}, nil, cookie)
	require.Equal(t, http.StatusNoContent, res.Code)
	res = ts.request("POST", "/api/typing", map[string]string{"typing": "yes"}, nil, cookie)
	require.Equal(t, http.StatusBadRequest, res.Code)
	res = ts.request("POST", "/api/typing", `{}`, nil, cookie)
	require.Equal(t, http.StatusBadRequest, res.Code)
	require.Eventually(t, func() bool {
		ts.matrix.Lock()
		defer ts.matrix.Unlock()
		return len(ts.matrix.Typing) == 1 && ts.matrix.Typing[0]
	}, 10*time.Second, 5*time.Millisecond, "typing reaches the room")

	res = ts.request("POST", "/api/read", map[string]int{"seq": 0}, nil, cookie)
	require.Equal(t, http.StatusBadRequest, res.Code)
	require.Equal(t, errBadSeq, res.errcode())
	res = ts.request("POST", "/api/read", map[string]int{"seq": 99}, nil, cookie)
	require.Equal(t, http.StatusBadRequest, res.Code)
}

func TestLeaveEndsSessionOnly(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	// navigator.sendBeacon: no custom header, text/plain.
	res := ts.request("POST", "/api/leave", "", map[string]string{"X-Sikkerchat": "", "Content-Type": "text/plain;charset=UTF-8"}, cookie)
	require.Equal(t, http.StatusNoContent, res.Code)
	require.Equal(t, -1, res.Result().Cookies()[0].MaxAge)
	res = ts.request("GET", "/api/session", nil, nil, cookie)
	require.Equal(t, http.StatusUnauthorized, res.Code)
	conv, err := ts.sc.DB.Conversation.Get(context.Background(), inv.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.StatusActive, conv.Status, "the conversation stays open for the police")

	res = ts.request("POST", "/api/leave", "", map[string]string{"Origin": "https://evil.example"}, cookie)
	require.Equal(t, http.StatusForbidden, res.Code)
}

func TestJoinRateLimitedPerIP(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	unknownToken, _, err := bridge.NewInviteToken()
	require.NoError(t, err)
	var limited bool
	for range 20 {
		res := ts.request("POST", "/api/join", map[string]string{"token": unknownToken, "code": "x 1"}, nil)
		if res.Code == http.StatusTooManyRequests {
			require.Equal(t, errRateLimited, res.errcode())
			require.NotEmpty(t, res.Header().Get("Retry-After"))
			limited = true
			break
		}
	}
	require.True(t, limited)
}

func TestEventsStreamHistoryAndLive(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	res := ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("c", 16), "text": "først"}, nil, cookie)
	require.Equal(t, http.StatusAccepted, res.Code)

	srv := httptest.NewServer(ts.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/event-stream")
	lines := make(chan string, 100)
	go func() {
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
	}()
	expect := func(want string) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case line, ok := <-lines:
				require.True(t, ok, "stream ended before %q", want)
				if strings.Contains(line, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q in the stream", want)
			}
		}
	}
	expect("id: 1")
	expect(`"text":"først"`)

	// An officer message arrives live.
	entry := &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: "$officer1", CreatedAt: time.Now(), Kind: "text", Text: "Hei fra politiet"}
	_, err = ts.sc.Transcript.Append(ctx, inv.conv.ID, entry)
	require.NoError(t, err)
	ts.sc.Hub.Publish(inv.conv.ID, bridge.GuestEvent{Kind: bridge.GuestEventMessage, Entry: entry})
	expect(`"text":"Hei fra politiet"`)
	ts.sc.Hub.Publish(inv.conv.ID, bridge.GuestEvent{Kind: bridge.GuestEventClosed, Reason: "closed"})
	expect("event: closed")
}

func TestEventsResumeWithLastEventID(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	cookie := ts.join(ts.newInvite(time.Hour))
	for i := range 3 {
		ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("d", 16) + string(rune('a'+i)), "text": "m" + string(rune('1'+i))}, nil, cookie)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req := httptest.NewRequest("GET", "/api/events", nil).WithContext(ctx)
	req.AddCookie(cookie)
	req.Header.Set("Last-Event-ID", "2")
	rec := httptest.NewRecorder()
	ts.Handler().ServeHTTP(rec, req)
	body := rec.Body.String()
	require.NotContains(t, body, `"text":"m1"`)
	require.NotContains(t, body, `"text":"m2"`)
	require.Contains(t, body, `"text":"m3"`)

	req = httptest.NewRequest("GET", "/api/events", nil)
	req.AddCookie(cookie)
	req.Header.Set("Last-Event-ID", "abc")
	rec = httptest.NewRecorder()
	ts.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusBadRequest, rec.Code)
}

func TestNothingSecretInLogs(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	ts.request("POST", "/api/join", map[string]string{"token": inv.token, "code": "galt 99"}, nil)
	cookie := ts.join(inv)
	ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("e", 16), "text": "MARKER-hemmelig"}, nil, cookie)
	ts.request("POST", "/api/messages", map[string]string{"client_id": "bad", "text": "MARKER-hemmelig"}, nil, cookie)
	time.Sleep(50 * time.Millisecond)
	logs := ts.logs.String()
	for _, secret := range []string{inv.token, inv.code, "galt 99", cookie.Value, "MARKER-hemmelig"} {
		require.NotContains(t, logs, secret)
	}
}

func TestReleaseBuildHasNoTestHooks(t *testing.T) {
	if testHooksCompiled {
		t.Skip("built with sikkerchat_testhooks")
	}
	ts := newTestServer(t, newTestConfig(t))
	res := ts.request("POST", "/_test/conversations/x/guest-text", map[string]string{}, nil)
	require.Equal(t, http.StatusNotFound, res.Code)
}

func TestOfficerEditAndDeleteReplaceInPlace(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	ctx := context.Background()
	for i, text := range []string{"skrivefeil", "feil mottaker"} {
		entry := &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: id.EventID(fmt.Sprintf("$o%d", i)), CreatedAt: time.Now(), Kind: "text", Text: text}
		_, err := ts.sc.Transcript.Append(ctx, inv.conv.ID, entry)
		require.NoError(t, err)
	}
	require.NoError(t, ts.sc.Officers.Revise(ctx, inv.conv.ID, "$o0", func(e *bridge.TranscriptEntry) { e.Text, e.Edited = "rettet", true }))
	require.NoError(t, ts.sc.Officers.Revise(ctx, inv.conv.ID, "$o1", func(e *bridge.TranscriptEntry) { e.Text, e.Deleted = "", true }))
	require.NoError(t, ts.sc.Officers.Revise(ctx, inv.conv.ID, "$unknown", func(e *bridge.TranscriptEntry) { e.Text = "x" }))

	ctx2, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	req := httptest.NewRequest("GET", "/api/events", nil).WithContext(ctx2)
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	ts.Handler().ServeHTTP(rec, req)
	body := rec.Body.String()
	require.Contains(t, body, `"text":"rettet"`)
	require.Contains(t, body, `"edited":true`)
	require.Contains(t, body, `"deleted":true`)
	require.NotContains(t, body, "skrivefeil")
	require.NotContains(t, body, "feil mottaker")
}

func TestLimitKeyGroupsIPv6Networks(t *testing.T) {
	require.Equal(t, "203.0.113.7", limitKey("203.0.113.7"))
	require.Equal(t, limitKey("2001:db8:1:2::1"), limitKey("2001:db8:1:2:ffff::9"))
	require.NotEqual(t, limitKey("2001:db8:1:2::1"), limitKey("2001:db8:1:3::1"))
}

func TestUndeliverableMessageDoesNotBlockTheRest(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	ts.matrix.Lock()
	ts.matrix.Refuse = "MARKER-altfor-stor"
	ts.matrix.Unlock()
	for i, text := range []string{"før", "MARKER-altfor-stor", "etter"} {
		res := ts.request("POST", "/api/messages", map[string]string{"client_id": strings.Repeat("u", 16) + string(rune('a'+i)), "text": text}, nil, cookie)
		require.Equal(t, http.StatusAccepted, res.Code)
	}
	require.Eventually(t, func() bool { sent, _ := ts.matrix.Snapshot(); return len(sent) == 2 }, 5*time.Second, 10*time.Millisecond)
	sent, notices := ts.matrix.Snapshot()
	require.Equal(t, []string{"før", "etter"}, sent)
	require.Eventually(t, func() bool { _, notices = ts.matrix.Snapshot(); return len(notices) == 2 }, 5*time.Second, 10*time.Millisecond,
		"the officers are told (after the join notice)")
	require.NotContains(t, notices[1], "MARKER", "the notice carries no content")
	entry, err := ts.sc.Transcript.ByClientID(context.Background(), inv.conv.ID, strings.Repeat("u", 16)+"b")
	require.NoError(t, err)
	require.Equal(t, bridge.EntryFailed, entry.Status)
}

// Behind a proxy on a private network that is not trusted (Docker's gateway),
// every guest would share one rate limit: the bridge says so, once per
// address, without logging the forwarded addresses.
func TestUntrustedPrivateProxyIsWarnedAbout(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	for i := range 3 {
		res := ts.request("GET", "/api/config", nil, map[string]string{"RemoteAddr": "172.18.0.5:40000", "X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i+1)})
		require.Equal(t, http.StatusOK, res.Code)
	}
	ts.request("GET", "/api/config", nil, map[string]string{"RemoteAddr": "172.18.0.6:40000", "X-Forwarded-For": "198.51.100.9"})
	// Not a proxy, or a trusted one, or a public address: nothing to say.
	ts.request("GET", "/api/config", nil, map[string]string{"RemoteAddr": "10.0.0.7:40000"})
	ts.request("GET", "/api/config", nil, map[string]string{"RemoteAddr": "127.0.0.1:40000", "X-Forwarded-For": "198.51.100.10"})
	ts.request("GET", "/api/config", nil, map[string]string{"RemoteAddr": "203.0.113.50:40000", "X-Forwarded-For": "198.51.100.11"})
	logs := ts.logs.String()
	require.Equal(t, 2, strings.Count(logs, "proxy_address"), logs)
	require.Contains(t, logs, `"proxy_address":"172.18.0.5"`)
	require.Contains(t, logs, `"proxy_address":"172.18.0.6"`)
	require.NotContains(t, logs, "198.51.100.", "the citizens' addresses are not logged")
}
