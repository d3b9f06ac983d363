package scdb

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.mau.fi/util/dbutil"
)

// MetaEventQuery is the queries on sikkerchat_meta_event: the events of
// Meta's deliveries, one row each, in the lane of the person they are about.
// A lane is handled in order; lanes never wait for each other.
type MetaEventQuery struct {
	db *dbutil.Database
}

// States of a lane's event.
const (
	// MetaEventWaiting: to be handled (again) at NextAttemptAt.
	MetaEventWaiting = "waiting"
	// MetaEventHeld: a new person's first event, waiting for the page's
	// budget of new rooms.
	MetaEventHeld = "held"
	// MetaEventGivenUp: no longer tried; the room is still to be told.
	MetaEventGivenUp = "given_up"
)

// MetaEvent is one event waiting in its lane, sealed with the inbox key.
type MetaEvent struct {
	ID       string
	Lane     string
	Arrival  int64 // nanoseconds, of the delivery it came in
	Position int   // its place in that delivery
	State    string
	// Attempts counts the failures of the event itself; Tries counts every try.
	Attempts      int
	Tries         int
	NextAttemptAt time.Time
	LastAttemptAt time.Time
	Sealed        []byte
}

const metaEventColumns = `id, lane, arrival, position, state, attempts, tries, next_attempt_at, last_attempt_at, sealed`

func scanMetaEvent(row dbutil.Scannable) (*MetaEvent, error) {
	var e MetaEvent
	var next, last int64
	if err := row.Scan(&e.ID, &e.Lane, &e.Arrival, &e.Position, &e.State, &e.Attempts, &e.Tries, &next, &last, &e.Sealed); err != nil {
		return nil, err
	}
	e.NextAttemptAt, e.LastAttemptAt = timeOrZero(next), timeOrZero(last)
	return &e, nil
}

func timeOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// laneHead keeps the first event of each lane: nothing of its lane before it.
const laneHead = `NOT EXISTS (SELECT 1 FROM sikkerchat_meta_event p WHERE p.lane=e.lane
	AND (p.arrival<e.arrival OR (p.arrival=e.arrival AND p.position<e.position)))`

// Ready lists the first event of each lane that is due, oldest first.
func (eq *MetaEventQuery) Ready(ctx context.Context, now time.Time, limit int) ([]*MetaEvent, error) {
	return dbutil.ConvertRowFn[*MetaEvent](scanMetaEvent).NewRowIter(eq.db.Query(ctx, `SELECT `+metaEventColumns+`
		FROM sikkerchat_meta_event e WHERE next_attempt_at<=$1 AND `+laneHead+`
		ORDER BY arrival, position LIMIT $2`, now.UnixMilli(), limit)).AsList()
}

// NextDue is when the first lane that is not due yet will be (zero if none).
func (eq *MetaEventQuery) NextDue(ctx context.Context, now time.Time) (time.Time, error) {
	var next sql.NullInt64
	err := eq.db.QueryRow(ctx, `SELECT MIN(next_attempt_at) FROM sikkerchat_meta_event e WHERE next_attempt_at>$1 AND `+laneHead,
		now.UnixMilli()).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, err
	}
	return time.UnixMilli(next.Int64), nil
}

// Get returns one event; nil if it is gone.
func (eq *MetaEventQuery) Get(ctx context.Context, eventID string) (*MetaEvent, error) {
	e, err := scanMetaEvent(eq.db.QueryRow(ctx, `SELECT `+metaEventColumns+` FROM sikkerchat_meta_event WHERE id=$1`, eventID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return e, err
}

// Done drops a handled (or abandoned) event; the next of its lane follows.
func (eq *MetaEventQuery) Done(ctx context.Context, eventID string) error {
	_, err := eq.db.Exec(ctx, `DELETE FROM sikkerchat_meta_event WHERE id=$1`, eventID)
	return err
}

// Reschedule records a try that did not finish the event.
func (eq *MetaEventQuery) Reschedule(ctx context.Context, e *MetaEvent) error {
	_, err := eq.db.Exec(ctx, `UPDATE sikkerchat_meta_event SET state=$2, attempts=$3, tries=$4, next_attempt_at=$5, last_attempt_at=$6 WHERE id=$1`,
		e.ID, e.State, e.Attempts, e.Tries, msOrZero(e.NextAttemptAt), msOrZero(e.LastAttemptAt))
	return err
}

// Count counts the events waiting, and of them the lanes held for the budget.
func (eq *MetaEventQuery) Count(ctx context.Context) (waiting, heldLanes int, err error) {
	err = eq.db.QueryRow(ctx, `SELECT COUNT(*), COUNT(DISTINCT CASE WHEN state='held' THEN lane END) FROM sikkerchat_meta_event`).Scan(&waiting, &heldLanes)
	return
}
