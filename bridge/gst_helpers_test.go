package bridge_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/internal/matrixtest"
)

// gstMetric reads one sample of the bridge's Prometheus registry: a
// counter's or gauge's value, or a histogram's sample count. labels are
// name, value pairs the sample must carry.
func gstMetric(t testing.TB, m *bridge.Metrics, name string, labels ...string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
	next:
		for _, metric := range fam.GetMetric() {
			have := map[string]string{}
			for _, l := range metric.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch {
			case metric.GetCounter() != nil:
				return metric.GetCounter().GetValue()
			case metric.GetGauge() != nil:
				return metric.GetGauge().GetValue()
			case metric.GetHistogram() != nil:
				return float64(metric.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no metric %s %v", name, labels)
	return 0
}

// gstEventually waits for something the bridge does in the background.
func gstEventually(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 15*time.Second, 5*time.Millisecond, msg)
}

// gstMatrix is the recording Matrix double with a few more ways for the
// homeserver to behave: sends that fail with a chosen error, sends that wait
// for the test, and a count of the lookups for earlier sends.
type gstMatrix struct {
	*matrixtest.Fake
	lock sync.Mutex
	// sendErr, when set, answers every send instead of the room.
	sendErr error
	// gate, when set for a conversation, holds its sends until closed.
	gate map[string]chan struct{}
	// entered is told the conversation of each send as it starts.
	entered chan string
	// finds counts FindSent calls; sends counts sends that reached the double.
	finds, sends int
	txnIDs       []string
	// typingGate, when set for a conversation, holds its typing calls until
	// closed; typingEntered is told each one as it starts.
	typingGate     map[string]chan struct{}
	typingEntered  chan bool
	typingTimeouts []time.Duration
}

func gstNewMatrix(tb *testBridge) *gstMatrix {
	gm := &gstMatrix{Fake: tb.matrix, gate: map[string]chan struct{}{}, typingGate: map[string]chan struct{}{}}
	tb.Matrix = gm
	return gm
}

func (gm *gstMatrix) setSendErr(err error) {
	gm.lock.Lock()
	defer gm.lock.Unlock()
	gm.sendErr = err
}

func (gm *gstMatrix) counts() (finds, sends int) {
	gm.lock.Lock()
	defer gm.lock.Unlock()
	return gm.finds, gm.sends
}

func (gm *gstMatrix) before(conv *bridge.Conversation, txnID string) error {
	gm.lock.Lock()
	gate, entered := gm.gate[conv.ID], gm.entered
	gm.sends++
	gm.txnIDs = append(gm.txnIDs, txnID)
	err := gm.sendErr
	gm.lock.Unlock()
	if entered != nil {
		entered <- conv.ID
	}
	if gate != nil {
		<-gate
	}
	return err
}

func (gm *gstMatrix) SendGuestText(ctx context.Context, conv *bridge.Conversation, txnID, text string) (id.EventID, error) {
	if err := gm.before(conv, txnID); err != nil {
		return "", err
	}
	return gm.Fake.SendGuestText(ctx, conv, txnID, text)
}

func (gm *gstMatrix) SendGuestFile(ctx context.Context, conv *bridge.Conversation, txnID string, info bridge.FileInfo, data []byte) (id.EventID, error) {
	if err := gm.before(conv, txnID); err != nil {
		return "", err
	}
	return gm.Fake.SendGuestFile(ctx, conv, txnID, info, data)
}

func (gm *gstMatrix) FindSent(ctx context.Context, conv *bridge.Conversation, txnID string) (id.EventID, error) {
	gm.lock.Lock()
	gm.finds++
	gm.lock.Unlock()
	return gm.Fake.FindSent(ctx, conv, txnID)
}

func (gm *gstMatrix) GuestTyping(ctx context.Context, conv *bridge.Conversation, typing bool, timeout time.Duration) {
	gm.lock.Lock()
	gate, entered := gm.typingGate[conv.ID], gm.typingEntered
	gm.lock.Unlock()
	if entered != nil {
		entered <- typing
	}
	if gate != nil {
		<-gate
	}
	gm.lock.Lock()
	gm.typingTimeouts = append(gm.typingTimeouts, timeout)
	gm.lock.Unlock()
	gm.Fake.GuestTyping(ctx, conv, typing, timeout)
}

// gstEntries reads a conversation's transcript as the page would get it.
func (tb *testBridge) gstEntries(conversationID string) []*bridge.TranscriptEntry {
	tb.t.Helper()
	entries, err := tb.Transcript.Since(tb.ctx, conversationID, 0)
	require.NoError(tb.t, err)
	return entries
}

// gstCount counts rows of a query's single integer result.
func (tb *testBridge) gstCount(query string, args ...any) (n int) {
	tb.t.Helper()
	require.NoError(tb.t, tb.DB.QueryRow(tb.ctx, query, args...).Scan(&n))
	return n
}

// gstClientID makes a valid client_id (16-64 characters) from a short tag.
func gstClientID(tag string) string {
	return "gst-client-id-" + tag + "-0000"
}
