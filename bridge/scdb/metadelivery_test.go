package scdb

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMetaDeliveryQueries(t *testing.T) {
	db := newTestDB(t)
	for i, d := range []*MetaDelivery{{ID: "b", Arrival: 2, Sealed: []byte("2")}, {ID: "a", Arrival: 1, Sealed: []byte("1")}, {ID: "c", Arrival: 3, Sealed: []byte("3")}} {
		require.NoError(t, db.MetaDelivery.Keep(ctx, d, []byte("digest-"+d.ID)), i)
	}
	// The same body again is not kept twice, and the first stays.
	require.ErrorIs(t, db.MetaDelivery.Keep(ctx, &MetaDelivery{ID: "a2", Arrival: 4, Sealed: []byte("1")}, []byte("digest-a")), ErrDeliverySeen)
	pending, err := db.MetaDelivery.Pending(ctx, 2)
	require.NoError(t, err)
	require.Len(t, pending, 2)
	require.Equal(t, "a", pending[0].ID, "arrival order")
	require.Equal(t, []byte("1"), pending[0].Sealed)

	// A split replaces the delivery by its events, all or nothing.
	require.NoError(t, db.MetaDelivery.Split(ctx, "a", []*MetaEvent{
		{ID: "a.0", Lane: "l1", Arrival: 1, Position: 0, Sealed: []byte("e0")},
		{ID: "a.1", Lane: "l2", Arrival: 1, Position: 1, Sealed: []byte("e1")},
	}))
	err = db.MetaDelivery.Split(ctx, "b", []*MetaEvent{{ID: "b.0", Lane: "l1", Arrival: 2, Sealed: []byte("e")}, {ID: "a.0", Lane: "l1", Arrival: 2, Position: 1}})
	require.Error(t, err, "a clash rolls the whole split back")
	pending, _ = db.MetaDelivery.Pending(ctx, 10)
	require.Equal(t, []string{"b", "c"}, []string{pending[0].ID, pending[1].ID})
	e, err := db.MetaEvent.Get(ctx, "b.0")
	require.NoError(t, err)
	require.Nil(t, e)
	waiting, _, err := db.MetaEvent.Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, waiting)

	require.NoError(t, db.MetaDelivery.Done(ctx, "c"))
	pending, _ = db.MetaDelivery.Pending(ctx, 10)
	require.Len(t, pending, 1)

	// Digests are forgotten after the retry window; the same body is then new.
	require.NoError(t, db.MetaDelivery.ForgetSeen(ctx, 3))
	require.ErrorIs(t, db.MetaDelivery.Keep(ctx, &MetaDelivery{ID: "c2", Arrival: 5}, []byte("digest-c")), ErrDeliverySeen)
	require.NoError(t, db.MetaDelivery.Keep(ctx, &MetaDelivery{ID: "a3", Arrival: 5, Sealed: []byte("1")}, []byte("digest-a")))
}
