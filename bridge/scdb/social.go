package scdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// SocialStatus is where a social conversation stands.
type SocialStatus string

const (
	SocialOpen   SocialStatus = "open"
	SocialClosed SocialStatus = "closed"
)

// Social is one row of sikkerchat_social: a person writing to one of the
// unit's Pages or Instagram accounts. The person's ID and name are only
// sealed (with the conversation key); PersonHash finds the row from Meta's
// events while it is open.
type Social struct {
	ID                 string
	Platform           string
	AccountID          string
	PersonHash         []byte
	PersonSealed       []byte
	NameSealed         []byte
	RoomID             id.RoomID
	GhostID            string
	Status             SocialStatus
	CreatedAt          time.Time
	LastInboundAt      time.Time
	ClosedAt           time.Time
	PurgeAfter         time.Time
	Hold               bool
	LinkedConversation string
}

// SocialQuery is the queries on sikkerchat_social.
type SocialQuery struct {
	*dbutil.QueryHelper[*Social]
}

const socialColumns = `id, platform, account_id, person_hash, person_sealed, name_sealed, room_id, ghost_id, status,
	created_at, last_inbound_at, closed_at, purge_after, hold, linked_conversation`

const (
	insertSocialQuery = `INSERT INTO sikkerchat_social (` + socialColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING`
	getSocialQuery         = `SELECT ` + socialColumns + ` FROM sikkerchat_social WHERE id=$1`
	getSocialByRoomQuery   = `SELECT ` + socialColumns + ` FROM sikkerchat_social WHERE room_id=$1`
	getSocialByLinkedQuery = `SELECT ` + socialColumns + ` FROM sikkerchat_social WHERE linked_conversation=$1 ORDER BY created_at DESC LIMIT 1`
	getSocialByPersonQuery = `SELECT ` + socialColumns + ` FROM sikkerchat_social WHERE account_id=$1 AND person_hash=$2 AND status='open'`
	listSocialWithRoom     = `SELECT ` + socialColumns + ` FROM sikkerchat_social WHERE room_id IS NOT NULL ORDER BY created_at`
	setSocialRoomQuery     = `UPDATE sikkerchat_social SET room_id=$2 WHERE id=$1`
	touchSocialQuery       = `UPDATE sikkerchat_social SET last_inbound_at=$2 WHERE id=$1 AND last_inbound_at<$2`
	closeSocialQuery       = `UPDATE sikkerchat_social SET status='closed', closed_at=$2, purge_after=$3,
		person_hash=NULL, person_sealed=NULL, name_sealed=NULL WHERE id=$1 AND status='open'`
	setSocialHoldQuery   = `UPDATE sikkerchat_social SET hold=$2 WHERE id=$1`
	setSocialLinkQuery   = `UPDATE sikkerchat_social SET linked_conversation=$2 WHERE id=$1`
	idleSocialQuery      = `SELECT id FROM sikkerchat_social WHERE status='open' AND (CASE WHEN last_inbound_at > created_at THEN last_inbound_at ELSE created_at END)<=$1`
	duePurgeSocialQuery  = `SELECT id FROM sikkerchat_social WHERE status='closed' AND NOT hold AND purge_after<=$1`
	deleteSocialQuery    = `DELETE FROM sikkerchat_social WHERE id=$1`
	countSocialOpenQuery = `SELECT COUNT(*) FROM sikkerchat_social WHERE status='open'`
)

func (s *Social) Scan(row dbutil.Scannable) (*Social, error) {
	var roomID, linked sql.NullString
	var createdAt, lastIn int64
	var closedAt, purgeAfter sql.NullInt64
	err := row.Scan(&s.ID, &s.Platform, &s.AccountID, &s.PersonHash, &s.PersonSealed, &s.NameSealed, &roomID, &s.GhostID,
		&s.Status, &createdAt, &lastIn, &closedAt, &purgeAfter, &s.Hold, &linked)
	if err != nil {
		return nil, err
	}
	s.RoomID = id.RoomID(roomID.String)
	s.LinkedConversation = linked.String
	s.CreatedAt = time.UnixMilli(createdAt)
	s.LastInboundAt = timeFromNull(sql.NullInt64{Int64: lastIn, Valid: lastIn > 0})
	s.ClosedAt = timeFromNull(closedAt)
	s.PurgeAfter = timeFromNull(purgeAfter)
	return s, nil
}

func (s *Social) sqlVariables() []any {
	var lastIn int64
	if !s.LastInboundAt.IsZero() {
		lastIn = s.LastInboundAt.UnixMilli()
	}
	return []any{s.ID, s.Platform, s.AccountID, s.PersonHash, s.PersonSealed, s.NameSealed, dbutil.StrPtr(s.RoomID), s.GhostID,
		s.Status, s.CreatedAt.UnixMilli(), lastIn, nullFromTime(s.ClosedAt), nullFromTime(s.PurgeAfter), s.Hold,
		dbutil.StrPtr(s.LinkedConversation)}
}

// Insert stores a new social conversation. ErrPersonTaken when another open
// conversation has the same person (a parallel first message won).
func (sq *SocialQuery) Insert(ctx context.Context, s *Social) error {
	res, err := sq.GetDB().Exec(ctx, insertSocialQuery, s.sqlVariables()...)
	if err != nil {
		return err
	} else if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrPersonTaken
	}
	return nil
}

// ErrPersonTaken: the person already has an open social conversation.
var ErrPersonTaken = errors.New("the person already has an open social conversation")

// Get returns a social conversation by ID; nil if there is none.
func (sq *SocialQuery) Get(ctx context.Context, socialID string) (*Social, error) {
	return sq.QueryOne(ctx, getSocialQuery, socialID)
}

// GetByRoom returns the social conversation of a room; nil if there is none.
func (sq *SocialQuery) GetByRoom(ctx context.Context, roomID id.RoomID) (*Social, error) {
	return sq.QueryOne(ctx, getSocialByRoomQuery, roomID)
}

// GetOpenByPerson finds the open social conversation of a person (by the
// HMAC of their ID) with an account; nil if there is none.
func (sq *SocialQuery) GetOpenByPerson(ctx context.Context, accountID string, personHash []byte) (*Social, error) {
	return sq.QueryOne(ctx, getSocialByPersonQuery, accountID, personHash)
}

// GetByLinked finds the social conversation a secure one was made from; nil if none.
func (sq *SocialQuery) GetByLinked(ctx context.Context, conversationID string) (*Social, error) {
	return sq.QueryOne(ctx, getSocialByLinkedQuery, conversationID)
}

// ListWithRoom lists the social conversations whose rooms the police keep.
func (sq *SocialQuery) ListWithRoom(ctx context.Context) ([]*Social, error) {
	return sq.QueryMany(ctx, listSocialWithRoom)
}

// SetRoom records the Matrix room of a social conversation.
func (sq *SocialQuery) SetRoom(ctx context.Context, socialID string, roomID id.RoomID) error {
	return sq.Exec(ctx, setSocialRoomQuery, socialID, roomID)
}

// NoteInbound moves the time of the person's last message forward (never back:
// Meta's events may come out of order).
func (sq *SocialQuery) NoteInbound(ctx context.Context, socialID string, at time.Time) error {
	return sq.Exec(ctx, touchSocialQuery, socialID, at.UnixMilli())
}

// Close closes an open social conversation and drops the person's ID, name
// and lookup hash; false if it was not open.
func (sq *SocialQuery) Close(ctx context.Context, socialID string, closedAt, purgeAfter time.Time) (bool, error) {
	res, err := sq.GetDB().Exec(ctx, closeSocialQuery, socialID, closedAt.UnixMilli(), purgeAfter.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SetHold places or lifts a legal hold.
func (sq *SocialQuery) SetHold(ctx context.Context, socialID string, hold bool) error {
	return sq.Exec(ctx, setSocialHoldQuery, socialID, hold)
}

// SetLinked records the secure conversation the social one moved to.
func (sq *SocialQuery) SetLinked(ctx context.Context, socialID, conversationID string) error {
	return sq.Exec(ctx, setSocialLinkQuery, socialID, conversationID)
}

// Idle lists open social conversations whose person (or creation) is older than cutoff.
func (sq *SocialQuery) Idle(ctx context.Context, cutoff time.Time) ([]string, error) {
	return queryStrings(ctx, sq.GetDB(), idleSocialQuery, cutoff.UnixMilli())
}

// DuePurge lists closed social conversations past retention and not on hold.
func (sq *SocialQuery) DuePurge(ctx context.Context, now time.Time) ([]string, error) {
	return queryStrings(ctx, sq.GetDB(), duePurgeSocialQuery, now.UnixMilli())
}

// Delete drops a social conversation with its events and outbox.
func (sq *SocialQuery) Delete(ctx context.Context, socialID string) error {
	return sq.Exec(ctx, deleteSocialQuery, socialID)
}

// CountCreatedSince counts the social conversations of some accounts made at
// or after a time, with the time of the oldest of them.
func (sq *SocialQuery) CountCreatedSince(ctx context.Context, accounts []string, since time.Time) (n int, oldest time.Time, err error) {
	var first sql.NullInt64
	query := `SELECT COUNT(*), MIN(created_at) FROM sikkerchat_social WHERE created_at>=$1 AND account_id IN (`
	args := []any{since.UnixMilli()}
	for i, account := range accounts {
		if i > 0 {
			query += ", "
		}
		args = append(args, account)
		query += fmt.Sprintf("$%d", len(args))
	}
	if err = sq.GetDB().QueryRow(ctx, query+`)`, args...).Scan(&n, &first); err != nil || !first.Valid {
		return n, time.Time{}, err
	}
	return n, time.UnixMilli(first.Int64), nil
}

// CountOpen counts the open social conversations.
func (sq *SocialQuery) CountOpen(ctx context.Context) (n int, err error) {
	err = sq.GetDB().QueryRow(ctx, countSocialOpenQuery).Scan(&n)
	return
}

// SocialEventQuery is the queries on sikkerchat_social_event.
type SocialEventQuery struct {
	db *dbutil.Database
}

// SocialEvent is a Meta event of a social conversation, by ID only.
type SocialEvent struct {
	EventID       string
	SocialID      string
	Direction     string
	Kind          string
	MatrixEventID id.EventID
	At            time.Time
	Done          bool
}

const socialEventColumns = `event_id, social_id, direction, kind, matrix_event_id, at, done`

func scanSocialEvent(row dbutil.Scannable) (*SocialEvent, error) {
	var e SocialEvent
	var mx sql.NullString
	var at int64
	if err := row.Scan(&e.EventID, &e.SocialID, &e.Direction, &e.Kind, &mx, &at, &e.Done); err != nil {
		return nil, err
	}
	e.MatrixEventID = id.EventID(mx.String)
	e.At = time.UnixMilli(at)
	return &e, nil
}

// Claim records an event as being handled; false (and the stored one) if it
// was seen before.
func (eq *SocialEventQuery) Claim(ctx context.Context, e *SocialEvent) (*SocialEvent, bool, error) {
	res, err := eq.db.Exec(ctx, `INSERT INTO sikkerchat_social_event (`+socialEventColumns+`) VALUES ($1, $2, $3, $4, $5, $6, false)
		ON CONFLICT (event_id) DO NOTHING`, e.EventID, e.SocialID, e.Direction, e.Kind, dbutil.StrPtr(e.MatrixEventID), e.At.UnixMilli())
	if err != nil {
		return nil, false, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return e, true, nil
	}
	stored, err := eq.Get(ctx, e.EventID)
	return stored, false, err
}

// Get returns an event by Meta's ID; nil if unknown.
func (eq *SocialEventQuery) Get(ctx context.Context, eventID string) (*SocialEvent, error) {
	e, err := scanSocialEvent(eq.db.QueryRow(ctx, `SELECT `+socialEventColumns+` FROM sikkerchat_social_event WHERE event_id=$1`, eventID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return e, err
}

// Finish records the Matrix event an event became (or none) and marks it done.
func (eq *SocialEventQuery) Finish(ctx context.Context, eventID string, matrixEventID id.EventID) error {
	_, err := eq.db.Exec(ctx, `UPDATE sikkerchat_social_event SET done=true, matrix_event_id=COALESCE($2, matrix_event_id) WHERE event_id=$1`,
		eventID, dbutil.StrPtr(matrixEventID))
	return err
}

// ByMatrixEvent finds the Meta event a Matrix event came from or went to.
func (eq *SocialEventQuery) ByMatrixEvent(ctx context.Context, socialID string, matrixEventID id.EventID) (*SocialEvent, error) {
	e, err := scanSocialEvent(eq.db.QueryRow(ctx, `SELECT `+socialEventColumns+` FROM sikkerchat_social_event
		WHERE social_id=$1 AND matrix_event_id=$2`, socialID, matrixEventID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return e, err
}

// LatestOutboundUpTo is the newest message the unit sent at or before a time
// (what a Messenger read watermark covers); nil if none.
func (eq *SocialEventQuery) LatestOutboundUpTo(ctx context.Context, socialID string, upTo time.Time) (*SocialEvent, error) {
	e, err := scanSocialEvent(eq.db.QueryRow(ctx, `SELECT `+socialEventColumns+` FROM sikkerchat_social_event
		WHERE social_id=$1 AND direction='out' AND kind='message' AND matrix_event_id IS NOT NULL AND at<=$2
		ORDER BY at DESC, event_id DESC LIMIT 1`, socialID, upTo.UnixMilli()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return e, err
}

// SocialOutboxQuery is the queries on sikkerchat_social_outbox.
type SocialOutboxQuery struct {
	db *dbutil.Database
}

// Outbox states.
const (
	OutboxQueued  = "queued"
	OutboxSending = "sending"
	OutboxSent    = "sent"
	OutboxFailed  = "failed"
)

// SocialOutboxEntry is something waiting for the Send API.
type SocialOutboxEntry struct {
	SocialID      string
	Seq           int64
	SourceID      string
	CreatedAt     time.Time
	Attempts      int
	NextAttemptAt time.Time
	State         string
	MessageID     string
	Sealed        []byte
}

const socialOutboxColumns = `social_id, seq, source_id, created_at, attempts, next_attempt_at, state, message_id, sealed`

func scanSocialOutbox(row dbutil.Scannable) (*SocialOutboxEntry, error) {
	var e SocialOutboxEntry
	var created, next int64
	var msg sql.NullString
	if err := row.Scan(&e.SocialID, &e.Seq, &e.SourceID, &created, &e.Attempts, &next, &e.State, &msg, &e.Sealed); err != nil {
		return nil, err
	}
	e.CreatedAt, e.NextAttemptAt, e.MessageID = time.UnixMilli(created), time.UnixMilli(next), msg.String
	return &e, nil
}

// Enqueue adds an entry after the conversation's last one; an entry with the
// same source (a redelivered Matrix event) is not added again: false and the
// stored one.
func (oq *SocialOutboxQuery) Enqueue(ctx context.Context, e *SocialOutboxEntry) (*SocialOutboxEntry, bool, error) {
	var stored *SocialOutboxEntry
	inserted := false
	err := oq.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		existing, err := scanSocialOutbox(oq.db.QueryRow(ctx, `SELECT `+socialOutboxColumns+` FROM sikkerchat_social_outbox
			WHERE social_id=$1 AND source_id=$2`, e.SocialID, e.SourceID))
		if err == nil {
			stored = existing
			return nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var seq int64
		if err = oq.db.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0)+1 FROM sikkerchat_social_outbox WHERE social_id=$1`, e.SocialID).Scan(&seq); err != nil {
			return err
		}
		e.Seq, e.State = seq, OutboxQueued
		_, err = oq.db.Exec(ctx, `INSERT INTO sikkerchat_social_outbox (`+socialOutboxColumns+`) VALUES ($1, $2, $3, $4, 0, $5, $6, NULL, $7)`,
			e.SocialID, e.Seq, e.SourceID, e.CreatedAt.UnixMilli(), e.NextAttemptAt.UnixMilli(), e.State, e.Sealed)
		stored, inserted = e, true
		return err
	})
	return stored, inserted, err
}

