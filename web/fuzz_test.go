package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The guest API on arbitrary request bodies: always a JSON answer below 500.
func FuzzGuestAPIBodies(f *testing.F) {
	for _, seed := range []string{`{"token":"x","code":"y"}`, `{"client_id":"aaaaaaaaaaaaaaaa","text":"hei"}`, `{"typing":true}`, `{"seq":1}`, `[]`, `{`, `null`, "\x00", `{"text":"` + strings.Repeat("å", 100) + `"}`} {
		f.Add(seed, "/api/messages")
		f.Add(seed, "/api/join")
	}
	f.Fuzz(func(t *testing.T, body, path string) {
		if !strings.HasPrefix(path, "/api/") || strings.ContainsAny(path, " \r\n#?%") {
			return
		}
		srv := newTestServer(t, newTestConfig(t))
		cookie := srv.join(srv.newInvite(time.Hour))
		res := srv.request(http.MethodPost, path, body, map[string]string{"RemoteAddr": "198.51.100.200:1"}, cookie)
		if res.Code >= 500 {
			t.Fatalf("%s answered %d to %q: %s", path, res.Code, body, res.Body.String())
		}
		if res.Code >= 400 && !strings.HasPrefix(res.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("%s answered %d without JSON", path, res.Code)
		}
	})
}

// Last-Event-ID is guest input too.
func FuzzLastEventID(f *testing.F) {
	for _, seed := range []string{"", "0", "1", "-1", "abc", "99999999999999999999", " 3"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, last string) {
		if strings.ContainsAny(last, "\r\n\x00") {
			return
		}
		srv := newTestServer(t, newTestConfig(t))
		cookie := srv.join(srv.newInvite(time.Hour))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req := httptest.NewRequest(http.MethodGet, "/api/events", nil).WithContext(ctx)
		req.Header.Set("Last-Event-ID", last)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("Last-Event-ID %q answered %d", last, rec.Code)
		}
	})
}
