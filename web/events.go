package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// The guest's event stream (GET /api/v1/events): the transcript so far, then
// live events, as server-sent events.

const (
	sseHeartbeat    = 20 * time.Second
	sseWriteTimeout = 30 * time.Second
)

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	conv := conversationOf(r)
	after, ok := resumePosition(r)
	if !ok {
		writeError(w, http.StatusBadRequest, errBadSeq, "Last-Event-ID must be a message number")
		return
	}
	// Subscribe before reading history, so nothing falls between the two.
	sub := s.Connector.Hub.Subscribe(conv.ID)
	defer sub.Close()
	history, err := s.Connector.Transcript.Since(ctx, conv.ID, 0)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to read transcript for guest")
		writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
		return
	}
	s.Connector.Metrics.GuestStreams.Inc()
	defer s.Connector.Metrics.GuestStreams.Dec()

	st := openStream(w)
	historyMax := s.replay(st, conv, history, after)
	if st.flush() != nil {
		return
	}
	heartbeat := time.NewTicker(sseHeartbeat)
	defer heartbeat.Stop()
	cookie, _ := r.Cookie(s.cookieName())
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-sub.Done:
			// Fell behind, or too many streams for this conversation: the page
			// reconnects and catches up from the transcript.
			return
		case <-heartbeat.C:
			if !s.keepAlive(ctx, st, cookie.Value) {
				return
			}
		case evt := <-sub.C:
			if !s.live(st, conv, evt, historyMax) {
				return
			}
		}
		if st.flush() != nil {
			return
		}
	}
}

// resumePosition is the seq the page has already seen (Last-Event-ID), 0 for
// a fresh page; false if the header is not a message number.
func resumePosition(r *http.Request) (int64, bool) {
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(last, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// replay writes the transcript: what the page has not seen in full, and for
// what it has seen only what may have changed since. It returns the highest
// seq the history carried.
func (s *Server) replay(st *stream, conv *bridge.Conversation, history []*bridge.TranscriptEntry, after int64) (historyMax int64) {
	for _, e := range history {
		frame := s.messageFrame(conv, e)
		switch {
		case e.Seq > after:
			st.frame("message", e.Seq, frame)
		case e.Direction == bridge.FromGuest:
			// Already shown: only its delivery state may have moved on meanwhile.
			st.frame("status", 0, statusFrame(frame))
		case e.Edited || e.Deleted:
			st.frame("message", 0, frame)
		}
		historyMax = max(historyMax, e.Seq)
	}
	return historyMax
}

// keepAlive runs at every heartbeat: the open page counts as presence, and a
// revoked or idle session ends the stream (false).
func (s *Server) keepAlive(ctx context.Context, st *stream, session string) bool {
	if _, _, err := s.Connector.Guests.CheckSession(ctx, session); err != nil {
		st.frame("closed", 0, map[string]string{"reason": endReason(err)})
		_ = st.flush()
		return false
	}
	st.comment("keep-alive")
	return true
}

// live writes one event from the hub; false ends the stream.
func (s *Server) live(st *stream, conv *bridge.Conversation, evt bridge.GuestEvent, historyMax int64) bool {
	switch evt.Kind {
	case bridge.GuestEventMessage:
		// Only what the history already carried is skipped; live events may
		// come in any order (the page places them by seq).
		if evt.Entry.Seq <= historyMax && !evt.Revision {
			return true
		}
		id := evt.Entry.Seq
		if evt.Revision {
			id = 0 // the resume position never moves back; a reconnect re-sends revisions
		}
		st.frame("message", id, s.messageFrame(conv, evt.Entry))
		if !evt.Revision && evt.Entry.Direction == bridge.ToGuest {
			if st.flush() != nil {
				return false
			}
			s.Connector.Metrics.ShownToGuest(evt.Entry.MatrixEventID.String())
		}
	case bridge.GuestEventStatus:
		st.frame("status", 0, statusFrame(s.messageFrame(conv, evt.Entry)))
	case bridge.GuestEventTyping:
		st.frame("typing", 0, map[string]bool{"typing": evt.Typing})
	case bridge.GuestEventClosed:
		st.frame("closed", 0, map[string]string{"reason": evt.Reason})
		_ = st.flush()
		return false
	}
	return true
}

func statusFrame(m sseMessage) map[string]any {
	return map[string]any{"seq": m.Seq, "client_id": m.ClientID, "status": m.Status}
}

// endReason names why a session check failed, in the words the page knows.
func endReason(err error) string {
	switch {
	case errors.Is(err, bridge.ErrSessionIdle):
		return "session_expired"
	case errors.Is(err, bridge.ErrNoSession):
		return "session_ended"
	default:
		return "closed"
	}
}

// stream frames server-sent events. Every write first moves the write
// deadline, so a reader that stops reading cannot hold the handler forever.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func openStream(w http.ResponseWriter) *stream {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("X-Accel-Buffering", "no")
	st := &stream{w: w, rc: http.NewResponseController(w)}
	st.deadline()
	w.WriteHeader(http.StatusOK)
	return st
}

func (st *stream) deadline() { _ = st.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)) }

func (st *stream) frame(name string, id int64, data any) {
	st.deadline()
	writeFrame(st.w, name, id, data)
}

func (st *stream) comment(text string) {
	st.deadline()
	_, _ = io.WriteString(st.w, ": "+text+"\n\n")
}

func (st *stream) flush() error { return st.rc.Flush() }

func writeFrame(w io.Writer, name string, id int64, data any) {
	payload, _ := json.Marshal(data)
	if id > 0 {
		_, _ = fmt.Fprintf(w, "id: %d\n", id)
	}
	_, _ = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, payload)
}