// Waiting lists what is queued or may be on its way, oldest first per conversation.
func (oq *SocialOutboxQuery) Waiting(ctx context.Context) ([]*SocialOutboxEntry, error) {
	return dbutil.ConvertRowFn[*SocialOutboxEntry](scanSocialOutbox).NewRowIter(oq.db.Query(ctx,
		`SELECT `+socialOutboxColumns+` FROM sikkerchat_social_outbox WHERE state IN ('queued', 'sending') ORDER BY social_id, seq`)).AsList()
}

// Get returns one entry; nil if there is none.
func (oq *SocialOutboxQuery) Get(ctx context.Context, socialID string, seq int64) (*SocialOutboxEntry, error) {
	e, err := scanSocialOutbox(oq.db.QueryRow(ctx, `SELECT `+socialOutboxColumns+` FROM sikkerchat_social_outbox WHERE social_id=$1 AND seq=$2`, socialID, seq))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return e, err
}

// MarkSending notes that a call to Meta is about to be made.
func (oq *SocialOutboxQuery) MarkSending(ctx context.Context, socialID string, seq int64) error {
	_, err := oq.db.Exec(ctx, `UPDATE sikkerchat_social_outbox SET state='sending', attempts=attempts+1 WHERE social_id=$1 AND seq=$2 AND state IN ('queued', 'sending')`, socialID, seq)
	return err
}

