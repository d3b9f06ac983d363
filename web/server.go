// Package web is the guest listener: the only part of sikkerchat meant to face
// the internet. It runs on its own address, apart from the appservice port.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// Server is the guest HTTP server.
type Server struct {
	Connector *bridge.Connector
	Log       zerolog.Logger

	mux    *http.ServeMux
	server *http.Server
}

// Attach creates the guest server and registers it to start and stop with the bridge.
func Attach(sc *bridge.Connector) *Server {
	s := &Server{
		Connector: sc,
		Log:       sc.Bridge.Log.With().Str("component", "guest_web").Logger(),
		mux:       http.NewServeMux(),
	}
	s.routes()
	sc.AddService(s)
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NO.SIKKERCHAT.NOT_FOUND", "Not found")
	})
	registerTestHooks(s)
}

// Handler is the whole guest listener with its security headers.
func (s *Server) Handler() http.Handler {
	return securityHeaders(s.mux)
}

func (s *Server) Start(ctx context.Context) error {
	listener, err := net.Listen("tcp", s.Connector.Config.Guest.Listen)
	if err != nil {
		return err
	}
	s.server = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          nil,
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
	if s.server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.server.Shutdown(ctx)
}

// securityHeaders sets DESIGN.md's headers on every response, errors included.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "+
			"media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
		next.ServeHTTP(w, r)
	})
}

type apiError struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, errcode, message string) {
	writeJSON(w, status, apiError{ErrCode: errcode, Error: message})
}
