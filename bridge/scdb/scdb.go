// Package scdb is sikkerchat's part of the bridge database: its tables, one
// file each with the queries on it, and their schema upgrades. It lives in a
// child of the bridgev2 database, so bridgev2 runs the upgrades with its own.
// No other package of sikkerchat writes SQL.
package scdb

import (
	"context"
	"database/sql"
	"embed"
	"time"

	"go.mau.fi/util/dbutil"
)

//go:embed upgrades/*.sql
var upgradesFS embed.FS

var upgradeTable = dbutil.BuildUpgradeTable().WithFSPath(upgradesFS, "upgrades").Finish()

// Database is sikkerchat's tables.
type Database struct {
	*dbutil.Database
	Conversation *ConversationQuery
	Invite       *InviteQuery
	Session      *SessionQuery
	Transcript   *TranscriptQuery
	File         *FileQuery
	Audit        *AuditQuery
	Stats        *StatsQuery
	Inbox        *InboxQuery
	// The patrol inbox.
	MetaDelivery *MetaDeliveryQuery
	MetaEvent    *MetaEventQuery
	Social       *SocialQuery
	SocialEvent  *SocialEventQuery
	SocialOutbox *SocialOutboxQuery
	// Bridge is what sikkerchat drops of bridgev2's own tables after a purge.
	Bridge *BridgeQuery
}

// New opens sikkerchat's tables in a child of the bridgev2 database.
func New(parent *dbutil.Database, log dbutil.DatabaseLogger) *Database {
	db := parent.Child("sikkerchat_version", upgradeTable, log)
	return &Database{
		Database: db,
		Conversation: &ConversationQuery{dbutil.MakeQueryHelper(db, func(_ *dbutil.QueryHelper[*Conversation]) *Conversation {
			return &Conversation{}
		})},
		Invite: &InviteQuery{dbutil.MakeQueryHelper(db, func(_ *dbutil.QueryHelper[*Invite]) *Invite {
			return &Invite{}
		})},
		Session: &SessionQuery{dbutil.MakeQueryHelper(db, func(_ *dbutil.QueryHelper[*GuestSession]) *GuestSession {
			return &GuestSession{}
		})},
		Transcript: &TranscriptQuery{dbutil.MakeQueryHelper(db, func(_ *dbutil.QueryHelper[*TranscriptRow]) *TranscriptRow {
			return &TranscriptRow{}
		})},
		File: &FileQuery{db: db},
		Audit: &AuditQuery{dbutil.MakeQueryHelper(db, func(_ *dbutil.QueryHelper[*AuditRow]) *AuditRow {
			return &AuditRow{}
		})},
		Stats: &StatsQuery{db: db},
		Inbox: &InboxQuery{db: db},
		Social: &SocialQuery{dbutil.MakeQueryHelper(db, func(_ *dbutil.QueryHelper[*Social]) *Social {
			return &Social{}
		})},
		MetaDelivery: &MetaDeliveryQuery{db: db},
		MetaEvent:    &MetaEventQuery{db: db},
		SocialEvent:  &SocialEventQuery{db: db},
		SocialOutbox: &SocialOutboxQuery{db: db},
		Bridge:       &BridgeQuery{db: db},
	}
}

// queryStrings scans a one-column result of text.
func queryStrings(ctx context.Context, db *dbutil.Database, query string, args ...any) ([]string, error) {
	return dbutil.ConvertRowFn[string](dbutil.ScanSingleColumn[string]).NewRowIter(db.Query(ctx, query, args...)).AsList()
}

func queryInt64s(ctx context.Context, db *dbutil.Database, query string, args ...any) ([]int64, error) {
	return dbutil.ConvertRowFn[int64](dbutil.ScanSingleColumn[int64]).NewRowIter(db.Query(ctx, query, args...)).AsList()
}

// affectedOne tells whether a statement changed exactly one row.
func affectedOne(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
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

func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

// RowsOf counts a conversation's rows in each table (the integration tests'
// check that a purge leaves only the audit trail).
func (db *Database) RowsOf(ctx context.Context, conversationID string) (map[string]int, error) {
	counts := map[string]int{}
	for table, column := range map[string]string{
		"sikkerchat_conversation": "id", "sikkerchat_invite": "conversation_id", "sikkerchat_guest_session": "conversation_id",
		"sikkerchat_transcript": "conversation_id", "sikkerchat_file": "conversation_id", "sikkerchat_audit": "conversation_id",
	} {
		var n int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM "+table+" WHERE "+column+"=$1", conversationID).Scan(&n); err != nil {
			return nil, err
		}
		counts[table] = n
	}
	return counts, nil
}
