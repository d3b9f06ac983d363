package bridge_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// gstQueue stores guest texts as the page sends them.
func (tb *testBridge) gstQueue(conv *bridge.Conversation, texts ...string) {
	tb.t.Helper()
	for _, text := range texts {
		sum := sha256.Sum256([]byte(text))
		_, _, err := tb.Guests.QueueText(tb.ctx, conv, gstClientID(hex.EncodeToString(sum[:8])), text)
		require.NoError(tb.t, err)
	}
}

// gstSetFailing makes the homeserver unreachable (or reachable again).
func (tb *testBridge) gstSetFailing(failing bool) {
	tb.matrix.Lock()
	tb.matrix.Failing = failing
	tb.matrix.Unlock()
}

// gstStatuses lists the delivery state of each of a conversation's entries.
func (tb *testBridge) gstStatuses(conversationID string) (out []bridge.EntryStatus) {
	for _, e := range tb.gstEntries(conversationID) {
		out = append(out, e.Status)
	}
	return out
}

// While the homeserver is down the guest's messages wait, in order: the
// second is not tried before the first is in. When it is back, all go out
// once, in the order the guest wrote them.
func TestOutboxKeepsTheGuestsOrderThroughAnOutage(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	gm := gstNewMatrix(tb)
	tb.gstSetFailing(true)
	tb.gstQueue(inv.conv, "én", "to", "tre")
	require.True(t, tb.Outbox.RunOnce(tb.ctx), "the round failed")
	require.True(t, tb.Outbox.RunOnce(tb.ctx))
	finds, sends := gm.counts()
	require.Equal(t, 1, sends, "only the first message was tried")
	require.Equal(t, 1, finds, "the second round looked for it in the room first")
	require.Equal(t, 2.0, gstMetric(t, tb.Metrics, "sikkerchat_errors_total", "kind", bridge.ErrKindHomeserverSend))
	require.Equal(t, 3.0, gstMetric(t, tb.Metrics, "sikkerchat_outbox_pending"))
	require.Equal(t, []bridge.EntryStatus{bridge.EntryStored, bridge.EntryStored, bridge.EntryStored}, tb.gstStatuses(inv.conv.ID))

	tb.gstSetFailing(false)
	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	sent, _ := tb.matrix.Snapshot()
	require.Equal(t, []string{"én", "to", "tre"}, sent)
	require.Equal(t, []bridge.EntryStatus{bridge.EntryDelivered, bridge.EntryDelivered, bridge.EntryDelivered}, tb.gstStatuses(inv.conv.ID))
	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	sent, _ = tb.matrix.Snapshot()
	require.Len(t, sent, 3, "nothing goes twice")
	require.Zero(t, gstMetric(t, tb.Metrics, "sikkerchat_outbox_pending"))
}

// A send whose answer was lost may have reached the room. Before trying
// again the outbox looks in the room, so that the officers never see the
// message twice, even on a homeserver that forgot the transaction ID.
// A refused connection certainly sent nothing and is simply tried again.
func TestOutboxLooksInTheRoomAfterAnUnclearFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      func(tb *testBridge, gm *gstMatrix)
		wantFinds int
	}{
		{"answer lost", func(tb *testBridge, _ *gstMatrix) {
			tb.matrix.Lock()
			tb.matrix.LoseAnswers, tb.matrix.ForgetTxnIDs = 1, true
			tb.matrix.Unlock()
		}, 1},
		{"timed out", func(_ *testBridge, gm *gstMatrix) { gm.setSendErr(context.DeadlineExceeded) }, 1},
		{"connection refused", func(_ *testBridge, gm *gstMatrix) {
			gm.setSendErr(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestBridge(t, newTestConfig(t))
			inv := tb.newInvite(time.Hour)
			gm := gstNewMatrix(tb)
			tc.fail(tb, gm)
			tb.gstQueue(inv.conv, "kom dere?")
			require.True(t, tb.Outbox.RunOnce(tb.ctx))
			gm.setSendErr(nil)
			require.False(t, tb.Outbox.RunOnce(tb.ctx))
			finds, _ := gm.counts()
			require.Equal(t, tc.wantFinds, finds)
			sent, _ := tb.matrix.Snapshot()
			require.Equal(t, []string{"kom dere?"}, sent, "in the room once")
			entries := tb.gstEntries(inv.conv.ID)
			require.Equal(t, bridge.EntryDelivered, entries[0].Status)
			require.Equal(t, id.EventID("$event1"), entries[0].MatrixEventID, "the event the first send made")

			// Settled: a later message of the same run is sent without looking.
			tb.gstQueue(inv.conv, "hallo")
			require.False(t, tb.Outbox.RunOnce(tb.ctx))
			finds, _ = gm.counts()
			require.Equal(t, tc.wantFinds, finds)
		})
	}
}

