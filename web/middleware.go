package web

import (
	"context"
	"net"
	"net/http"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// securityHeaders sets the guest page's security headers (docs/guest-api.md) on
// every response, errors included.
// The policy allows the page's inline script and style by their hashes.
func securityHeaders(next http.Handler) http.Handler {
	csp := pageTmpl().csp
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
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

// bodyTimeout bounds how long a request body may take to arrive once its
// header is in. The largest JSON body (512 KiB) takes about 10 s at Slow 3G's
// 400 kbit/s; a message, well under a second.
const bodyTimeout = 30 * time.Second

// bodyDeadline gives every request body a deadline: without it a client (or
// a proxy that passes bodies through unbuffered, as the documented one does)
// that declares a body and sends it slowly, or never, holds a connection and
// a goroutine for as long as it likes. A handler that answers without reading
// the body is covered too: net/http reads what is left of it before it
// answers, under the same deadline, and closes the connection when it is cut
// short. net/http takes the deadline off itself once the body has come to its
// end (its background read of the connection, which would otherwise cancel a
// request whose handler is still at work). Uploads set their own deadline,
// moved on with every read (files.go), which replaces this one from their
// first read.
func (s *Server) bodyDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			// Not every ResponseWriter has a connection (tests with a recorder).
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.bodyTimeout))
		}
		next.ServeHTTP(w, r)
	})
}

// instrument notes when a request arrived (the bridge's share of a message's
// time starts here) and counts error answers by kind for the metrics.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(bridge.WithRequestStart(r.Context(), time.Now())))
		switch {
		case rec.status == http.StatusTooManyRequests:
			s.Connector.Metrics.Error(bridge.ErrKindRateLimited)
		case rec.status >= 500:
			s.Connector.Metrics.Error(bridge.ErrKindGuestServer)
		case rec.status >= 400:
			s.Connector.Metrics.Error(bridge.ErrKindGuestBadRequest)
		}
	})
}

// statusRecorder keeps the answer's status; Unwrap lets http.ResponseController
// reach the connection (flushes and deadlines for the event stream).
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (sr *statusRecorder) WriteHeader(status int) {
	if sr.status == 0 {
		sr.status = status
	}
	sr.ResponseWriter.WriteHeader(status)
}

func (sr *statusRecorder) Write(b []byte) (int, error) {
	if sr.status == 0 {
		sr.status = http.StatusOK
	}
	return sr.ResponseWriter.Write(b)
}

func (sr *statusRecorder) Unwrap() http.ResponseWriter { return sr.ResponseWriter }

// recoverer turns a panic into a JSON 500: the guest never sees a stack trace.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if rec := recover(); rec != nil {
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				s.Log.Error().Any("panic", rec).Bytes("stack", debug.Stack()).Str("path", r.URL.Path).Msg("Panic in guest handler")
				writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
			}
		}()
		next.ServeHTTP(w, r.WithContext(s.Log.WithContext(r.Context())))
	})
}

// canonicalPath answers a path with dot segments or doubled slashes with a
// JSON 404. http.ServeMux would redirect it instead: an HTML answer, and a
// POST that the browser re-sends elsewhere. Nothing of the guest listener
// lives at such a path.
func canonicalPath(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		clean := path.Clean(p)
		if strings.HasSuffix(p, "/") && clean != "/" {
			clean += "/"
		}
		if !strings.HasPrefix(p, "/") || clean != p {
			notFound(w, r)
			return
		}
		next(w, r)
	}
}

// clientIP is the guest's address: the connection's, or the last hop of
// X-Forwarded-For when the connection comes from a trusted reverse proxy.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || !s.trustedProxy(ip) {
		if ip != nil && ip.IsPrivate() && r.Header.Get("X-Forwarded-For") != "" {
			s.warnUntrustedProxy(host)
		}
		return host
	}
	forwarded := r.Header.Values("X-Forwarded-For")
	if len(forwarded) == 0 {
		return host
	}
	hops := strings.Split(forwarded[len(forwarded)-1], ",")
	if last := net.ParseIP(strings.TrimSpace(hops[len(hops)-1])); last != nil {
		return last.String()
	}
	return host
}

