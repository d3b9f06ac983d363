package bridge

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

//go:embed upgrades/*.sql
var upgradesFS embed.FS

var upgradeTable = dbutil.BuildUpgradeTable().WithFSPath(upgradesFS, "upgrades").Finish()

// Store holds sikkerchat's own tables, in a child of the bridgev2 database so
// that bridgev2 runs its upgrades with the rest.
type Store struct {
	*dbutil.Database
	Conversation *dbutil.QueryHelper[*Conversation]
	Invite       *dbutil.QueryHelper[*Invite]
}

func NewStore(parent *dbutil.Database, log dbutil.DatabaseLogger) *Store {
	db := parent.Child("sikkerchat_version", upgradeTable, log)
	return &Store{
		Database: db,
		Conversation: dbutil.MakeQueryHelper(db, func(_ *dbutil.QueryHelper[*Conversation]) *Conversation {
			return &Conversation{}
		}),
		Invite: dbutil.MakeQueryHelper(db, func(_ *dbutil.QueryHelper[*Invite]) *Invite {
			return &Invite{}
		}),
	}
}

// ConversationStatus is the lifecycle state of DESIGN.md's conversation.
type ConversationStatus string

const (
	StatusCreated ConversationStatus = "created"
	StatusActive  ConversationStatus = "active"
	StatusClosed  ConversationStatus = "closed"
	StatusExpired ConversationStatus = "expired"
)

type Conversation struct {
	ID      string
	RoomID  id.RoomID
	GhostID string
	// Label is the officer's label, in memory only: the database has it
	// sealed with the conversation key (Transcript.OpenLabel).
	Label           string
	sealedLabel     []byte
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

const conversationColumns = `id, room_id, ghost_id, label_sealed, status, created_by, created_at, invite_expires_at,
	joined_at, officer_read_seq, closed_at, purge_after, hold`

const (
	getConversationByIDQuery   = `SELECT ` + conversationColumns + ` FROM sikkerchat_conversation WHERE id=$1`
	getConversationByRoomQuery = `SELECT ` + conversationColumns + ` FROM sikkerchat_conversation WHERE room_id=$1`
	countOpenByOfficerQuery    = `SELECT COUNT(*) FROM sikkerchat_conversation WHERE created_by=$1 AND status IN ('created', 'active')`
	insertConversationQuery    = `INSERT INTO sikkerchat_conversation (` + conversationColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`
	setConversationRoomQuery = `UPDATE sikkerchat_conversation SET room_id=$2 WHERE id=$1`
)

func (c *Conversation) Scan(row dbutil.Scannable) (*Conversation, error) {
	var roomID sql.NullString
	var createdAt, expiresAt int64
	var joinedAt, closedAt, purgeAfter sql.NullInt64
	err := row.Scan(&c.ID, &roomID, &c.GhostID, &c.sealedLabel, &c.Status, &c.CreatedBy, &createdAt, &expiresAt,
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
	return []any{c.ID, dbutil.StrPtr(c.RoomID), c.GhostID, c.sealedLabel, c.Status, c.CreatedBy,
		c.CreatedAt.UnixMilli(), c.InviteExpiresAt.UnixMilli(),
		nullFromTime(c.JoinedAt), c.OfficerReadSeq, nullFromTime(c.ClosedAt), nullFromTime(c.PurgeAfter), c.Hold}
}

func timeFromNull(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64)
}

func nullFromTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func (s *Store) GetConversation(ctx context.Context, conversationID string) (*Conversation, error) {
	return s.Conversation.QueryOne(ctx, getConversationByIDQuery, conversationID)
}

func (s *Store) GetConversationByRoom(ctx context.Context, roomID id.RoomID) (*Conversation, error) {
	return s.Conversation.QueryOne(ctx, getConversationByRoomQuery, roomID)
}

func (s *Store) CountOpenConversations(ctx context.Context, officer id.UserID) (count int, err error) {
	err = s.QueryRow(ctx, countOpenByOfficerQuery, officer).Scan(&count)
	return
}

func (s *Store) SetConversationRoom(ctx context.Context, conversationID string, roomID id.RoomID) error {
	return s.Conversation.Exec(ctx, setConversationRoomQuery, conversationID, roomID)
}

// Invite is one link + code word for a conversation. Token and code are never stored.
type Invite struct {
	TokenHash      []byte
	ConversationID string
	CodeMAC        []byte
	CreatedAt      time.Time
	ExpiresAt      time.Time
	UsedAt         time.Time
	RevokedAt      time.Time
	FailedAttempts int
}

const (
	inviteColumns     = `token_hash, conversation_id, code_mac, created_at, expires_at, used_at, revoked_at, failed_attempts`
	insertInviteQuery = `INSERT INTO sikkerchat_invite (` + inviteColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	getInviteQuery    = `SELECT ` + inviteColumns + ` FROM sikkerchat_invite WHERE token_hash=$1`
)

func (inv *Invite) Scan(row dbutil.Scannable) (*Invite, error) {
	var createdAt, expiresAt int64
	var usedAt, revokedAt sql.NullInt64
	err := row.Scan(&inv.TokenHash, &inv.ConversationID, &inv.CodeMAC, &createdAt, &expiresAt, &usedAt, &revokedAt, &inv.FailedAttempts)
	if err != nil {
		return nil, err
	}
	inv.CreatedAt = time.UnixMilli(createdAt)
	inv.ExpiresAt = time.UnixMilli(expiresAt)
	inv.UsedAt = timeFromNull(usedAt)
	inv.RevokedAt = timeFromNull(revokedAt)
	return inv, nil
}

func (s *Store) GetInvite(ctx context.Context, tokenHash []byte) (*Invite, error) {
	return s.Invite.QueryOne(ctx, getInviteQuery, tokenHash)
}

// InsertConversation stores a new conversation with its first invite in one
// transaction, so that a crash leaves all or nothing. The transcript key is
// written to the key store first (see Transcript.CreateKey).
func (s *Store) InsertConversation(ctx context.Context, conv *Conversation, inv *Invite) error {
	if inv.ConversationID != conv.ID {
		return errors.New("invite belongs to another conversation")
	}
	return s.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := s.Exec(ctx, insertConversationQuery, conv.sqlVariables()...); err != nil {
			return fmt.Errorf("failed to insert conversation: %w", err)
		}
		_, err := s.Exec(ctx, insertInviteQuery, inv.TokenHash, inv.ConversationID, inv.CodeMAC,
			inv.CreatedAt.UnixMilli(), inv.ExpiresAt.UnixMilli(), nullFromTime(inv.UsedAt), nullFromTime(inv.RevokedAt), inv.FailedAttempts)
		if err != nil {
			return fmt.Errorf("failed to insert invite: %w", err)
		}
		return nil
	})
}

const deleteConversationQuery = `DELETE FROM sikkerchat_conversation WHERE id=$1`

// DeleteConversation removes a conversation with its invites, key and transcript.
func (s *Store) DeleteConversation(ctx context.Context, conversationID string) error {
	_, err := s.Exec(ctx, deleteConversationQuery, conversationID)
	return err
}

var errNoRows = sql.ErrNoRows

const conversationsByStateQuery = `SELECT status, COUNT(*) FROM sikkerchat_conversation GROUP BY status`

// ConversationsByState counts conversations per lifecycle state (for metrics).
func (s *Store) ConversationsByState(ctx context.Context) (map[string]int, error) {
	rows, err := s.Query(ctx, conversationsByStateQuery)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var state string
		var n int
		if err = rows.Scan(&state, &n); err != nil {
			return nil, err
		}
		out[state] = n
	}
	return out, rows.Err()
}
