//go:build sikkerchat_testhooks

package web

// Test hooks stand in for the guest page until it exists. They are compiled
// only with -tags sikkerchat_testhooks, which the integration tests use and
// release builds never do; the bridge logs loudly when they are present.

import (
	"encoding/json"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/sikkerchat/sikkerchat/bridge"
)

const testHooksCompiled = true

func registerTestHooks(s *Server) {
	s.Log.Warn().Msg("Test hooks are compiled in: this build must never face the internet")
	s.mux.HandleFunc("POST /_test/conversations/{id}/guest-text", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			MessageID string `json:"message_id"`
			Text      string `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.MessageID == "" {
			writeError(w, http.StatusBadRequest, "NO.SIKKERCHAT.BAD_JSON", "Bad request")
			return
		}
		ctx := r.Context()
		conv, err := s.Connector.DB.Conversation.Get(ctx, r.PathValue("id"))
		if err != nil || conv == nil {
			writeError(w, http.StatusNotFound, "NO.SIKKERCHAT.NOT_FOUND", "no such conversation")
			return
		}
		entry, _, err := s.Connector.Guests.QueueText(ctx, conv, req.MessageID, req.Text)
		if err != nil {
			writeError(w, http.StatusBadRequest, "NO.SIKKERCHAT.SEND_FAILED", err.Error())
			return
		}
		// The hook waits for delivery so that tests can match the Matrix event.
		for range 600 {
			if e, _ := s.Connector.Transcript.BySeq(ctx, conv.ID, entry.Seq); e != nil && e.MatrixEventID != "" {
				writeJSON(w, http.StatusOK, map[string]string{"event_id": e.MatrixEventID.String()})
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		writeError(w, http.StatusGatewayTimeout, "NO.SIKKERCHAT.SEND_FAILED", "not delivered in 30 s")
	})
	// The benchmark's view of the bridge's own share of each message's time.
	s.Connector.Metrics.Samples = &bridge.SampleRecorder{}
	s.mux.HandleFunc("POST /_test/timings", func(w http.ResponseWriter, r *http.Request) {
		s.Connector.Metrics.Samples.Enable()
		writeJSON(w, http.StatusOK, map[string]string{})
	})
	s.mux.HandleFunc("GET /_test/timings", func(w http.ResponseWriter, r *http.Request) {
		out := map[string][]float64{}
		for path, samples := range s.Connector.Metrics.Samples.Take() {
			ms := make([]float64, len(samples))
			for i, d := range samples {
				ms[i] = float64(d.Microseconds()) / 1000
			}
			slices.Sort(ms)
			out[path] = ms
		}
		writeJSON(w, http.StatusOK, out)
	})
	// Idle guest sessions without Matrix rooms, for the memory benchmark.
	s.mux.HandleFunc("POST /_test/bench-sessions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Count int `json:"count"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Count < 1 || req.Count > 20000 {
			writeError(w, http.StatusBadRequest, "NO.SIKKERCHAT.BAD_JSON", "count must be 1-20000")
			return
		}
		cookies := make([]string, 0, req.Count)
		for range req.Count {
			token, _, err := s.Connector.Guests.BenchSession(r.Context())
			if err != nil {
				writeError(w, http.StatusInternalServerError, "NO.SIKKERCHAT.UNKNOWN", err.Error())
				return
			}
			cookies = append(cookies, token)
		}
		writeJSON(w, http.StatusOK, map[string]any{"cookie_name": s.cookieName(), "sessions": cookies})
	})
	// Memory as the runtime sees it, after a collection (RSS comes from /proc).
	s.mux.HandleFunc("GET /_test/memory", func(w http.ResponseWriter, r *http.Request) {
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		writeJSON(w, http.StatusOK, map[string]any{"heap_inuse": ms.HeapInuse, "stack_inuse": ms.StackInuse,
			"sys": ms.Sys, "goroutines": runtime.NumGoroutine()})
	})
	s.mux.HandleFunc("GET /_test/conversations/{id}/rows", func(w http.ResponseWriter, r *http.Request) {
		counts, err := s.Connector.DB.RowsOf(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, http.StatusInternalServerError, "NO.SIKKERCHAT.UNKNOWN", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, counts)
	})
	s.mux.HandleFunc("GET /_test/conversations/{id}/transcript", func(w http.ResponseWriter, r *http.Request) {
		entries, err := s.Connector.Transcript.Since(r.Context(), r.PathValue("id"), 0)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "NO.SIKKERCHAT.UNKNOWN", err.Error())
			return
		}
		type item struct {
			Seq           int64            `json:"seq"`
			Direction     bridge.Direction `json:"direction"`
			MatrixEventID string           `json:"matrix_event_id"`
			Kind          string           `json:"kind"`
			Text          string           `json:"text"`
			ClientID      string           `json:"client_id"`
			Status        string           `json:"status"`
		}
		out := make([]item, 0, len(entries))
		for _, e := range entries {
			out = append(out, item{e.Seq, e.Direction, e.MatrixEventID.String(), e.Kind, e.Text, e.ClientID, string(e.Status)})
		}
		writeJSON(w, http.StatusOK, out)
	})
}