// warnUntrustedProxy says, once per address, that a reverse proxy on a
// private network (Docker's, typically) is not trusted: every guest behind it
// shares one rate limit. The forwarded addresses are never logged.
func (s *Server) warnUntrustedProxy(host string) {
	if _, warned := s.untrustedProxies.LoadOrStore(host, true); warned {
		return
	}
	s.Log.Warn().Str("proxy_address", host).
		Msg("Guest requests with X-Forwarded-For come from a private address that is not in network.guest.trusted_proxies; " +
			"all guests behind this proxy share one rate limit. Add the proxy's address to trusted_proxies (see docs/setup-synapse.md)")
}

func (s *Server) trustedProxy(ip net.IP) bool {
	for _, n := range s.config().Guest.TrustedProxyNets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// stateChanging guards every POST: same-origin Origin and the custom header,
// which a cross-site form or a link preview cannot send.
func (s *Server) stateChanging(allowBeacon bool, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != s.config().PublicOrigin() {
			writeError(w, http.StatusForbidden, errBadOrigin, "Request must come from the sikkerchat page")
			return
		}
		if r.Header.Get("X-Sikkerchat") != "1" && !(allowBeacon && isBeacon(r)) {
			writeError(w, http.StatusForbidden, errMissingHeader, "Missing X-Sikkerchat header")
			return
		}
		next(w, r)
	}
}

// isBeacon recognises navigator.sendBeacon, which cannot set headers.
func isBeacon(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.ContentLength <= 0 || strings.HasPrefix(ct, "text/plain")
}

type ctxKey int

const (
	ctxKeySession ctxKey = iota
	ctxKeyConversation
)

// withSession requires a live guest session.
func (s *Server) withSession(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cookie, err := r.Cookie(s.cookieName())
		if err != nil {
			writeError(w, http.StatusUnauthorized, errNoSession, "No session")
			return
		}
		sess, conv, err := s.Connector.Guests.CheckSession(r.Context(), cookie.Value)
		if !s.sessionError(w, r, err) {
			return
		}
		ctx := context.WithValue(r.Context(), ctxKeySession, sess)
		ctx = context.WithValue(ctx, ctxKeyConversation, conv)
		ctx = zerolog.Ctx(ctx).With().Str("conversation_id", conv.ID).Logger().WithContext(ctx)
		next(w, r.WithContext(ctx))
	}
}

// sessionError writes the answer for a failed session check; true means no error.
func (s *Server) sessionError(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return true
	case errorIs(err, bridge.ErrNoSession):
		s.clearCookie(w)
		writeError(w, http.StatusUnauthorized, errNoSession, "No session")
	case errorIs(err, bridge.ErrSessionIdle):
		s.clearCookie(w)
		writeError(w, http.StatusUnauthorized, errSessionExpired, "The session has expired")
	case errorIs(err, bridge.ErrConversationNotOpen):
		s.clearCookie(w)
		writeError(w, http.StatusGone, errConversationClosed, "The conversation has ended")
	default:
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to check guest session")
		writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
	}
	return false
}

func conversationOf(r *http.Request) *bridge.Conversation {
	return r.Context().Value(ctxKeyConversation).(*bridge.Conversation)
}

// limited applies a rate limit per IP (and per session where there is one).
func (s *Server) limited(l *limiter, bySession bool, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := "ip:" + limitKey(s.clientIP(r))
		if bySession {
			if conv, ok := r.Context().Value(ctxKeyConversation).(*bridge.Conversation); ok {
				key = "conv:" + conv.ID
			}
		}
		if ok, wait := l.allow(key, time.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			writeError(w, http.StatusTooManyRequests, errRateLimited, "Too many requests, wait a little")
			return
		}
		next(w, r)
	}
}

// limitKey groups IPv6 clients by /64: one home or phone network holds a
// whole /64 and could otherwise rotate addresses past the limits.
func limitKey(ip string) string {
	parsed := net.ParseIP(ip)
	if parsed == nil || parsed.To4() != nil {
		return ip
	}
	return parsed.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
