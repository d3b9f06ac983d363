package bridge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
	"github.com/sikkerchat/sikkerchat/internal/jsonbody"
	"github.com/sikkerchat/sikkerchat/meta"
)

// Error kinds of the patrol inbox counted in sikkerchat_errors_total.
const (
	ErrKindMetaSignature = "meta_signature" // a webhook without a valid X-Hub-Signature-256
	ErrKindMetaMalformed = "meta_malformed" // a signed webhook that is not a delivery
	ErrKindMetaStore     = "meta_store"     // a webhook that could not be made durable (Meta retries)
	ErrKindMetaEvent     = "meta_event"     // an event given up after retries
	ErrKindMetaSend      = "meta_send"      // a Send API call that failed and will be retried
	ErrKindMetaNotSent   = "meta_not_sent"  // an officer's message Meta refused for good (the officer is told)
	ErrKindMetaDownload  = "meta_download"  // an attachment that could not be fetched from Meta
	ErrKindMetaToken     = "meta_token"     // Meta refused a page's access token
	ErrKindMetaStale     = "meta_stale"     // an event older than the replay window, left out
	ErrKindMetaReplay    = "meta_replay"    // a body kept before, answered and not kept again
	ErrKindMetaBusy      = "meta_busy"      // a delivery refused while the listener was full (Meta retries)
)

// webhookPath is where Meta's webhooks are received.
const webhookPath = "/meta/webhook"

// maxDelivery bounds a webhook body. Meta batches up to 1000 updates in one
// delivery; bodies of a few hundred KiB are common, so this is generous.
const maxDelivery = 8 << 20

// Error codes of the webhook listener.
const (
	errMetaNoSignature  = "NO.SIKKERCHAT.META_SIGNATURE_MISSING"
	errMetaBadSignature = "NO.SIKKERCHAT.META_SIGNATURE_INVALID"
	errMetaMalformed    = "NO.SIKKERCHAT.META_MALFORMED"
	errMetaTooLarge     = "NO.SIKKERCHAT.TOO_LARGE"
	errMetaVerify       = "NO.SIKKERCHAT.META_VERIFY_FAILED"
	errMetaUnavailable  = "NO.SIKKERCHAT.UNAVAILABLE"
	errMetaNotFound     = "NO.SIKKERCHAT.NOT_FOUND"
	errMetaMethod       = "NO.SIKKERCHAT.METHOD_NOT_ALLOWED"
	errMetaStale        = "NO.SIKKERCHAT.META_STALE"
)

// maxConcurrentDeliveries bounds the deliveries read and stored at once;
// one more waits up to deliveryQueueWait for a turn, then gets 503 (Meta
// sends it again).
const (
	maxConcurrentDeliveries = 8
	deliveryQueueWait       = 2 * time.Second
)

type metaError struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

