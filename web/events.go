package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
	history, err := s.Connector.Transcript.Since(ctx, conv.ID, 0)
	if err != nil {
		sub.Close()
		zerolog.Ctx(ctx).Err(err).Msg("Failed to read transcript for guest")
		writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
		return
	}
	cookie, _ := r.Cookie(s.cookieName())
	es := &eventStream{s: s, ctx: context.WithoutCancel(ctx), conv: conv, sub: sub, session: cookie.Value}
	s.Connector.Metrics.GuestStreams.Inc()

	// An idle page should cost little: the stream takes the connection over
	// from net/http, whose goroutine (with the stack the request grew),
	// buffers and background reader go, and waits in a small goroutine of
	// its own. Where the connection cannot be taken (HTTP/2, a test
	// recorder) the handler serves the stream itself.
	raw, err := hijackStream(w)
	if err == nil {
		es.out = raw
		// Counted before the page can see the stream, so a Stop that follows waits for it.
		s.streams.Add(1)
	} else {
		es.out = openStream(w)
	}
	es.historyMax = s.replay(es.out, conv, history, after)
	if es.out.flush() != nil {
		es.end()
		if raw != nil {
			s.streams.Done()
		}
		return
	}
	if raw == nil {
		es.run(ctx.Done())
		return
	}
	watched := make(chan struct{})
	go watchGone(raw.conn, watched)
	go func() {
		defer s.streams.Done()
		es.run(watched)
	}()
}

// eventStream is one open page's stream, after its history: live events
// and a heartbeat until the page goes, the session ends or the bridge stops.
type eventStream struct {
	s          *Server
	ctx        context.Context
	conv       *bridge.Conversation
	sub        *bridge.Subscription
	session    string
	historyMax int64
	out        sseOut
}

// sseOut is where frames go: the ResponseWriter, or the taken-over connection.
type sseOut interface {
	frame(name string, id int64, data any)
	comment(text string)
	flush() error
	close()
}

// run serves the stream until it ends, or gone is closed: the page went.
func (es *eventStream) run(gone <-chan struct{}) {
	defer es.end()
	heartbeat := time.NewTicker(sseHeartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-gone:
			return
		case <-es.s.closing:
			return
		case <-es.sub.Done:
			// Fell behind, or too many streams for this conversation: the page
			// reconnects and catches up from the transcript.
			return
		case <-heartbeat.C:
			if !es.keepAlive() {
				return
			}
		case evt := <-es.sub.C:
			if !es.live(evt) {
				return
			}
		}
		if es.out.flush() != nil {
			return
		}
	}
}

func (es *eventStream) end() {
	es.sub.Close()
	es.s.Connector.Metrics.GuestStreams.Dec()
	es.out.close()
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
func (s *Server) replay(st sseOut, conv *bridge.Conversation, history []*bridge.TranscriptEntry, after int64) (historyMax int64) {
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
// revoked or idle session ends the stream (false). The check runs in a
// goroutine of its own, so that the deep stack of a database call is not
// kept by the idle stream afterwards.
func (es *eventStream) keepAlive() bool {
	checked := make(chan error, 1)
	go func() {
		_, _, err := es.s.Connector.Guests.CheckSession(es.ctx, es.session)
		checked <- err
	}()
	if err := <-checked; err != nil {
		reason := endReason(err)
		if reason == "" {
			// The bridge could not tell (its database is away for a moment):
			// the stream ends without a verdict, the page asks again.
			zerolog.Ctx(es.ctx).Warn().Err(err).Msg("Session check for an open guest stream failed")
			return false
		}
		es.out.frame("closed", 0, map[string]string{"reason": reason})
		_ = es.out.flush()
		return false
	}
	es.out.comment("keep-alive")
	return true
}

// live writes one event from the hub; false ends the stream.
func (es *eventStream) live(evt bridge.GuestEvent) bool {
	s, st, conv, historyMax := es.s, es.out, es.conv, es.historyMax
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
	case errors.Is(err, bridge.ErrConversationNotOpen):
		return "closed"
	default:
		return ""
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

func (st *stream) close() {}

// rawStream is a stream on a connection taken over from net/http: the
// answer's head is written here, the body runs until the connection closes
// (HTTP/1.1 without chunks, Connection: close). Frames are gathered between
// flushes and the buffer let go after each, so an idle stream holds none.
type rawStream struct {
	conn net.Conn
	buf  []byte
	err  error
}

// hijackStream takes the connection over and writes the answer's head with
// the headers set so far (the security headers).
func hijackStream(w http.ResponseWriter) (*rawStream, error) {
	// Whatever the client sent after its request stays unread (the reader
	// is let go): the stream is the connection's last answer.
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	h := w.Header().Clone()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&head)
	head.WriteString("\r\n")
	return &rawStream{conn: conn, buf: head.Bytes()}, nil
}

func (st *rawStream) frame(name string, id int64, data any) {
	b := bytes.NewBuffer(st.buf)
	writeFrame(b, name, id, data)
	st.buf = b.Bytes()
}

func (st *rawStream) comment(text string) {
	st.buf = append(append(append(st.buf, ": "...), text...), "\n\n"...)
}

// flush writes what was gathered, within the write deadline: a reader that
// stops reading cannot hold the stream.
func (st *rawStream) flush() error {
	if st.err != nil || len(st.buf) == 0 {
		return st.err
	}
	_ = st.conn.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	_, st.err = st.conn.Write(st.buf)
	st.buf = nil
	return st.err
}

func (st *rawStream) close() { _ = st.conn.Close() }

// watchGone closes gone when the page goes: a page sends nothing after its
// request, so anything the connection yields (an end, an error, or bytes)
// means it is over. The read waits in the network poller; closing the
// connection ends it.
func watchGone(conn net.Conn, gone chan<- struct{}) {
	_ = conn.SetReadDeadline(time.Time{})
	var b [1]byte
	_, _ = conn.Read(b[:])
	close(gone)
}

func writeFrame(w io.Writer, name string, id int64, data any) {
	payload, _ := json.Marshal(data)
	if id > 0 {
		_, _ = fmt.Fprintf(w, "id: %d\n", id)
	}
	_, _ = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, payload)
}
