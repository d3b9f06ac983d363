package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func newTestServer() *Server {
	s := &Server{mux: http.NewServeMux()}
	s.routes()
	return s
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	s := newTestServer()
	for _, target := range []string{"/healthz", "/nope", "/api/unknown"} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		h := rec.Header()
		require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'self'", target)
		require.Contains(t, h.Get("Content-Security-Policy"), "frame-ancestors 'none'", target)
		require.NotContains(t, h.Get("Content-Security-Policy"), "unsafe-inline", target)
		require.Equal(t, "no-referrer", h.Get("Referrer-Policy"), target)
		require.Equal(t, "no-store", h.Get("Cache-Control"), target)
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), target)
	}
}

func TestUnknownPathsGetJSONErrors(t *testing.T) {
	s := newTestServer()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/whatever", strings.NewReader("{")))
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json"))
	var body apiError
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Equal(t, "NO.SIKKERCHAT.NOT_FOUND", body.ErrCode)
}

func TestReleaseBuildHasNoTestHooks(t *testing.T) {
	if testHooksCompiled {
		t.Skip("built with sikkerchat_testhooks")
	}
	s := newTestServer()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_test/conversations/x/transcript", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
}
