package scdb

import (
	"context"
	"database/sql"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// Direction tells who wrote a transcript entry.
type Direction string

const (
	ToGuest   Direction = "to_guest"
	FromGuest Direction = "from_guest"
)

// EntryStatus is the delivery state of a guest's message.
type EntryStatus string

const (
	EntryStored    EntryStatus = "stored"
	EntryDelivered EntryStatus = "delivered"
	// EntryFailed: the homeserver refused it for good (e.g. too large).
	EntryFailed EntryStatus = "failed"
	// EntryRead is derived from the officers' read receipts, never stored.
	EntryRead EntryStatus = "read"
)

// TranscriptRow is one row of sikkerchat_transcript: the plain columns the
// bridge needs to find and order entries, and the sealed entry itself.
type TranscriptRow struct {
	ConversationID string
	Seq            int64
	Direction      Direction
	MatrixEventID  id.EventID
	ClientID       string
	Status         EntryStatus
	CreatedAt      time.Time
	Sealed         []byte
}

// TranscriptQuery is the queries on sikkerchat_transcript.
type TranscriptQuery struct {
	*dbutil.QueryHelper[*TranscriptRow]
}

const (
	transcriptColumns     = `conversation_id, seq, direction, matrix_event_id, client_id, status, created_at, sealed`
	maxTranscriptSeqQuery = `SELECT COALESCE(MAX(seq), 0) FROM sikkerchat_transcript WHERE conversation_id=$1`
	insertTranscriptQuery = `INSERT INTO sikkerchat_transcript (` + transcriptColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`
	getTranscriptQuery = `SELECT ` + transcriptColumns + ` FROM sikkerchat_transcript
		WHERE conversation_id=$1 AND seq>$2 ORDER BY seq`
	getByClientIDQuery = `SELECT ` + transcriptColumns + ` FROM sikkerchat_transcript WHERE conversation_id=$1 AND client_id=$2`
	getBySeqQuery      = `SELECT ` + transcriptColumns + ` FROM sikkerchat_transcript WHERE conversation_id=$1 AND seq=$2`
	getByEventQuery    = `SELECT ` + transcriptColumns + ` FROM sikkerchat_transcript WHERE conversation_id=$1 AND matrix_event_id=$2`
	markDeliveredQuery = `UPDATE sikkerchat_transcript SET matrix_event_id=$3, status='delivered'
		WHERE conversation_id=$1 AND seq=$2 AND status='stored'`
	markUndeliverableQuery         = `UPDATE sikkerchat_transcript SET status='failed' WHERE conversation_id=$1 AND seq=$2 AND status='stored'`
	resealQuery                    = `UPDATE sikkerchat_transcript SET sealed=$3 WHERE conversation_id=$1 AND seq=$2`
	undeliveredConversationsQuery  = `SELECT conversation_id, COUNT(*) FROM sikkerchat_transcript WHERE status='stored' GROUP BY conversation_id ORDER BY conversation_id`
	undeliveredInConversationQuery = `SELECT seq FROM sikkerchat_transcript WHERE status='stored' AND conversation_id=$1 ORDER BY seq LIMIT 100`
	countUndeliveredQuery          = `SELECT COUNT(*) FROM sikkerchat_transcript WHERE conversation_id=$1 AND status='stored'`
	shredTranscriptQuery           = `DELETE FROM sikkerchat_transcript WHERE conversation_id=$1`
	latestToGuestQuery             = `SELECT matrix_event_id FROM sikkerchat_transcript
		WHERE conversation_id=$1 AND direction='to_guest' AND matrix_event_id IS NOT NULL AND seq<=$2 ORDER BY seq DESC LIMIT 1`
	seqOfEventQuery         = `SELECT seq FROM sikkerchat_transcript WHERE conversation_id=$1 AND matrix_event_id=$2`
	deliveredFromGuestQuery = `SELECT seq FROM sikkerchat_transcript
		WHERE conversation_id=$1 AND direction='from_guest' AND status='delivered' AND seq>$2 AND seq<=$3 ORDER BY seq`
)

func (r *TranscriptRow) Scan(row dbutil.Scannable) (*TranscriptRow, error) {
	var createdAt int64
	var eventID, clientID sql.NullString
	if err := row.Scan(&r.ConversationID, &r.Seq, &r.Direction, &eventID, &clientID, &r.Status, &createdAt, &r.Sealed); err != nil {
		return nil, err
	}
	r.MatrixEventID, r.ClientID, r.CreatedAt = id.EventID(eventID.String), clientID.String, time.UnixMilli(createdAt)
	return r, nil
}

// MaxSeq is the conversation's last position (0 when it has none).
func (tq *TranscriptQuery) MaxSeq(ctx context.Context, conversationID string) (seq int64, err error) {
	err = tq.GetDB().QueryRow(ctx, maxTranscriptSeqQuery, conversationID).Scan(&seq)
	return
}

// Insert stores a row; false when an entry with the same Matrix event or
// client ID (or position) is already there.
func (tq *TranscriptQuery) Insert(ctx context.Context, r *TranscriptRow) (bool, error) {
	return affectedOne(tq.GetDB().Exec(ctx, insertTranscriptQuery, r.ConversationID, r.Seq, r.Direction,
		nullString(string(r.MatrixEventID)), nullString(r.ClientID), r.Status, r.CreatedAt.UnixMilli(), r.Sealed))
}

// Since returns a conversation's rows after a position, in order.
func (tq *TranscriptQuery) Since(ctx context.Context, conversationID string, after int64) ([]*TranscriptRow, error) {
	return tq.QueryMany(ctx, getTranscriptQuery, conversationID, after)
}

// ByClientID finds a guest's message by the guest's own ID; nil if there is none.
func (tq *TranscriptQuery) ByClientID(ctx context.Context, conversationID, clientID string) (*TranscriptRow, error) {
	return tq.QueryOne(ctx, getByClientIDQuery, conversationID, clientID)
}

// BySeq finds a row by its position; nil if there is none.
func (tq *TranscriptQuery) BySeq(ctx context.Context, conversationID string, seq int64) (*TranscriptRow, error) {
	return tq.QueryOne(ctx, getBySeqQuery, conversationID, seq)
}

// ByEvent finds a row by its Matrix event; nil if there is none.
func (tq *TranscriptQuery) ByEvent(ctx context.Context, conversationID string, eventID id.EventID) (*TranscriptRow, error) {
	return tq.QueryOne(ctx, getByEventQuery, conversationID, eventID)
}

// MarkDelivered records the Matrix event of a guest message; false if it was already delivered.
func (tq *TranscriptQuery) MarkDelivered(ctx context.Context, conversationID string, seq int64, eventID id.EventID) (bool, error) {
	return affectedOne(tq.GetDB().Exec(ctx, markDeliveredQuery, conversationID, seq, eventID))
}

// MarkUndeliverable records that the homeserver refused a guest message for good.
func (tq *TranscriptQuery) MarkUndeliverable(ctx context.Context, conversationID string, seq int64) error {
	return tq.Exec(ctx, markUndeliverableQuery, conversationID, seq)
}

// Reseal replaces a row's sealed entry (edits and deletions).
func (tq *TranscriptQuery) Reseal(ctx context.Context, conversationID string, seq int64, sealed []byte) error {
	return tq.Exec(ctx, resealQuery, conversationID, seq, sealed)
}

// Undelivered counts the stored, undelivered guest messages per conversation.
func (tq *TranscriptQuery) Undelivered(ctx context.Context) (map[string]int, error) {
	type convCount struct {
		conv string
		n    int
	}
	rows := dbutil.ConvertRowFn[convCount](func(row dbutil.Scannable) (c convCount, err error) {
		err = row.Scan(&c.conv, &c.n)
		return
	}).NewRowIter(tq.GetDB().Query(ctx, undeliveredConversationsQuery))
	return dbutil.RowIterAsMap(rows, func(c convCount) (string, int) { return c.conv, c.n })
}

// UndeliveredIn lists a conversation's undelivered guest messages, oldest
// first, up to 100.
func (tq *TranscriptQuery) UndeliveredIn(ctx context.Context, conversationID string) ([]int64, error) {
	return queryInt64s(ctx, tq.GetDB(), undeliveredInConversationQuery, conversationID)
}

// CountUndelivered counts a conversation's undelivered guest messages.
func (tq *TranscriptQuery) CountUndelivered(ctx context.Context, conversationID string) (n int, err error) {
	err = tq.GetDB().QueryRow(ctx, countUndeliveredQuery, conversationID).Scan(&n)
	return
}

// Shred deletes a conversation's rows.
func (tq *TranscriptQuery) Shred(ctx context.Context, conversationID string) error {
	return tq.Exec(ctx, shredTranscriptQuery, conversationID)
}

// LatestToGuest is the newest officer message at or before a position ("" if none).
func (tq *TranscriptQuery) LatestToGuest(ctx context.Context, conversationID string, upTo int64) (id.EventID, error) {
	var eventID id.EventID
	err := tq.GetDB().QueryRow(ctx, latestToGuestQuery, conversationID, upTo).Scan(&eventID)
	if err == sql.ErrNoRows {
		return "", nil
	}
	return eventID, err
}

// SeqOf is the position of a Matrix event (0 if the transcript does not have it).
func (tq *TranscriptQuery) SeqOf(ctx context.Context, conversationID string, eventID id.EventID) (int64, error) {
	var seq int64
	err := tq.GetDB().QueryRow(ctx, seqOfEventQuery, conversationID, eventID).Scan(&seq)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	return seq, err
}

// DeliveredFromGuest lists the delivered guest messages after one position up to another.
func (tq *TranscriptQuery) DeliveredFromGuest(ctx context.Context, conversationID string, after, upTo int64) ([]int64, error) {
	return queryInt64s(ctx, tq.GetDB(), deliveredFromGuestQuery, conversationID, after, upTo)
}
