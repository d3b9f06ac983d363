package scdb

import (
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
