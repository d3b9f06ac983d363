package scdb

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Each lane gives its first event only, when it is due; lanes do not wait
// for each other.
func TestMetaEventLanes(t *testing.T) {
	db := newTestDB(t)
	split := func(delivery string, arrival int64, lanes ...string) {
		require.NoError(t, db.MetaDelivery.Keep(ctx, &MetaDelivery{ID: delivery, Arrival: arrival, Sealed: []byte("x")}, []byte(delivery)))
		var events []*MetaEvent
		for i, lane := range lanes {
			events = append(events, &MetaEvent{ID: delivery + "." + string(rune('0'+i)), Lane: lane, Arrival: arrival, Position: i, Sealed: []byte("s")})
		}
		require.NoError(t, db.MetaDelivery.Split(ctx, delivery, events))
	}
	split("d1", 100, "A", "B", "A")
	split("d2", 200, "B", "C")
	now := time.Now()
	ids := func(events []*MetaEvent) (out []string) {
		for _, e := range events {
			out = append(out, e.ID)
		}
		return
	}
	ready, err := db.MetaEvent.Ready(ctx, now, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"d1.0", "d1.1", "d2.1"}, ids(ready), "the head of A, B and C")
	require.Equal(t, MetaEventWaiting, ready[0].State)

	// A's head fails and waits; B and C go on, A's second event stays behind its first.
	a := ready[0]
	a.Attempts, a.Tries, a.NextAttemptAt, a.LastAttemptAt = 1, 1, now.Add(time.Minute), now
	require.NoError(t, db.MetaEvent.Reschedule(ctx, a))
	require.NoError(t, db.MetaEvent.Done(ctx, "d1.1"))
	ready, err = db.MetaEvent.Ready(ctx, now, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"d2.0", "d2.1"}, ids(ready))
	next, err := db.MetaEvent.NextDue(ctx, now)
	require.NoError(t, err)
	require.Equal(t, now.Add(time.Minute).UnixMilli(), next.UnixMilli())

	ready, err = db.MetaEvent.Ready(ctx, now.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Equal(t, []string{"d1.0", "d2.0", "d2.1"}, ids(ready))
	got, err := db.MetaEvent.Get(ctx, "d1.0")
	require.NoError(t, err)
	require.Equal(t, 1, got.Attempts)
	require.Equal(t, now.UnixMilli(), got.LastAttemptAt.UnixMilli())

	got.State = MetaEventHeld
	require.NoError(t, db.MetaEvent.Reschedule(ctx, got))
	waiting, held, err := db.MetaEvent.Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, waiting)
	require.Equal(t, 1, held)
	require.NoError(t, db.MetaEvent.Done(ctx, "d1.0"))
	ready, _ = db.MetaEvent.Ready(ctx, now, 10)
	require.Equal(t, []string{"d1.2", "d2.0", "d2.1"}, ids(ready), "A's next event follows")
	next, err = db.MetaEvent.NextDue(ctx, now)
	require.NoError(t, err)
	require.True(t, next.IsZero())
}

// BenchmarkMetaEventReady measures finding the lanes' first events with a
// backlog (an outage's worth: 10 000 events of 2 000 people).
//
//	go test -tags goolm -run XXX -bench MetaEventReady ./bridge/scdb/
func BenchmarkMetaEventReady(b *testing.B) {
	db := newTestDB(b)
	for d := range 1000 {
		id := fmt.Sprintf("d%04d", d)
		require.NoError(b, db.MetaDelivery.Keep(ctx, &MetaDelivery{ID: id, Arrival: int64(d), Sealed: []byte("x")}, []byte(id)))
		events := make([]*MetaEvent, 10)
		for i := range events {
			events[i] = &MetaEvent{ID: fmt.Sprintf("%s.%d", id, i), Lane: fmt.Sprintf("lane%04d", (d*10+i)%2000), Arrival: int64(d), Position: i, Sealed: make([]byte, 200)}
		}
		require.NoError(b, db.MetaDelivery.Split(ctx, id, events))
	}
	now := time.Now()
	b.ResetTimer()
	for b.Loop() {
		ready, err := db.MetaEvent.Ready(ctx, now, 16)
		if err != nil || len(ready) != 16 {
			b.Fatal(err, len(ready))
		}
		if _, err = db.MetaEvent.NextDue(ctx, now); err != nil {
			b.Fatal(err)
		}
	}
}
