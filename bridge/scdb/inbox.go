package scdb

import (
	"context"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// InboxQuery is the queries on sikkerchat_inbox: officers' encrypted events
// for conversation rooms, kept from the moment their appservice transaction
// arrives until the guest side has them.
type InboxQuery struct {
	db *dbutil.Database
}

// InboxEvent is an event left in the inbox.
type InboxEvent struct {
	EventID id.EventID
	Raw     string
}

const (
	insertInboxQuery = `INSERT INTO sikkerchat_inbox (event_id, room_id, event, received_at, arrival) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (event_id) DO NOTHING`
	deleteInboxQuery    = `DELETE FROM sikkerchat_inbox WHERE event_id=$1`
	leftInboxQuery      = `SELECT event_id, event FROM sikkerchat_inbox WHERE received_at < $1 ORDER BY arrival, received_at, event_id`
	bumpInboxQuery      = `UPDATE sikkerchat_inbox SET attempts=attempts+1 WHERE event_id=$1`
	dropStaleInboxQuery = `DELETE FROM sikkerchat_inbox WHERE attempts >= $1 OR received_at < $2`
	clearInboxQuery     = `DELETE FROM sikkerchat_inbox WHERE room_id=$1`
)

// Keep stores an event (a redelivered one is ignored). arrival orders the
// events as the homeserver sent them.
func (iq *InboxQuery) Keep(ctx context.Context, eventID id.EventID, roomID id.RoomID, raw string, receivedAt time.Time, arrival int64) error {
	_, err := iq.db.Exec(ctx, insertInboxQuery, eventID, roomID, raw, receivedAt.UnixMilli(), arrival)
	return err
}

// Done takes an event out.
func (iq *InboxQuery) Done(ctx context.Context, eventID id.EventID) error {
	_, err := iq.db.Exec(ctx, deleteInboxQuery, eventID)
	return err
}

// Leftovers lists what arrived before a time and is still there, in arrival order.
func (iq *InboxQuery) Leftovers(ctx context.Context, before time.Time) ([]InboxEvent, error) {
	return dbutil.ConvertRowFn[InboxEvent](func(row dbutil.Scannable) (e InboxEvent, err error) {
		err = row.Scan(&e.EventID, &e.Raw)
		return
	}).NewRowIter(iq.db.Query(ctx, leftInboxQuery, before.UnixMilli())).AsList()
}

// CountAttempt notes one more try at handling an event.
func (iq *InboxQuery) CountAttempt(ctx context.Context, eventID id.EventID) error {
	_, err := iq.db.Exec(ctx, bumpInboxQuery, eventID)
	return err
}

// DropStale lets go of events tried too often or kept too long.
func (iq *InboxQuery) DropStale(ctx context.Context, maxAttempts int, olderThan time.Time) error {
	_, err := iq.db.Exec(ctx, dropStaleInboxQuery, maxAttempts, olderThan.UnixMilli())
	return err
}

// ClearRoom drops every event of a room (its conversation closed).
func (iq *InboxQuery) ClearRoom(ctx context.Context, roomID id.RoomID) error {
	_, err := iq.db.Exec(ctx, clearInboxQuery, roomID)
	return err
}