// Messages stored before this run of the bridge (it may have died
// mid-send) are looked for in the room first: one that made it is marked
// delivered with its event, one that did not is sent.
func TestMessagesFromBeforeARestartAreLookedForBeforeSending(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	gm := gstNewMatrix(tb)
	earlier := time.Now().Add(-time.Hour)
	for _, client := range []string{gstClientID("made-it"), gstClientID("lost")} {
		_, err := tb.Transcript.Append(tb.ctx, inv.conv.ID, &bridge.TranscriptEntry{Direction: bridge.FromGuest, ClientID: client,
			Status: bridge.EntryStored, CreatedAt: earlier, Kind: "text", Text: "fra før: " + client})
		require.NoError(t, err)
	}
	// The first reached the room before the bridge died; the transaction ID
	// is the conversation's and the guest's own message ID.
	tb.matrix.Lock()
	tb.matrix.TxnIDs = map[string]id.EventID{"sikkerchat." + inv.conv.ID + "." + gstClientID("made-it"): "$from-before"}
	tb.matrix.Unlock()

	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	finds, sends := gm.counts()
	require.Equal(t, 2, finds)
	require.Equal(t, 1, sends)
	sent, _ := tb.matrix.Snapshot()
	require.Equal(t, []string{"fra før: " + gstClientID("lost")}, sent)
	entries := tb.gstEntries(inv.conv.ID)
	require.Equal(t, id.EventID("$from-before"), entries[0].MatrixEventID)
	require.Equal(t, bridge.EntryDelivered, entries[1].Status)
}

// Two guests whose pages chose the same client_id still both reach their
// rooms: the transaction ID is unique per conversation, since a homeserver
// deduplicates on the transaction ID alone.
func TestSameClientIDInTwoConversationsStillReachesBothRooms(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	a, b := tb.newInvite(time.Hour), tb.newInvite(time.Hour)
	gm := gstNewMatrix(tb)
	for _, inv := range []testInvite{a, b} {
		_, _, err := tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("felles"), "melding i "+inv.conv.ID)
		require.NoError(t, err)
	}
	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	sent, _ := tb.matrix.Snapshot()
	require.ElementsMatch(t, []string{"melding i " + a.conv.ID, "melding i " + b.conv.ID}, sent)
	require.NotEqual(t, tb.gstEntries(a.conv.ID)[0].MatrixEventID, tb.gstEntries(b.conv.ID)[0].MatrixEventID)
	gm.lock.Lock()
	require.Len(t, gm.txnIDs, 2)
	require.NotEqual(t, gm.txnIDs[0], gm.txnIDs[1])
	gm.lock.Unlock()
}

// A message the homeserver refuses for good (too large, forbidden) is
// marked failed on the guest's page, the officers are told that something
// could not be delivered, and the messages after it still go out.
func TestAMessageRefusedForGoodDoesNotHoldUpTheRest(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	page := tb.Hub.Subscribe(inv.conv.ID)
	defer page.Close()
	tb.matrix.Lock()
	tb.matrix.Refuse = "alt for mye tekst"
	tb.matrix.Unlock()
	tb.gstQueue(inv.conv, "før", "alt for mye tekst", "etter")
	for range 3 {
		<-page.C // the three messages themselves
	}
	require.False(t, tb.Outbox.RunOnce(tb.ctx), "nothing left that a retry could fix")
	sent, notices := tb.matrix.Snapshot()
	require.Equal(t, []string{"før", "etter"}, sent)
	require.Len(t, notices, 1)
	require.Contains(t, notices[0], "kunne ikke leveres")
	require.NotContains(t, notices[0], "alt for mye tekst", "the room is told that, not what")
	require.Equal(t, []bridge.EntryStatus{bridge.EntryDelivered, bridge.EntryFailed, bridge.EntryDelivered}, tb.gstStatuses(inv.conv.ID))
	var failed []string
	for range 3 {
		evt := <-page.C
		require.Equal(t, bridge.GuestEventStatus, evt.Kind)
		if evt.Entry.Status == bridge.EntryFailed {
			failed = append(failed, evt.Entry.Text)
		}
	}
	require.Equal(t, []string{"alt for mye tekst"}, failed, "the page marks the one that failed")
	require.Equal(t, 1.0, gstMetric(t, tb.Metrics, "sikkerchat_errors_total", "kind", bridge.ErrKindUndeliverable))

	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	sent, _ = tb.matrix.Snapshot()
	require.Len(t, sent, 2, "a failed message is not tried again")
	// Nothing is left undelivered, so the conversation can close.
	require.NoError(t, tb.Conversations.Close(tb.ctx, inv.conv, "@officer:example.org", bridge.CloseByOfficer))
}

