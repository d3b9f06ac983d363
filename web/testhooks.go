//go:build sikkerchat_testhooks

package web

// Test hooks stand in for the guest page until it exists. They are compiled
// only with -tags sikkerchat_testhooks, which the integration tests use and
// release builds never do; the bridge logs loudly when they are present.

import (
	"encoding/json"
	"net/http"

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
		eventID, err := s.Connector.SendGuestText(r.Context(), r.PathValue("id"), req.MessageID, req.Text)
		if err != nil {
			writeError(w, http.StatusBadGateway, "NO.SIKKERCHAT.SEND_FAILED", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"event_id": eventID.String()})
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
		}
		out := make([]item, 0, len(entries))
		for _, e := range entries {
			out = append(out, item{e.Seq, e.Direction, e.MatrixEventID.String(), e.Kind, e.Text})
		}
		writeJSON(w, http.StatusOK, out)
	})
}
