package scdb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// ConversationStatus is the lifecycle state of a conversation.
type ConversationStatus string

const (
	StatusCreated ConversationStatus = "created"
	StatusActive  ConversationStatus = "active"
	StatusClosed  ConversationStatus = "closed"
	StatusExpired ConversationStatus = "expired"
)

// Open tells whether the guest may still take part.
func (s ConversationStatus) Open() bool {
	return s == StatusCreated || s == StatusActive
}

// Conversation is one row of sikkerchat_conversation (a bridgev2 portal).
// No message content lives here; the label only sealed.
type Conversation struct {
	ID      string
	RoomID  id.RoomID
	GhostID string
	// Label is the officer's label, in memory only; SealedLabel is how the
	// database has it (sealed with the conversation key).
	Label           string
	SealedLabel     []byte
	Status          ConversationStatus
	CreatedBy       id.UserID
	CreatedAt       time.Time
	InviteExpiresAt time.Time
	JoinedAt        time.Time
	OfficerReadSeq  int64
	ClosedAt        time.Time
	PurgeAfter      time.Time
	Hold            bool
}

// ConversationQuery is the queries on sikkerchat_conversation.
type ConversationQuery struct {
	*dbutil.QueryHelper[*Conversation]
}

const conversationColumns = `id, room_id, ghost_id, label_sealed, status, created_by, created_at, invite_expires_at,
	joined_at, officer_read_seq, closed_at, purge_after, hold`