// gstRunOutbox runs the outbox as Start does, until the test ends.
func gstRunOutbox(t *testing.T, tb *testBridge) {
	ctx, cancel := context.WithCancel(tb.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tb.Outbox.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// Messages stored while the bridge was down go out when the outbox starts;
// a message sent while it runs goes out without waiting for a sweep, and
// many quick ones keep their order and go once each.
func TestRunningOutboxDeliversLeftOversAndNewMessagesInOrder(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	a, b := tb.newInvite(time.Hour), tb.newInvite(time.Hour)
	tb.gstQueue(a.conv, "lagret mens broen var nede")
	gstRunOutbox(t, tb)
	gstEventually(t, func() bool { sent, _ := tb.matrix.Snapshot(); return len(sent) == 1 }, "the left-over goes out at start")

	var want []string
	for i := range 30 {
		conv := a.conv
		if i%3 == 0 {
			conv = b.conv
		}
		text := fmt.Sprintf("rask melding %02d", i)
		tb.gstQueue(conv, text)
		want = append(want, text)
	}
	gstEventually(t, func() bool { sent, _ := tb.matrix.Snapshot(); return len(sent) == 31 }, "every message delivered")
	// A row is marked delivered just after the homeserver accepted its send.
	gstEventually(t, func() bool {
		for _, inv := range []testInvite{a, b} {
			for _, st := range tb.gstStatuses(inv.conv.ID) {
				if st != bridge.EntryDelivered {
					return false
				}
			}
		}
		return true
	}, "every row marked delivered")
	sent, _ := tb.matrix.Snapshot()
	require.ElementsMatch(t, want, sent[1:], "each once")
	pos := map[string]int{}
	for i, text := range sent {
		pos[text] = i
	}
	for _, inv := range []testInvite{a, b} {
		var order []int
		for _, e := range tb.gstEntries(inv.conv.ID) {
			require.Equal(t, bridge.EntryDelivered, e.Status)
			order = append(order, pos[e.Text])
		}
		require.IsIncreasing(t, order, "a conversation's messages reach the room in the order the guest wrote them")
	}
}

// After a failed send the outbox tries again by itself (with backoff),
// without waiting for the guest to send something more.
func TestRunningOutboxRetriesByItselfAfterAnOutage(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	gm := gstNewMatrix(tb)
	gm.setSendErr(errors.New("502 bad gateway"))
	gstRunOutbox(t, tb)
	tb.gstQueue(inv.conv, "er noen der?")
	gstEventually(t, func() bool { _, sends := gm.counts(); return sends >= 1 }, "a first attempt failed")
	gm.setSendErr(nil)
	gstEventually(t, func() bool { sent, _ := tb.matrix.Snapshot(); return len(sent) == 1 }, "delivered by a retry")
	// The row is marked delivered just after the homeserver accepted the send.
	gstEventually(t, func() bool {
		st := tb.gstStatuses(inv.conv.ID)
		return len(st) == 1 && st[0] == bridge.EntryDelivered
	}, "marked delivered")
	sent, _ := tb.matrix.Snapshot()
	require.Len(t, sent, 1, "delivered once")
}

// One conversation whose room is slow (a big upload, a busy room) holds up
// nobody else: other conversations' messages go out meanwhile.
func TestASlowRoomDoesNotHoldUpOtherConversations(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	slow, other := tb.newInvite(time.Hour), tb.newInvite(time.Hour)
	gm := gstNewMatrix(tb)
	gate := make(chan struct{})
	gm.gate[slow.conv.ID] = gate
	gm.entered = make(chan string, 16)
	gstRunOutbox(t, tb)
	defer close(gate)

	tb.gstQueue(slow.conv, "stor fil")
	require.Equal(t, slow.conv.ID, <-gm.entered, "the slow send has started")
	tb.gstQueue(other.conv, "kort melding")
	require.Equal(t, other.conv.ID, <-gm.entered)
	gstEventually(t, func() bool { sent, _ := tb.matrix.Snapshot(); return len(sent) == 1 }, "the other room got its message")
	sent, _ := tb.matrix.Snapshot()
	require.Equal(t, []string{"kort melding"}, sent)
	require.Equal(t, []bridge.EntryStatus{bridge.EntryStored}, tb.gstStatuses(slow.conv.ID))
}

// The send time operators see runs from the moment the guest's request
// arrived (the listener marks it), through storage and the outbox, until
// the homeserver took the message.
func TestSendLatencyRunsFromTheGuestsRequest(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	arrived := time.Now().Add(-3 * time.Second)
	_, _, err := tb.Guests.QueueText(bridge.WithRequestStart(tb.ctx, arrived), inv.conv, gstClientID("lat"), "hei")
	require.NoError(t, err)
	require.Zero(t, gstMetric(t, tb.Metrics, "sikkerchat_send_latency_seconds", "direction", bridge.DirToRoom))
	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	require.Equal(t, 1.0, gstMetric(t, tb.Metrics, "sikkerchat_send_latency_seconds", "direction", bridge.DirToRoom))
	families, err := tb.Metrics.Registry.Gather()
	require.NoError(t, err)
	for _, fam := range families {
		if fam.GetName() == "sikkerchat_send_latency_seconds" {
			for _, m := range fam.GetMetric() {
				if m.GetLabel()[0].GetValue() == bridge.DirToRoom {
					require.GreaterOrEqual(t, m.GetHistogram().GetSampleSum(), 3.0, "counted from the request's arrival")
				}
			}
		}
	}
	require.WithinDuration(t, time.Now(), bridge.RequestStart(tb.ctx), time.Minute, "without a mark: now")
}
