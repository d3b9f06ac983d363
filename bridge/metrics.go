package bridge

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Metrics are sikkerchat's Prometheus metrics. They count and time what the
// bridge does; no label ever carries a conversation, room, user, text or file
// name. They are always collected (cheap) and only served when
// network.metrics.listen is set, on a listener of their own.
type Metrics struct {
	Registry *prometheus.Registry

	Messages      *prometheus.CounterVec   // direction, kind
	SendLatency   *prometheus.HistogramVec // direction
	BridgeLatency *prometheus.HistogramVec // path
	Errors        *prometheus.CounterVec   // kind
	GuestStreams  prometheus.Gauge
	OutboxPending prometheus.Gauge
	MetaHeld      prometheus.Gauge

	// Samples keeps raw bridge-share timings for the benchmark (test hooks only).
	Samples *SampleRecorder

	arrivals sync.Map // event ID → time the appservice transaction arrived
	posted   sync.Map // Matrix transaction ID → time the guest's POST arrived
}

// Directions and paths used as label values.
const (
	DirToRoom  = "to_room"  // guest → officers
	DirToGuest = "to_guest" // officers → guest

	// PathGuestToHomeserver: guest POST received → send request to the homeserver starts.
	PathGuestToHomeserver = "guest_to_homeserver"
	// PathTransactionToGuest: appservice transaction received → SSE frame written.
	PathTransactionToGuest = "transaction_to_guest"
)

// Error kinds counted in sikkerchat_errors_total.
const (
	ErrKindHomeserverSend   = "homeserver_send"   // a delivery attempt failed and will be retried
	ErrKindUndeliverable    = "undeliverable"     // a guest message the homeserver refused for good
	ErrKindGuestBadRequest  = "guest_bad_request" // a 4xx answer on the guest listener
	ErrKindGuestServer      = "guest_server"      // a 5xx answer on the guest listener
	ErrKindRateLimited      = "rate_limited"
	ErrKindWrongCode        = "wrong_code"
	ErrKindOfficerMessage   = "officer_message" // an officer message that could not be kept for the guest
	ErrKindInboxReplay      = "inbox_replay"    // an appservice event handled again after a crash
	ErrKindPurge            = "purge"
	ErrKindTransactionStore = "transaction_store" // an appservice transaction that could not be made durable
	ErrKindUnexpectedMember = "unexpected_member" // someone in a conversation room who is not a permitted officer (removed)
)

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics makes the metric set. stats reads conversation counts by state at scrape time.
func NewMetrics(conversationsByState func(ctx context.Context) (map[string]int, error)) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sikkerchat_messages_total",
			Help: "Messages and files carried, by direction (to_room, to_guest) and kind (text, file).",
		}, []string{"direction", "kind"}),
		SendLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sikkerchat_send_latency_seconds",
			Help:    "to_room: guest POST until the homeserver accepted the event. to_guest: appservice transaction until the guest page got it.",
			Buckets: latencyBuckets,
		}, []string{"direction"}),
		BridgeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sikkerchat_bridge_latency_seconds",
			Help:    "Time spent inside the bridge: guest_to_homeserver (POST until the send request starts), transaction_to_guest (transaction until the SSE frame is written).",
			Buckets: latencyBuckets,
		}, []string{"path"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sikkerchat_errors_total",
			Help: "Errors by kind.",
		}, []string{"kind"}),
		GuestStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sikkerchat_guest_streams",
			Help: "Open guest event streams (pages online).",
		}),
		OutboxPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sikkerchat_outbox_pending",
			Help: "Guest messages stored but not yet accepted by the homeserver, at the last outbox round.",
		}),
		MetaHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sikkerchat_meta_held_people",
			Help: "New people on Messenger or Instagram whose messages are kept but whose rooms wait for the page's budget of new rooms.",
		}),
	}
	for _, dir := range []string{DirToRoom, DirToGuest} {
		for _, kind := range []string{"text", "file"} {
			m.Messages.WithLabelValues(dir, kind)
		}
		m.SendLatency.WithLabelValues(dir)
	}
	m.BridgeLatency.WithLabelValues(PathGuestToHomeserver)
	m.BridgeLatency.WithLabelValues(PathTransactionToGuest)
	for _, kind := range []string{ErrKindHomeserverSend, ErrKindUndeliverable, ErrKindGuestBadRequest, ErrKindGuestServer,
		ErrKindRateLimited, ErrKindWrongCode, ErrKindOfficerMessage, ErrKindInboxReplay, ErrKindPurge, ErrKindTransactionStore, ErrKindUnexpectedMember} {
		m.Errors.WithLabelValues(kind)
	}
	m.Registry.MustRegister(m.Messages, m.SendLatency, m.BridgeLatency, m.Errors, m.GuestStreams, m.OutboxPending, m.MetaHeld,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if conversationsByState != nil {
		m.Registry.MustRegister(&conversationCollector{read: conversationsByState})
	}
	return m
}

