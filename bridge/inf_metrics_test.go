package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// infValue is the value of one series ("name{labels}") in a scrape; -1 if absent.
func infValue(t *testing.T, scrape, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape, "\n") {
		if value, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(value, 64)
			require.NoError(t, err)
			return f
		}
	}
	return -1
}

// What the metrics show an operator: conversations by state read from the
// database at scrape time, messages by direction, timings, errors; and
// never which conversation, room, officer, event or text it was about.
func TestMetricsCountWithoutNamingConversationsOrPeople(t *testing.T) {
	sc := infConnector(t)
	ctx := context.Background()
	waiting := infConversationIn(t, sc, "!waiting:example.org")
	active := infConversationIn(t, sc, "!active:example.org")
	require.NoError(t, sc.DB.Conversation.Activate(ctx, active.ID, time.Now()))
	_ = waiting

	txnID := guestTxnID(active.ID, "client-secret-0001")
	sc.Metrics.GuestPosted(txnID, time.Now())
	sc.Metrics.SendStarting(txnID)
	sc.Metrics.Delivered(txnID, "text")
	sc.Metrics.TransactionArrived("$officer-event", time.Now())
	sc.Metrics.ShownToGuest("$officer-event")
	sc.Metrics.Error(ErrKindWrongCode)

	scrape := infScrapeInternal(t, sc.Metrics)
	require.Equal(t, 1.0, infValue(t, scrape, `sikkerchat_conversations{state="created"}`))
	require.Equal(t, 1.0, infValue(t, scrape, `sikkerchat_conversations{state="active"}`))
	require.Equal(t, 0.0, infValue(t, scrape, `sikkerchat_conversations{state="closed"}`))
	require.Equal(t, 1.0, infValue(t, scrape, `sikkerchat_messages_total{direction="to_room",kind="text"}`))
	require.Equal(t, 1.0, infValue(t, scrape, `sikkerchat_errors_total{kind="wrong_code"}`))
	for _, identifying := range []string{active.ID, waiting.ID, "!active", "$officer-event", "client-secret", "@"} {
		require.NotContains(t, scrape, identifying)
	}
	// Every error kind is there from the start, so a dashboard shows a zero, not a gap.
	for _, kind := range []string{ErrKindHomeserverSend, ErrKindUndeliverable, ErrKindPurge, ErrKindUnexpectedMember, ErrKindInboxReplay} {
		require.Equal(t, 0.0, infValue(t, scrape, `sikkerchat_errors_total{kind="`+kind+`"}`), kind)
	}
}

// Each message is timed once: from its arrival at the bridge to the page
// (officer → guest) and from the guest's POST until the homeserver took it
// (guest → room). A retried send times the bridge's share again, but the
// end-to-end time only once; a message never timed adds nothing.
func TestMessageTimingsAreObservedOncePerMessage(t *testing.T) {
	m := NewMetrics(nil)
	m.TransactionArrived("$e1", time.Now().Add(-50*time.Millisecond))
	m.ShownToGuest("$e1")
	m.ShownToGuest("$e1") // a second open page
	m.ShownToGuest("$never-arrived")
	m.GuestPosted("txn1", time.Now())
	m.SendStarting("txn1")
	m.SendStarting("txn1") // a retry
	m.SendStarting("txn-unknown")
	m.Delivered("txn1", "file")

	scrape := infScrapeInternal(t, m)
	require.Equal(t, 1.0, infValue(t, scrape, `sikkerchat_send_latency_seconds_count{direction="to_guest"}`))
	require.Equal(t, 1.0, infValue(t, scrape, `sikkerchat_bridge_latency_seconds_count{path="transaction_to_guest"}`))
	require.GreaterOrEqual(t, infValue(t, scrape, `sikkerchat_send_latency_seconds_sum{direction="to_guest"}`), 0.05)
	require.Equal(t, 2.0, infValue(t, scrape, `sikkerchat_bridge_latency_seconds_count{path="guest_to_homeserver"}`))
	require.Equal(t, 1.0, infValue(t, scrape, `sikkerchat_send_latency_seconds_count{direction="to_room"}`))
	require.Equal(t, 1.0, infValue(t, scrape, `sikkerchat_messages_total{direction="to_room",kind="file"}`))

	m.Delivered("txn1", "file") // the mark is gone: counted, not timed again
	scrape = infScrapeInternal(t, m)
	require.Equal(t, 1.0, infValue(t, scrape, `sikkerchat_send_latency_seconds_count{direction="to_room"}`))
}