// MarkSent records Meta's message ID; false if it was already sent (an echo
// got there first).
func (oq *SocialOutboxQuery) MarkSent(ctx context.Context, socialID string, seq int64, messageID string) (bool, error) {
	res, err := oq.db.Exec(ctx, `UPDATE sikkerchat_social_outbox SET state='sent', message_id=$3 WHERE social_id=$1 AND seq=$2 AND state IN ('queued', 'sending')`,
		socialID, seq, messageID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Retry puts an entry back in the queue until a time.
func (oq *SocialOutboxQuery) Retry(ctx context.Context, socialID string, seq int64, at time.Time) error {
	_, err := oq.db.Exec(ctx, `UPDATE sikkerchat_social_outbox SET state='queued', next_attempt_at=$3 WHERE social_id=$1 AND seq=$2 AND state IN ('queued', 'sending')`,
		socialID, seq, at.UnixMilli())
	return err
}

// MarkFailed gives an entry up for good.
func (oq *SocialOutboxQuery) MarkFailed(ctx context.Context, socialID string, seq int64) error {
	_, err := oq.db.Exec(ctx, `UPDATE sikkerchat_social_outbox SET state='failed' WHERE social_id=$1 AND seq=$2 AND state IN ('queued', 'sending')`, socialID, seq)
	return err
}

// FailWaiting gives up everything still waiting in a conversation (at close).
func (oq *SocialOutboxQuery) FailWaiting(ctx context.Context, socialID string) (int64, error) {
	res, err := oq.db.Exec(ctx, `UPDATE sikkerchat_social_outbox SET state='failed' WHERE social_id=$1 AND state IN ('queued', 'sending')`, socialID)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