// Handler is the webhook listener's whole surface: the subscription
// handshake and the deliveries, on one path; everything else is 404.
func (s *Social) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+webhookPath, s.handleVerify)
	mux.HandleFunc("POST "+webhookPath, s.handleDelivery)
	mux.HandleFunc(webhookPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, POST")
		jsonbody.Write(w, http.StatusMethodNotAllowed, metaError{errMetaMethod, "Only GET and POST"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		jsonbody.Write(w, http.StatusNotFound, metaError{errMetaNotFound, "Not found"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		mux.ServeHTTP(w, r)
	})
}

// handleVerify answers Meta's subscription check: the challenge, as plain
// text, when hub.mode is subscribe and the verify token matches; else 403.
func (s *Social) handleVerify(w http.ResponseWriter, r *http.Request) {
	challenge, ok := meta.Handshake(r.URL.Query(), s.Config.Meta.VerifyToken)
	if !ok {
		s.log.Warn().Msg("Refused a webhook subscription check (wrong mode or verify token)")
		jsonbody.Write(w, http.StatusForbidden, metaError{errMetaVerify, "Verification failed"})
		return
	}
	s.log.Info().Msg("Answered Meta's webhook subscription check")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, challenge)
}

// handleDelivery takes one webhook delivery: the signature is checked on the
// raw bytes before anything is parsed; a good delivery is stored (sealed)
// before the answer, so that Meta never gets 200 for something a crash could
// lose, and handled after it. Meta sends the same delivery again until it gets
// a 2xx; de-duplication by event ID makes that harmless.
func (s *Social) handleDelivery(w http.ResponseWriter, r *http.Request) {
	arrived := s.now()
	// Nothing is read of a body that carries no signature to check it with.
	if _, err := meta.ParseSignature(r.Header.Get(meta.SignatureHeader)); err != nil {
		s.refuseSignature(w, err, -1)
		return
	}
	select {
	case s.deliveries <- struct{}{}:
		defer func() { <-s.deliveries }()
	case <-r.Context().Done():
		return
	case <-time.After(deliveryQueueWait):
		s.Metrics.Error(ErrKindMetaBusy)
		s.log.Warn().Msg("Refused a webhook delivery: too many are being read at once; Meta sends it again")
		w.Header().Set("Retry-After", "5")
		jsonbody.Write(w, http.StatusServiceUnavailable, metaError{errMetaUnavailable, "Try again"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDelivery))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.Metrics.Error(ErrKindMetaMalformed)
			jsonbody.Write(w, http.StatusRequestEntityTooLarge, metaError{errMetaTooLarge, "Delivery too large"})
			return
		}
		jsonbody.Write(w, http.StatusBadRequest, metaError{errMetaMalformed, "Could not read the body"})
		return
	}
	if err = meta.VerifySignature(body, r.Header.Get(meta.SignatureHeader), s.Config.Meta.AppSecret); err != nil {
		s.refuseSignature(w, err, len(body))
		return
	}
	events, err := meta.Parse(body)
	if err != nil {
		// Signed, so from Meta (or whoever holds the app secret), but not a
		// delivery: keeping it would not make it readable later.
		s.Metrics.Error(ErrKindMetaMalformed)
		s.log.Warn().Int("bytes", len(body)).Msg("Refused a signed webhook delivery that is not a delivery")
		jsonbody.Write(w, http.StatusBadRequest, metaError{errMetaMalformed, "Not a webhook delivery"})
		return
	}
	if len(events) > 0 && !slices.ContainsFunc(events, func(e meta.Event) bool { return !s.isStale(e, arrived) }) {
		// Meta sends nothing again after its retry window: an old body is a
		// replay (and would open rooms for conversations long closed).
		s.Metrics.Error(ErrKindMetaStale)
		s.log.Warn().Int("events", len(events)).Msg("Refused a webhook delivery whose events are all older than the replay window")
		jsonbody.Write(w, http.StatusBadRequest, metaError{errMetaStale, "The events are older than the replay window"})
		return
	}
	err = s.keepDelivery(r.Context(), body, arrived)
	if errors.Is(err, scdb.ErrDeliverySeen) {
		// Meta's retry of a delivery whose answer it missed, or a replay:
		// kept once already.
		s.Metrics.Error(ErrKindMetaReplay)
		s.log.Info().Msg("A webhook delivery came again within the replay window; it is kept once")
	} else if err != nil {
		s.Metrics.Error(ErrKindMetaStore)
		s.log.Err(err).Msg("Failed to store a webhook delivery; Meta will send it again")
		w.Header().Set("Retry-After", "5")
		jsonbody.Write(w, http.StatusServiceUnavailable, metaError{errMetaUnavailable, "Try again"})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "EVENT_RECEIVED")
	if err == nil {
		s.kick(s.wake)
	}
}

// refuseSignature answers a delivery whose signature is missing, malformed
// or wrong (bytes: how much of the body was read, -1 for none).
func (s *Social) refuseSignature(w http.ResponseWriter, err error, bytes int) {
	s.Metrics.Error(ErrKindMetaSignature)
	s.log.Warn().Str("reason", err.Error()).Int("bytes", bytes).Msg("Refused a webhook delivery without a valid signature")
	code, msg := errMetaBadSignature, "X-Hub-Signature-256 does not match the body"
	if errors.Is(err, meta.ErrNoSignature) {
		code, msg = errMetaNoSignature, "X-Hub-Signature-256 is missing"
	}
	jsonbody.Write(w, http.StatusUnauthorized, metaError{code, msg})
}

// keepDelivery stores a delivery sealed with the inbox key, with a keyed
// digest of the body: scdb.ErrDeliverySeen when the same body was kept
// within the replay window.
func (s *Social) keepDelivery(ctx context.Context, body []byte, arrived time.Time) error {
	key, err := s.inboxKey(ctx)
	if err != nil {
		return err
	}
	deliveryID := randomID(16)
	sealed, err := seal(key, body, deliveryAAD(deliveryID))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("delivery\x00"))
	mac.Write(body)
	return s.DB.MetaDelivery.Keep(ctx, &scdb.MetaDelivery{ID: deliveryID, Arrival: arrived.UnixNano(), Sealed: sealed}, mac.Sum(nil))
}

func deliveryAAD(deliveryID string) []byte {
	return []byte("sikkerchat meta delivery\x00" + deliveryID)
}