// Timing marks of messages nobody saw are dropped after a while, so a
// long-running bridge does not grow without end; fresh marks stay.
func TestForgetDropsOnlyOldTimingMarks(t *testing.T) {
	m := NewMetrics(nil)
	m.TransactionArrived("$old", time.Now().Add(-2*time.Hour))
	m.TransactionArrived("$new", time.Now())
	m.GuestPosted("old-txn", time.Now().Add(-2*time.Hour))
	m.GuestPosted("new-txn", time.Now())
	m.forget(time.Now().Add(-time.Hour))
	for key, want := range map[string]bool{"$old": false, "$new": true} {
		_, ok := m.arrivals.Load(key)
		require.Equal(t, want, ok, key)
	}
	for key, want := range map[string]bool{"old-txn": false, "new-txn": true} {
		_, ok := m.posted.Load(key)
		require.Equal(t, want, ok, key)
	}
}

// The benchmark's raw samples are kept only while it asks for them, up to a
// bound, and handed over once; production (no recorder) records nothing.
func TestSampleRecorderKeepsSamplesOnlyWhileEnabled(t *testing.T) {
	var none *SampleRecorder
	none.Add(PathGuestToHomeserver, time.Second) // must not panic

	r := &SampleRecorder{}
	r.Add(PathGuestToHomeserver, time.Second)
	r.Enable()
	require.Empty(t, r.Take(), "nothing from before Enable")
	r.Add(PathGuestToHomeserver, time.Millisecond)
	r.Add(PathTransactionToGuest, 2*time.Millisecond)
	got := r.Take()
	require.Equal(t, []time.Duration{time.Millisecond}, got[PathGuestToHomeserver])
	require.Equal(t, []time.Duration{2 * time.Millisecond}, got[PathTransactionToGuest])
	require.Empty(t, r.Take(), "taken once")

	for range maxSamples + 10 {
		r.Add(PathGuestToHomeserver, time.Microsecond)
	}
	require.Len(t, r.Take()[PathGuestToHomeserver], maxSamples)

	m := NewMetrics(nil)
	m.Samples = r
	r.Enable()
	m.TransactionArrived("$e", time.Now())
	m.ShownToGuest("$e")
	require.Len(t, r.Take()[PathTransactionToGuest], 1)
}

// When the database cannot be read, the conversations gauge reports an
// error instead of zeros that would look like a quiet day.
func TestConversationGaugeReportsAFailingDatabase(t *testing.T) {
	m := NewMetrics(func(ctx context.Context) (map[string]int, error) {
		return nil, errors.New("database is locked")
	})
	_, err := m.Registry.Gather()
	require.ErrorContains(t, err, "database is locked")
}

// The metrics listener serves GET /metrics only, on its own address, and
// stops with the bridge.
func TestMetricsListenerServesScrapesAndStopsWithTheBridge(t *testing.T) {
	m := NewMetrics(nil)
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, m.Serve(ctx, "127.0.0.1:0", zerolog.New(&logs)))
	var line struct {
		Address string `json:"address"`
	}
	require.NoError(t, json.Unmarshal(logs.Bytes(), &line))
	require.NotEmpty(t, line.Address)
	base := "http://" + line.Address

	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body.String(), "sikkerchat_messages_total")
	require.Contains(t, body.String(), "go_goroutines")

	resp, err = http.Post(base+"/metrics", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	resp, err = http.Get(base + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// The address is taken: a second listener is refused at start.
	require.Error(t, m.Serve(ctx, line.Address, zerolog.Nop()))

	cancel()
	require.Eventually(t, func() bool {
		conn, err := net.Dial("tcp", line.Address)
		if err == nil {
			conn.Close()
		}
		return err != nil
	}, 10*time.Second, 10*time.Millisecond, "the listener closes with the bridge")
}
