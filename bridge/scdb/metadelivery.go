package scdb

import (
	"context"
	"errors"

	"go.mau.fi/util/dbutil"
)

// MetaDeliveryQuery is the queries on sikkerchat_meta_delivery (Meta's
// webhook bodies, sealed, from arrival until their events are split into
// their lanes) and sikkerchat_meta_seen (a keyed digest of every body kept,
// for as long as Meta may send it again).
type MetaDeliveryQuery struct {
	db *dbutil.Database
}

// MetaDelivery is a stored webhook body.
type MetaDelivery struct {
	ID      string
	Arrival int64
	Sealed  []byte
}

// ErrDeliverySeen: a body with the same digest was kept before.
var ErrDeliverySeen = errors.New("the same webhook delivery was kept before")

// Keep stores a delivery with its digest, in one transaction: ErrDeliverySeen
// (and nothing stored) when the digest is known.
func (mq *MetaDeliveryQuery) Keep(ctx context.Context, d *MetaDelivery, digest []byte) error {
	return mq.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		res, err := mq.db.Exec(ctx, `INSERT INTO sikkerchat_meta_seen (digest, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, digest, d.Arrival)
		if err != nil {
			return err
		} else if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrDeliverySeen
		}
		_, err = mq.db.Exec(ctx, `INSERT INTO sikkerchat_meta_delivery (id, arrival, sealed) VALUES ($1, $2, $3)`, d.ID, d.Arrival, d.Sealed)
		return err
	})
}

// Pending lists stored deliveries in arrival order.
func (mq *MetaDeliveryQuery) Pending(ctx context.Context, limit int) ([]*MetaDelivery, error) {
	return dbutil.ConvertRowFn[*MetaDelivery](func(row dbutil.Scannable) (*MetaDelivery, error) {
		var d MetaDelivery
		return &d, row.Scan(&d.ID, &d.Arrival, &d.Sealed)
	}).NewRowIter(mq.db.Query(ctx, `SELECT id, arrival, sealed FROM sikkerchat_meta_delivery ORDER BY arrival, id LIMIT $1`, limit)).AsList()
}

// Done drops a delivery that cannot be read (its events never will be).
func (mq *MetaDeliveryQuery) Done(ctx context.Context, deliveryID string) error {
	_, err := mq.db.Exec(ctx, `DELETE FROM sikkerchat_meta_delivery WHERE id=$1`, deliveryID)
	return err
}

// Split replaces a delivery by its events, each in its lane, in one
// transaction: a crash leaves either the delivery or all of its events.
func (mq *MetaDeliveryQuery) Split(ctx context.Context, deliveryID string, events []*MetaEvent) error {
	return mq.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		for _, e := range events {
			if _, err := mq.db.Exec(ctx, `INSERT INTO sikkerchat_meta_event (`+metaEventColumns+`) VALUES ($1, $2, $3, $4, $5, 0, 0, 0, 0, $6)`,
				e.ID, e.Lane, e.Arrival, e.Position, MetaEventWaiting, e.Sealed); err != nil {
				return err
			}
		}
		_, err := mq.db.Exec(ctx, `DELETE FROM sikkerchat_meta_delivery WHERE id=$1`, deliveryID)
		return err
	})
}

// ForgetSeen drops the digests of bodies kept before a time (nanoseconds):
// Meta no longer sends those again.
func (mq *MetaDeliveryQuery) ForgetSeen(ctx context.Context, before int64) error {
	_, err := mq.db.Exec(ctx, `DELETE FROM sikkerchat_meta_seen WHERE seen_at<$1`, before)
	return err
}