// conversationCollector reports conversations by state from the database at scrape time.
type conversationCollector struct {
	read func(ctx context.Context) (map[string]int, error)
}

var conversationsDesc = prometheus.NewDesc("sikkerchat_conversations", "Conversations by state (created: waiting for the guest, active, closed, expired).", []string{"state"}, nil)

func (c *conversationCollector) Describe(ch chan<- *prometheus.Desc) { ch <- conversationsDesc }

func (c *conversationCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(conversationsDesc, err)
		return
	}
	for _, state := range []ConversationStatus{StatusCreated, StatusActive, StatusClosed, StatusExpired} {
		ch <- prometheus.MustNewConstMetric(conversationsDesc, prometheus.GaugeValue, float64(counts[string(state)]), string(state))
	}
}

// GuestPosted remembers when a guest's message arrived, for the send timings.
func (m *Metrics) GuestPosted(txnID string, at time.Time) {
	m.posted.Store(txnID, at)
}

// SendStarting is called when the send request for a guest message leaves for the homeserver.
func (m *Metrics) SendStarting(txnID string) {
	if v, ok := m.posted.Load(txnID); ok {
		d := time.Since(v.(time.Time))
		m.BridgeLatency.WithLabelValues(PathGuestToHomeserver).Observe(d.Seconds())
		m.Samples.Add(PathGuestToHomeserver, d)
	}
}

// Delivered is called when the homeserver accepted a guest message.
func (m *Metrics) Delivered(txnID, kind string) {
	m.Messages.WithLabelValues(DirToRoom, kind).Inc()
	if v, ok := m.posted.LoadAndDelete(txnID); ok {
		m.SendLatency.WithLabelValues(DirToRoom).Observe(time.Since(v.(time.Time)).Seconds())
	}
}

// TransactionArrived remembers when an officer's event reached the bridge.
func (m *Metrics) TransactionArrived(eventID string, at time.Time) {
	m.arrivals.Store(eventID, at)
}

// ShownToGuest is called when an officer's message was written to a guest page.
func (m *Metrics) ShownToGuest(eventID string) {
	if v, ok := m.arrivals.LoadAndDelete(eventID); ok {
		d := time.Since(v.(time.Time))
		m.BridgeLatency.WithLabelValues(PathTransactionToGuest).Observe(d.Seconds())
		m.SendLatency.WithLabelValues(DirToGuest).Observe(d.Seconds())
		m.Samples.Add(PathTransactionToGuest, d)
	}
}

// Error counts one error of a kind.
func (m *Metrics) Error(kind string) {
	m.Errors.WithLabelValues(kind).Inc()
}

// forget drops timing marks older than an hour (messages nobody saw, failed sends).
func (m *Metrics) forget(olderThan time.Time) {
	for _, mp := range []*sync.Map{&m.arrivals, &m.posted} {
		mp.Range(func(k, v any) bool {
			if v.(time.Time).Before(olderThan) {
				mp.Delete(k)
			}
			return true
		})
	}
}

// Serve runs the metrics listener until ctx ends.
func (m *Metrics) Serve(ctx context.Context, listen string, log zerolog.Logger) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Err(err).Msg("Metrics listener stopped")
		}
	}()
	log.Info().Str("address", ln.Addr().String()).Msg("Serving metrics")
	return nil
}

// SampleRecorder keeps raw durations per path while enabled (the benchmark turns it on).
type SampleRecorder struct {
	lock    sync.Mutex
	enabled bool
	samples map[string][]time.Duration
}

const maxSamples = 200000

func (r *SampleRecorder) Add(path string, d time.Duration) {
	if r == nil {
		return
	}
	r.lock.Lock()
	defer r.lock.Unlock()
	if !r.enabled || len(r.samples[path]) >= maxSamples {
		return
	}
	r.samples[path] = append(r.samples[path], d)
}

// Enable starts recording (and clears what was recorded).
func (r *SampleRecorder) Enable() {
	r.lock.Lock()
	defer r.lock.Unlock()
	r.enabled, r.samples = true, map[string][]time.Duration{}
}

// Take returns what was recorded since the last Take or Enable and clears it.
func (r *SampleRecorder) Take() map[string][]time.Duration {
	r.lock.Lock()
	defer r.lock.Unlock()
	out := r.samples
	r.samples = map[string][]time.Duration{}
	return out
}