const (
	getConversationByIDQuery   = `SELECT ` + conversationColumns + ` FROM sikkerchat_conversation WHERE id=$1`
	getConversationByRoomQuery = `SELECT ` + conversationColumns + ` FROM sikkerchat_conversation WHERE room_id=$1`
	countOpenByOfficerQuery    = `SELECT COUNT(*) FROM sikkerchat_conversation WHERE created_by=$1 AND status IN ('created', 'active')`
	listOpenByOfficerQuery     = `SELECT ` + conversationColumns + ` FROM sikkerchat_conversation
		WHERE status IN ('created', 'active') AND created_by=$1 ORDER BY created_at DESC, id`
	listByOfficerQuery      = `SELECT ` + conversationColumns + ` FROM sikkerchat_conversation WHERE created_by=$1 ORDER BY created_at`
	listWithRoomQuery       = `SELECT ` + conversationColumns + ` FROM sikkerchat_conversation WHERE room_id IS NOT NULL ORDER BY created_at`
	insertConversationQuery = `INSERT INTO sikkerchat_conversation (` + conversationColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`
	setConversationRoomQuery  = `UPDATE sikkerchat_conversation SET room_id=$2 WHERE id=$1`
	deleteConversationQuery   = `DELETE FROM sikkerchat_conversation WHERE id=$1`
	conversationsByStateQuery = `SELECT status, COUNT(*) FROM sikkerchat_conversation GROUP BY status`
	activateQuery             = `UPDATE sikkerchat_conversation SET status='active', joined_at=COALESCE(joined_at, $2) WHERE id=$1 AND status IN ('created', 'active')`
	setInviteExpiryQuery      = `UPDATE sikkerchat_conversation SET invite_expires_at=$2 WHERE id=$1`
	closeConversationQuery    = `UPDATE sikkerchat_conversation SET status=$2, closed_at=$3, purge_after=$4
		WHERE id=$1 AND status IN ('created', 'active')`
	// A write that changes nothing: it takes the conversation's row lock and
	// says whether the conversation is still open.
	holdOpenConversationQuery = `UPDATE sikkerchat_conversation SET status=status WHERE id=$1 AND status IN ('created', 'active')`
	setHoldQuery              = `UPDATE sikkerchat_conversation SET hold=$2 WHERE id=$1`
	setOfficerReadQuery       = `UPDATE sikkerchat_conversation SET officer_read_seq=$2 WHERE id=$1 AND officer_read_seq<$2`
	duePurgeQuery             = `SELECT id FROM sikkerchat_conversation WHERE status IN ('closed', 'expired') AND NOT hold AND purge_after<=$1`
	expiredInvitesQuery       = `SELECT id FROM sikkerchat_conversation WHERE status='created' AND invite_expires_at<=$1`
	idleQuery                 = `SELECT c.id FROM sikkerchat_conversation c WHERE c.status='active' AND
		COALESCE((SELECT MAX(t.created_at) FROM sikkerchat_transcript t WHERE t.conversation_id=c.id), c.joined_at, c.created_at)<=$1`
)

func (c *Conversation) Scan(row dbutil.Scannable) (*Conversation, error) {
	var roomID sql.NullString
	var createdAt, expiresAt int64
	var joinedAt, closedAt, purgeAfter sql.NullInt64
	err := row.Scan(&c.ID, &roomID, &c.GhostID, &c.SealedLabel, &c.Status, &c.CreatedBy, &createdAt, &expiresAt,
		&joinedAt, &c.OfficerReadSeq, &closedAt, &purgeAfter, &c.Hold)
	if err != nil {
		return nil, err
	}
	c.RoomID = id.RoomID(roomID.String)
	c.CreatedAt = time.UnixMilli(createdAt)
	c.InviteExpiresAt = time.UnixMilli(expiresAt)
	c.JoinedAt = timeFromNull(joinedAt)
	c.ClosedAt = timeFromNull(closedAt)
	c.PurgeAfter = timeFromNull(purgeAfter)
	return c, nil
}

func (c *Conversation) sqlVariables() []any {
	return []any{c.ID, dbutil.StrPtr(c.RoomID), c.GhostID, c.SealedLabel, c.Status, c.CreatedBy,
		c.CreatedAt.UnixMilli(), c.InviteExpiresAt.UnixMilli(),
		nullFromTime(c.JoinedAt), c.OfficerReadSeq, nullFromTime(c.ClosedAt), nullFromTime(c.PurgeAfter), c.Hold}
}

// Get returns a conversation by ID; nil if there is none.
func (cq *ConversationQuery) Get(ctx context.Context, conversationID string) (*Conversation, error) {
	return cq.QueryOne(ctx, getConversationByIDQuery, conversationID)
}

// GetByRoom returns the conversation of a Matrix room; nil if there is none.
func (cq *ConversationQuery) GetByRoom(ctx context.Context, roomID id.RoomID) (*Conversation, error) {
	return cq.QueryOne(ctx, getConversationByRoomQuery, roomID)
}

// CountOpenByOfficer counts the open conversations an officer created.
func (cq *ConversationQuery) CountOpenByOfficer(ctx context.Context, officer id.UserID) (count int, err error) {
	err = cq.GetDB().QueryRow(ctx, countOpenByOfficerQuery, officer).Scan(&count)
	return
}

// ListOpenByOfficer lists the open conversations an officer created, newest first.
func (cq *ConversationQuery) ListOpenByOfficer(ctx context.Context, officer id.UserID) ([]*Conversation, error) {
	return cq.QueryMany(ctx, listOpenByOfficerQuery, officer)
}

// ListByOfficer lists every conversation an officer created, oldest first.
func (cq *ConversationQuery) ListByOfficer(ctx context.Context, officer id.UserID) ([]*Conversation, error) {
	return cq.QueryMany(ctx, listByOfficerQuery, officer)
}

// ListWithRoom lists every conversation whose room the police still keep.
func (cq *ConversationQuery) ListWithRoom(ctx context.Context) ([]*Conversation, error) {
	return cq.QueryMany(ctx, listWithRoomQuery)
}

// Insert stores a new conversation with its first invite in one
// transaction, so that a crash leaves all or nothing.
func (cq *ConversationQuery) Insert(ctx context.Context, conv *Conversation, inv *Invite) error {
	if inv.ConversationID != conv.ID {
		return fmt.Errorf("invite belongs to another conversation")
	}
	db := cq.GetDB()
	return db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := db.Exec(ctx, insertConversationQuery, conv.sqlVariables()...); err != nil {
			return fmt.Errorf("failed to insert conversation: %w", err)
		}
		if _, err := db.Exec(ctx, insertInviteQuery, inv.sqlVariables()...); err != nil {
			return fmt.Errorf("failed to insert invite: %w", err)
		}
		return nil
	})
}

// SetRoom records the Matrix room of a conversation.
func (cq *ConversationQuery) SetRoom(ctx context.Context, conversationID string, roomID id.RoomID) error {
	return cq.Exec(ctx, setConversationRoomQuery, conversationID, roomID)
}

// Delete removes a conversation with its invites, sessions, transcript and files.
func (cq *ConversationQuery) Delete(ctx context.Context, conversationID string) error {
	return cq.Exec(ctx, deleteConversationQuery, conversationID)
}

// CountByState counts conversations per lifecycle state (for metrics).
func (cq *ConversationQuery) CountByState(ctx context.Context) (map[string]int, error) {
	type stateCount struct {
		state string
		n     int
	}
	rows := dbutil.ConvertRowFn[stateCount](func(row dbutil.Scannable) (sc stateCount, err error) {
		err = row.Scan(&sc.state, &sc.n)
		return
	}).NewRowIter(cq.GetDB().Query(ctx, conversationsByStateQuery))
	return dbutil.RowIterAsMap(rows, func(sc stateCount) (string, int) { return sc.state, sc.n })
}

// Activate marks a conversation active at the guest's first join.
func (cq *ConversationQuery) Activate(ctx context.Context, conversationID string, at time.Time) error {
	return cq.Exec(ctx, activateQuery, conversationID, at.UnixMilli())
}

// SetInviteExpiry records when the newest invite runs out.
func (cq *ConversationQuery) SetInviteExpiry(ctx context.Context, conversationID string, expires time.Time) error {
	return cq.Exec(ctx, setInviteExpiryQuery, conversationID, expires.UnixMilli())
}

// Close marks an open conversation closed; false if it was not open.
func (cq *ConversationQuery) Close(ctx context.Context, conversationID string, status ConversationStatus, closedAt, purgeAfter time.Time) (bool, error) {
	return affectedOne(cq.GetDB().Exec(ctx, closeConversationQuery, conversationID, status, closedAt.UnixMilli(), purgeAfter.UnixMilli()))
}

// HoldOpen takes the conversation's row lock (inside a transaction) and
// tells whether it is still open: a close running at the same time waits,
// or has already closed it.
func (cq *ConversationQuery) HoldOpen(ctx context.Context, conversationID string) (bool, error) {
	return affectedOne(cq.GetDB().Exec(ctx, holdOpenConversationQuery, conversationID))
}

// SetHold places or lifts a legal hold.
func (cq *ConversationQuery) SetHold(ctx context.Context, conversationID string, hold bool) error {
	return cq.Exec(ctx, setHoldQuery, conversationID, hold)
}

// SetOfficerRead moves the officers' read position forward (never back).
func (cq *ConversationQuery) SetOfficerRead(ctx context.Context, conversationID string, seq int64) error {
	return cq.Exec(ctx, setOfficerReadQuery, conversationID, seq)
}

// DuePurge lists closed conversations without hold whose retention ended.
func (cq *ConversationQuery) DuePurge(ctx context.Context, now time.Time) ([]string, error) {
	return queryStrings(ctx, cq.GetDB(), duePurgeQuery, now.UnixMilli())
}

// ExpiredInvites lists conversations whose link ran out unused.
func (cq *ConversationQuery) ExpiredInvites(ctx context.Context, now time.Time) ([]string, error) {
	return queryStrings(ctx, cq.GetDB(), expiredInvitesQuery, now.UnixMilli())
}

// Idle lists active conversations without a message since the cutoff.
func (cq *ConversationQuery) Idle(ctx context.Context, cutoff time.Time) ([]string, error) {
	return queryStrings(ctx, cq.GetDB(), idleQuery, cutoff.UnixMilli())
}
