package appservice

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// recordedExchange is one request/response pair as Synapse answers it
// (shapes from the Synapse admin API documentation for Delete Room v2).
type recordedExchange struct {
	method, path string
	wantBody     map[string]any
	status       int
	response     string
}

func replay(t *testing.T, exchanges []recordedExchange) *httptest.Server {
	t.Helper()
	i := 0
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Less(t, i, len(exchanges), "unexpected request %s %s", r.Method, r.URL.EscapedPath())
		ex := exchanges[i]
		i++
		require.Equal(t, ex.method, r.Method)
		require.Equal(t, ex.path, r.URL.EscapedPath())
		require.Equal(t, "Bearer admin-token", r.Header.Get("Authorization"))
		if ex.wantBody != nil {
			var got map[string]any
			data, _ := io.ReadAll(r.Body)
			require.NoError(t, json.Unmarshal(data, &got))
			require.Equal(t, ex.wantBody, got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ex.status)
		_, _ = io.WriteString(w, ex.response)
	}))
}

func TestSynapsePurgeWaitsForCompletion(t *testing.T) {
	srv := replay(t, []recordedExchange{
		{"DELETE", "/_synapse/admin/v2/rooms/%21abc:example.org", map[string]any{"block": true, "purge": true, "force_purge": true},
			200, `{"delete_id": "delete_id_123"}`},
		{"GET", "/_synapse/admin/v2/rooms/delete_status/delete_id_123", nil, 200,
			`{"status": "purging", "shutdown_room": {"kicked_users": ["@sikkerchat_x:example.org"], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": null}}`},
		{"GET", "/_synapse/admin/v2/rooms/delete_status/delete_id_123", nil, 200,
			`{"status": "complete", "shutdown_room": {"kicked_users": ["@sikkerchat_x:example.org"], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": null}}`},
	})
	defer srv.Close()
	s := &SynapseAdmin{AdminAPI: AdminAPI{BaseURL: srv.URL, Token: "admin-token"}, PollInterval: time.Millisecond}
	require.NoError(t, s.PurgeRoom(context.Background(), "!abc:example.org"))
}

func TestSynapsePurgeReportsFailure(t *testing.T) {
	srv := replay(t, []recordedExchange{
		{"DELETE", "/_synapse/admin/v2/rooms/%21abc:example.org", nil, 200, `{"delete_id": "d2"}`},
		{"GET", "/_synapse/admin/v2/rooms/delete_status/d2", nil, 200, `{"status": "failed", "error": "Room is being purged"}`},
	})
	defer srv.Close()
	s := &SynapseAdmin{AdminAPI: AdminAPI{BaseURL: srv.URL, Token: "admin-token"}, PollInterval: time.Millisecond}
	require.ErrorContains(t, s.PurgeRoom(context.Background(), "!abc:example.org"), "Room is being purged")
}

func TestSynapsePurgeRefusedToken(t *testing.T) {
	srv := replay(t, []recordedExchange{
		{"DELETE", "/_synapse/admin/v2/rooms/%21abc:example.org", nil, 403, `{"errcode": "M_FORBIDDEN", "error": "You are not a server admin"}`},
	})
	defer srv.Close()
	s := &SynapseAdmin{AdminAPI: AdminAPI{BaseURL: srv.URL, Token: "admin-token"}}
	err := s.PurgeRoom(context.Background(), "!abc:example.org")
	var adminErr *AdminError
	require.ErrorAs(t, err, &adminErr)
	require.Equal(t, 403, adminErr.Status)
}

func TestDendritePurge(t *testing.T) {
	srv := replay(t, []recordedExchange{
		{"POST", "/_dendrite/admin/purgeRoom/%21abc:localhost", nil, 200, `{}`},
	})
	defer srv.Close()
	d := &DendriteAdmin{AdminAPI{BaseURL: srv.URL, Token: "admin-token"}}
	require.NoError(t, d.PurgeRoom(context.Background(), "!abc:localhost"))
}
