// Package web is the guest listener: the only part of sikkerchat meant to face
// the internet. It runs on its own address, apart from the appservice port.
package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/internal/jsonbody"
)

// Server is the guest HTTP server.
type Server struct {
	Connector *bridge.Connector
	Log       zerolog.Logger

	mux    *http.ServeMux
	server *http.Server

	joinLimit    *limiter
	messageLimit *limiter
	fileLimit    *limiter
	ipLimit      *limiter

	uploadSlots   *slots
	downloadSlots *slots
	// transferIdle is how long an upload or download may move no bytes.
	transferIdle time.Duration
	// bodyTimeout is how long any other request's body may take to arrive.
	bodyTimeout time.Duration
	closing     chan struct{}
	// streams counts the event streams served on taken-over connections,
	// which http.Server.Shutdown does not wait for.
	streams  sync.WaitGroup
	stopOnce sync.Once
	// untrustedProxies: private addresses already warned about (warnUntrustedProxy).
	untrustedProxies sync.Map
}

// Attach creates the guest server and registers it to start and stop with the bridge.
func Attach(sc *bridge.Connector) *Server {
	s := New(sc, sc.Bridge.Log.With().Str("component", "guest_web").Logger())
	sc.AddService(s)
	return s
}

// New makes a guest server for a connector (tests use it without a bridge).
func New(sc *bridge.Connector, log zerolog.Logger) *Server {
	rl := sc.Config.Guest.RateLimits
	s := &Server{
		Connector: sc,
		Log:       log,
		mux:       http.NewServeMux(),
		// Joining: a human types a code a few times; a guesser needs thousands.
		joinLimit: newLimiter(rl.JoinsPerMinute, max(1, rl.JoinsPerMinute/2)),
		// Messages and other calls per conversation: a fast typist, not a flood.
		messageLimit: newLimiter(rl.MessagesPerMinute, max(1, rl.MessagesPerMinute/3)),
		// Files: a handful of screenshots in a row.
		fileLimit: newLimiter(rl.FilesPerMinute, max(1, rl.FilesPerMinute/2)),
		// Everything from one address, joined or not.
		ipLimit:       newLimiter(rl.PerAddressPerMinute, max(1, rl.PerAddressPerMinute/5)),
		closing:       make(chan struct{}),
		uploadSlots:   newSlots(uploadsPerConversation),
		downloadSlots: newSlots(downloadsPerConversation),
		transferIdle:  transferIdle,
		bodyTimeout:   bodyTimeout,
	}
	s.routes()
	return s
}

func (s *Server) config() *bridge.Config {
	return &s.Connector.Config
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.registerStatic()
	s.mux.HandleFunc("GET /api/config", s.handleConfig)
	s.mux.HandleFunc("GET /api/session", s.withSession(s.handleSession))
	s.mux.HandleFunc("POST /api/join", s.stateChanging(false, s.limited(s.joinLimit, false, s.handleJoin)))
	s.mux.HandleFunc("GET /api/events", s.withSession(s.handleEvents))
	s.mux.HandleFunc("POST /api/messages", s.stateChanging(false, s.withSession(s.limited(s.messageLimit, true, s.handleMessage))))
	s.mux.HandleFunc("POST /api/files", s.stateChanging(false, s.withSession(s.limited(s.fileLimit, true, s.handleFile))))
	s.mux.HandleFunc("GET /api/files/{id}", s.withSession(s.handleFileDownload))
	s.mux.HandleFunc("POST /api/typing", s.stateChanging(false, s.withSession(s.limited(s.messageLimit, true, s.handleTyping))))
	s.mux.HandleFunc("POST /api/read", s.stateChanging(false, s.withSession(s.limited(s.messageLimit, true, s.handleRead))))
	s.mux.HandleFunc("POST /api/leave", s.stateChanging(true, s.handleLeave))
	s.mux.HandleFunc("/api/", notFound)
	s.mux.HandleFunc("/api", notFound) // else ServeMux redirects it to /api/
	registerTestHooks(s)
}

// Handler is the whole guest listener with its security headers.
func (s *Server) Handler() http.Handler {
	limited := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.limited(s.ipLimit, false, canonicalPath(s.mux.ServeHTTP))(w, r)
	})
	return s.bodyDeadline(securityHeaders(s.instrument(s.recoverer(limited))))
}

func (s *Server) Start(ctx context.Context) error {
	listener, err := net.Listen("tcp", s.config().Guest.Listen)
	if err != nil {
		return err
	}
	s.server = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		// Go's own server errors (TLS noise, malformed requests) go nowhere: they
		// could carry request bytes.
		ErrorLog: nil,
	}
	go func() {
		if err := s.server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Log.Err(err).Msg("Guest listener stopped")
		}
	}()
	s.Log.Info().Str("address", listener.Addr().String()).Msg("Guest listener started")
	return nil
}

func (s *Server) Stop() {
	s.stopOnce.Do(func() { close(s.closing) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.server != nil {
		_ = s.server.Shutdown(ctx)
	}
	// The streams end at once on closing: their pages reconnect to whichever
	// bridge answers next.
	done := make(chan struct{})
	go func() {
		s.streams.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

type apiError struct {
	ErrCode      string `json:"errcode"`
	Error        string `json:"error"`
	AttemptsLeft *int   `json:"attempts_left,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	jsonbody.Write(w, status, v)
}

func writeError(w http.ResponseWriter, status int, errcode, message string) {
	writeJSON(w, status, apiError{ErrCode: errcode, Error: message})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, errNotFound, "Not found")
}

func errorIs(err, target error) bool {
	return errors.Is(err, target)
}

func itoa(n int) string {
	return strconv.Itoa(n)
}
