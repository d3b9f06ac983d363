package bridge_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// While the homeserver does not answer, the guest's typing calls return at
// once (the page's requests must not pile up in front of its messages),
// only the newest mark waits, and other conversations are not held up.
func TestTypingMarksDoNotQueueUpBehindASlowHomeserver(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	a, b := tb.newInvite(time.Hour), tb.newInvite(time.Hour)
	gm := gstNewMatrix(tb)
	gate := make(chan struct{})
	gm.typingGate[a.conv.ID] = gate
	gm.typingEntered = make(chan bool, 16)

	tb.Guests.Typing(tb.ctx, a.conv, true)
	require.True(t, <-gm.typingEntered, "the first mark is on its way and stuck")
	for range 5 {
		tb.Guests.Typing(tb.ctx, a.conv, true)
	}
	tb.Guests.Typing(tb.ctx, a.conv, false)

	tb.Guests.Typing(tb.ctx, b.conv, true)
	require.True(t, <-gm.typingEntered)
	gstEventually(t, func() bool {
		tb.matrix.Lock()
		defer tb.matrix.Unlock()
		return len(tb.matrix.Typing) == 1
	}, "the other conversation's mark goes through")

	close(gate)
	require.False(t, <-gm.typingEntered, "after the stuck one, only the newest")
	gstEventually(t, func() bool {
		tb.matrix.Lock()
		defer tb.matrix.Unlock()
		return len(tb.matrix.Typing) == 3
	}, "both of a's marks done")
	tb.matrix.Lock()
	require.Equal(t, []bool{true, true, false}, tb.matrix.Typing)
	tb.matrix.Unlock()
	gm.lock.Lock()
	require.Equal(t, []time.Duration{10 * time.Second, 10 * time.Second, 0}, gm.typingTimeouts,
		"typing shows for a while (the page repeats the call); stopping clears it")
	gm.lock.Unlock()
	require.Empty(t, gm.typingEntered, "the marks in between were dropped")
}

// The guest's read mark becomes a read receipt on the newest officer
// message up to it; marks past the end are refused, and marks with no
// officer message before them send nothing.
func TestGuestReadMarksBecomeReceiptsOnOfficerMessages(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	officer := func(eventID id.EventID) {
		_, err := tb.Transcript.Append(tb.ctx, inv.conv.ID, &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: eventID,
			CreatedAt: time.Now(), Kind: "text", Text: "fra politiet"})
		require.NoError(t, err)
	}
	reads := func() []id.EventID {
		tb.matrix.Lock()
		defer tb.matrix.Unlock()
		return append([]id.EventID(nil), tb.matrix.Reads...)
	}
	_, _, err := tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("r1"), "hei")
	require.NoError(t, err)
	require.NoError(t, tb.Guests.Read(tb.ctx, inv.conv, 1), "only the guest's own message so far")
	officer("$o2")
	_, _, err = tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("r3"), "takk")
	require.NoError(t, err)
	officer("$o4")

	require.ErrorIs(t, tb.Guests.Read(tb.ctx, inv.conv, 5), bridge.ErrUnknownSeq)
	require.Empty(t, reads())

	require.NoError(t, tb.Guests.Read(tb.ctx, inv.conv, 3))
	gstEventually(t, func() bool { return len(reads()) == 1 }, "receipt sent")
	require.Equal(t, []id.EventID{"$o2"}, reads(), "the newest officer message at or before the mark")
	require.NoError(t, tb.Guests.Read(tb.ctx, inv.conv, 4))
	gstEventually(t, func() bool { return len(reads()) == 2 }, "receipt sent")
	require.Equal(t, []id.EventID{"$o2", "$o4"}, reads())

	other := tb.newInvite(time.Hour)
	require.ErrorIs(t, tb.Guests.Read(tb.ctx, other.conv, 1), bridge.ErrUnknownSeq, "an empty conversation has nothing to read")
}
