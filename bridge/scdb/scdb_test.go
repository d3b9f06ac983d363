package scdb

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

func newTestDB(t testing.TB) *Database {
	t.Helper()
	raw, _ := testdb.New(t)
	db := New(raw, dbutil.NoopLogger)
	require.NoError(t, db.Upgrade(context.Background()))
	return db
}

var ctx = context.Background()

// ms drops what the database does not keep (below a millisecond).
func ms(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()) }

func insertConversation(t *testing.T, db *Database, id string, status ConversationStatus) (*Conversation, *Invite) {
	t.Helper()
	now := ms(time.Now())
	conv := &Conversation{ID: id, GhostID: "g-" + id, SealedLabel: []byte("sealed"), Status: status, CreatedBy: "@officer:x",
		CreatedAt: now, InviteExpiresAt: now.Add(time.Hour)}
	inv := &Invite{TokenHash: []byte("hash-" + id), ConversationID: id, CodeMAC: []byte("mac"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.NoError(t, db.Conversation.Insert(ctx, conv, inv))
	return conv, inv
}

func TestConversationQueries(t *testing.T) {
	db := newTestDB(t)
	conv, _ := insertConversation(t, db, "c1", StatusCreated)
	insertConversation(t, db, "c2", StatusActive)
	closed, _ := insertConversation(t, db, "c3", StatusClosed)

	got, err := db.Conversation.Get(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, conv, got, "every field round-trips")
	missing, err := db.Conversation.Get(ctx, "nope")
	require.NoError(t, err)
	require.Nil(t, missing)

	require.NoError(t, db.Conversation.SetRoom(ctx, "c1", "!r1:x"))
	byRoom, err := db.Conversation.GetByRoom(ctx, "!r1:x")
	require.NoError(t, err)
	require.Equal(t, "c1", byRoom.ID)

	n, err := db.Conversation.CountOpenByOfficer(ctx, "@officer:x")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	open, err := db.Conversation.ListOpenByOfficer(ctx, "@officer:x")
	require.NoError(t, err)
	require.Len(t, open, 2)
	all, err := db.Conversation.ListByOfficer(ctx, "@officer:x")
	require.NoError(t, err)
	require.Len(t, all, 3)
	withRoom, err := db.Conversation.ListWithRoom(ctx)
	require.NoError(t, err)
	require.Len(t, withRoom, 1)
	states, err := db.Conversation.CountByState(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"created": 1, "active": 1, "closed": 1}, states)

	// Activate keeps the first join time.
	first := ms(time.Now())
	require.NoError(t, db.Conversation.Activate(ctx, "c1", first))
	require.NoError(t, db.Conversation.Activate(ctx, "c1", first.Add(time.Hour)))
	got, _ = db.Conversation.Get(ctx, "c1")
	require.Equal(t, StatusActive, got.Status)
	require.Equal(t, first, got.JoinedAt)
	require.NoError(t, db.Conversation.Activate(ctx, "c3", first))
	got, _ = db.Conversation.Get(ctx, "c3")
	require.Equal(t, StatusClosed, got.Status, "a closed conversation is never made active again")

	require.NoError(t, db.Conversation.SetOfficerRead(ctx, "c1", 5))
	require.NoError(t, db.Conversation.SetOfficerRead(ctx, "c1", 3))
	got, _ = db.Conversation.Get(ctx, "c1")
	require.Equal(t, int64(5), got.OfficerReadSeq, "the read position never moves back")

	require.NoError(t, db.Conversation.SetHold(ctx, "c3", true))
	got, _ = db.Conversation.Get(ctx, "c3")
	require.True(t, got.Hold)
	_ = closed
}

func TestConversationCloseAndDueLists(t *testing.T) {
	db := newTestDB(t)
	insertConversation(t, db, "c1", StatusActive)
	now := ms(time.Now())
	ok, err := db.Conversation.Close(ctx, "c1", StatusClosed, now, now.Add(time.Minute))
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = db.Conversation.Close(ctx, "c1", StatusClosed, now, now.Add(time.Minute))
	require.NoError(t, err)
	require.False(t, ok, "closing twice does nothing")
	open, err := db.Conversation.HoldOpen(ctx, "c1")
	require.NoError(t, err)
	require.False(t, open)

	due, err := db.Conversation.DuePurge(ctx, now)
	require.NoError(t, err)
	require.Empty(t, due)
	due, err = db.Conversation.DuePurge(ctx, now.Add(2*time.Minute))
	require.NoError(t, err)
	require.Equal(t, []string{"c1"}, due)
	require.NoError(t, db.Conversation.SetHold(ctx, "c1", true))
	due, err = db.Conversation.DuePurge(ctx, now.Add(2*time.Minute))
	require.NoError(t, err)
	require.Empty(t, due, "a held room is never due")

	insertConversation(t, db, "c2", StatusCreated)
	expired, err := db.Conversation.ExpiredInvites(ctx, now.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, []string{"c2"}, expired)

	insertConversation(t, db, "c3", StatusActive)
	require.NoError(t, db.Conversation.Activate(ctx, "c3", now))
	idle, err := db.Conversation.Idle(ctx, now.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, []string{"c3"}, idle)
	_, err = db.Transcript.Insert(ctx, &TranscriptRow{ConversationID: "c3", Seq: 1, Direction: FromGuest, ClientID: "x", Status: EntryStored,
		CreatedAt: now.Add(time.Hour), Sealed: []byte("s")})
	require.NoError(t, err)
	idle, err = db.Conversation.Idle(ctx, now.Add(time.Second))
	require.NoError(t, err)
	require.Empty(t, idle, "a message keeps it from being idle")
}

func TestDeletingAConversationTakesEverythingButTheAudit(t *testing.T) {
	db := newTestDB(t)
	insertConversation(t, db, "c1", StatusActive)
	now := ms(time.Now())
	require.NoError(t, db.Session.Insert(ctx, []byte("s1"), "c1", now))
	_, err := db.Transcript.Insert(ctx, &TranscriptRow{ConversationID: "c1", Seq: 1, Direction: ToGuest, Status: "", CreatedAt: now, Sealed: []byte("x")})
	require.NoError(t, err)
	require.NoError(t, db.File.Begin(ctx, "c1", "f1", now))
	require.NoError(t, db.File.PutChunk(ctx, "c1", "f1", 0, []byte("chunk")))
	require.NoError(t, db.Audit.Insert(ctx, &AuditRow{Seq: 1, At: now, Actor: "system", Action: "create", ConversationID: "c1", PrevHash: []byte{}, Hash: []byte{}}))
	require.NoError(t, db.Conversation.Delete(ctx, "c1"))
	rows, err := db.RowsOf(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, map[string]int{"sikkerchat_conversation": 0, "sikkerchat_invite": 0, "sikkerchat_guest_session": 0,
		"sikkerchat_transcript": 0, "sikkerchat_file": 0, "sikkerchat_audit": 1}, rows)
	var chunks int
	require.NoError(t, db.QueryRow(ctx, "SELECT COUNT(*) FROM sikkerchat_file_chunk").Scan(&chunks))
	require.Zero(t, chunks, "the chunks go with their file")
}

func TestInviteAttemptsAreClaimedAtomically(t *testing.T) {
	db := newTestDB(t)
	_, inv := insertConversation(t, db, "c1", StatusCreated)
	now := ms(time.Now())
	for want := 1; want <= 3; want++ {
		attempt, ok, err := db.Invite.ClaimAttempt(ctx, inv.TokenHash, now, 3)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, attempt)
	}
	_, ok, err := db.Invite.ClaimAttempt(ctx, inv.TokenHash, now, 3)
	require.NoError(t, err)
	require.False(t, ok, "no attempt left")
	consumed, err := db.Invite.Consume(ctx, inv.TokenHash, now, 3)
	require.NoError(t, err)
	require.True(t, consumed, "the request that claimed the last attempt may consume")
	got, err := db.Invite.Get(ctx, inv.TokenHash)
	require.NoError(t, err)
	require.Equal(t, 2, got.FailedAttempts, "the right code gives its claim back")
	require.Equal(t, now, got.UsedAt)
	consumed, err = db.Invite.Consume(ctx, inv.TokenHash, now, 3)
	require.NoError(t, err)
	require.False(t, consumed, "single use")
	_, ok, err = db.Invite.ClaimAttempt(ctx, inv.TokenHash, now, 3)
	require.NoError(t, err)
	require.False(t, ok, "a used invite takes no attempts")
}

func TestInviteExpiryAndRevocation(t *testing.T) {
	db := newTestDB(t)
	_, inv := insertConversation(t, db, "c1", StatusCreated)
	late := inv.ExpiresAt.Add(time.Second)
	_, ok, err := db.Invite.ClaimAttempt(ctx, inv.TokenHash, late, 5)
	require.NoError(t, err)
	require.False(t, ok, "an expired invite takes no attempts")
	consumed, err := db.Invite.Consume(ctx, inv.TokenHash, late, 5)
	require.NoError(t, err)
	require.False(t, consumed)

	now := ms(time.Now())
	second := &Invite{TokenHash: []byte("hash-2"), ConversationID: "c1", CodeMAC: []byte("m"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.NoError(t, db.Invite.Insert(ctx, second))
	require.NoError(t, db.Invite.RevokeUnused(ctx, "c1", now))
	for _, h := range [][]byte{inv.TokenHash, second.TokenHash} {
		got, err := db.Invite.Get(ctx, h)
		require.NoError(t, err)
		require.Equal(t, now, got.RevokedAt)
	}
	missing, err := db.Invite.Get(ctx, []byte("nope"))
	require.NoError(t, err)
	require.Nil(t, missing)

	third := &Invite{TokenHash: []byte("hash-3"), ConversationID: "c1", CodeMAC: []byte("m"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.NoError(t, db.Invite.Insert(ctx, third))
	require.NoError(t, db.Invite.Burn(ctx, third.TokenHash, now))
	got, err := db.Invite.Get(ctx, third.TokenHash)
	require.NoError(t, err)
	require.False(t, got.RevokedAt.IsZero())
}

func TestSessions(t *testing.T) {
	db := newTestDB(t)
	insertConversation(t, db, "c1", StatusActive)
	now := ms(time.Now())
	require.NoError(t, db.Session.Insert(ctx, []byte("a"), "c1", now))
	require.NoError(t, db.Session.Insert(ctx, []byte("b"), "c1", now))
	later := now.Add(time.Minute)
	require.NoError(t, db.Session.Touch(ctx, []byte("a"), later))
	a, err := db.Session.Get(ctx, []byte("a"))
	require.NoError(t, err)
	require.Equal(t, later, a.LastSeenAt)
	require.Equal(t, now, a.CreatedAt)
	require.NoError(t, db.Session.Revoke(ctx, []byte("a"), later))
	require.NoError(t, db.Session.Touch(ctx, []byte("a"), later.Add(time.Minute)))
	a, _ = db.Session.Get(ctx, []byte("a"))
	require.Equal(t, later, a.LastSeenAt, "a revoked session is not touched")
	require.Equal(t, later, a.RevokedAt)
	require.NoError(t, db.Session.RevokeConversation(ctx, "c1", later.Add(time.Hour)))
	b, _ := db.Session.Get(ctx, []byte("b"))
	require.Equal(t, later.Add(time.Hour), b.RevokedAt)
	a, _ = db.Session.Get(ctx, []byte("a"))
	require.Equal(t, later, a.RevokedAt, "an earlier revocation stays as it was")
	none, err := db.Session.Get(ctx, []byte("nope"))
	require.NoError(t, err)
	require.Nil(t, none)
}

func TestTranscriptRows(t *testing.T) {
	db := newTestDB(t)
	insertConversation(t, db, "c1", StatusActive)
	now := ms(time.Now())
	rows := []*TranscriptRow{
		{ConversationID: "c1", Seq: 1, Direction: FromGuest, ClientID: "cid-1", Status: EntryStored, CreatedAt: now, Sealed: []byte("1")},
		{ConversationID: "c1", Seq: 2, Direction: ToGuest, MatrixEventID: "$e2", CreatedAt: now, Sealed: []byte("2")},
		{ConversationID: "c1", Seq: 3, Direction: FromGuest, ClientID: "cid-3", Status: EntryStored, CreatedAt: now, Sealed: []byte("3")},
	}
	for _, r := range rows {
		ok, err := db.Transcript.Insert(ctx, r)
		require.NoError(t, err)
		require.True(t, ok)
	}
	dup := *rows[1]
	dup.Seq = 4
	ok, err := db.Transcript.Insert(ctx, &dup)
	require.NoError(t, err)
	require.False(t, ok, "the same Matrix event is not stored twice")
	dup = *rows[0]
	dup.Seq = 5
	ok, err = db.Transcript.Insert(ctx, &dup)
	require.NoError(t, err)
	require.False(t, ok, "the same client_id is not stored twice")

	max, err := db.Transcript.MaxSeq(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, int64(3), max)
	empty, err := db.Transcript.MaxSeq(ctx, "other")
	require.NoError(t, err)
	require.Zero(t, empty)

	since, err := db.Transcript.Since(ctx, "c1", 1)
	require.NoError(t, err)
	require.Equal(t, rows[1:], since)
	byClient, err := db.Transcript.ByClientID(ctx, "c1", "cid-3")
	require.NoError(t, err)
	require.Equal(t, rows[2], byClient)
	byEvent, err := db.Transcript.ByEvent(ctx, "c1", "$e2")
	require.NoError(t, err)
	require.Equal(t, rows[1], byEvent)
	bySeq, err := db.Transcript.BySeq(ctx, "c1", 9)
	require.NoError(t, err)
	require.Nil(t, bySeq)

	undelivered, err := db.Transcript.Undelivered(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"c1": 2}, undelivered)
	seqs, err := db.Transcript.UndeliveredIn(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, []int64{1, 3}, seqs)
	ok, err = db.Transcript.MarkDelivered(ctx, "c1", 1, "$d1")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = db.Transcript.MarkDelivered(ctx, "c1", 1, "$d1")
	require.NoError(t, err)
	require.False(t, ok, "delivered once")
	require.NoError(t, db.Transcript.MarkUndeliverable(ctx, "c1", 3))
	n, err := db.Transcript.CountUndelivered(ctx, "c1")
	require.NoError(t, err)
	require.Zero(t, n)
	failed, _ := db.Transcript.BySeq(ctx, "c1", 3)
	require.Equal(t, EntryFailed, failed.Status)

	require.NoError(t, db.Transcript.Reseal(ctx, "c1", 2, []byte("two")))
	resealed, _ := db.Transcript.BySeq(ctx, "c1", 2)
	require.Equal(t, []byte("two"), resealed.Sealed)

	latest, err := db.Transcript.LatestToGuest(ctx, "c1", 3)
	require.NoError(t, err)
	require.Equal(t, id.EventID("$e2"), latest)
	latest, err = db.Transcript.LatestToGuest(ctx, "c1", 1)
	require.NoError(t, err)
	require.Empty(t, latest)
	seq, err := db.Transcript.SeqOf(ctx, "c1", "$e2")
	require.NoError(t, err)
	require.Equal(t, int64(2), seq)
	seq, err = db.Transcript.SeqOf(ctx, "c1", "$nope")
	require.NoError(t, err)
	require.Zero(t, seq)
	delivered, err := db.Transcript.DeliveredFromGuest(ctx, "c1", 0, 3)
	require.NoError(t, err)
	require.Equal(t, []int64{1}, delivered)

	require.NoError(t, db.Transcript.Shred(ctx, "c1"))
	left, err := db.Transcript.Since(ctx, "c1", 0)
	require.NoError(t, err)
	require.Empty(t, left)
}

func TestFileChunks(t *testing.T) {
	db := newTestDB(t)
	insertConversation(t, db, "c1", StatusActive)
	now := ms(time.Now())
	require.NoError(t, db.File.Begin(ctx, "c1", "f1", now))
	h, err := db.File.Header(ctx, "c1", "f1")
	require.NoError(t, err)
	require.Nil(t, h, "an upload still coming in is no file yet")
	for i, c := range []string{"a", "b"} {
		require.NoError(t, db.File.PutChunk(ctx, "c1", "f1", i, []byte(c)))
	}
	require.NoError(t, db.File.Finish(ctx, "c1", "f1", 2, 2))
	h, err = db.File.Header(ctx, "c1", "f1")
	require.NoError(t, err)
	require.Equal(t, 2, h.Chunks)
	require.Equal(t, int64(2), h.Size)
	chunk, err := db.File.Chunk(ctx, "c1", "f1", 1)
	require.NoError(t, err)
	require.Equal(t, []byte("b"), chunk)

	require.NoError(t, db.File.Begin(ctx, "c1", "cut-off", now))
	require.NoError(t, db.File.PutChunk(ctx, "c1", "cut-off", 0, []byte("x")))
	require.NoError(t, db.File.DeleteUnfinished(ctx))
	var n int
	require.NoError(t, db.QueryRow(ctx, "SELECT COUNT(*) FROM sikkerchat_file_chunk WHERE file_id='cut-off'").Scan(&n))
	require.Zero(t, n, "an unfinished upload leaves nothing")
	h, err = db.File.Header(ctx, "c1", "f1")
	require.NoError(t, err)
	require.NotNil(t, h, "finished files stay")

	require.NoError(t, db.File.Delete(ctx, "c1", "f1"))
	h, err = db.File.Header(ctx, "c1", "f1")
	require.NoError(t, err)
	require.Nil(t, h)
	require.NoError(t, db.File.Begin(ctx, "c1", "f2", now))
	require.NoError(t, db.File.Finish(ctx, "c1", "f2", 0, 0))
	require.NoError(t, db.File.Shred(ctx, "c1"))
	require.NoError(t, db.QueryRow(ctx, "SELECT COUNT(*) FROM sikkerchat_file").Scan(&n))
	require.Zero(t, n)
}

func TestAuditRows(t *testing.T) {
	db := newTestDB(t)
	seq, hash, err := db.Audit.Last(ctx)
	require.NoError(t, err)
	require.Zero(t, seq)
	require.Nil(t, hash)
	base := ms(time.Now())
	for i, r := range []struct{ action, conv string }{{"create", "c1"}, {"join", "c1"}, {"create", "c2"}, {"export", "c1"}} {
		require.NoError(t, db.Audit.Insert(ctx, &AuditRow{Seq: int64(i + 1), At: base.Add(time.Duration(i) * time.Second), Actor: "a",
			Action: r.action, ConversationID: r.conv, PrevHash: []byte{byte(i)}, Hash: []byte{byte(i + 1)}}))
	}
	seq, hash, err = db.Audit.Last(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(4), seq)
	require.Equal(t, []byte{4}, hash)
	all, err := db.Audit.All(ctx)
	require.NoError(t, err)
	require.Len(t, all, 4)
	c1, err := db.Audit.ForConversation(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, []string{"create", "join", "export"}, []string{c1[0].Action, c1[1].Action, c1[2].Action})
	lifecycle, err := db.Audit.LifecycleSince(ctx, base.Add(time.Second))
	require.NoError(t, err)
	require.Len(t, lifecycle, 2, "join and the second create; exports are not lifecycle")
	require.Error(t, db.Audit.Insert(ctx, &AuditRow{Seq: 4, At: base, Actor: "x", Action: "y", ConversationID: "c1", PrevHash: []byte{}, Hash: []byte{}}),
		"a position is never written twice")
}

func TestStatsCounts(t *testing.T) {
	db := newTestDB(t)
	day := time.Date(2026, 11, 30, 23, 30, 0, 0, time.UTC)
	for range 3 {
		require.NoError(t, db.Stats.CountMessage(ctx, day, FromGuest, "text"))
	}
	require.NoError(t, db.Stats.CountMessage(ctx, day.Add(time.Hour), ToGuest, "file"))
	require.NoError(t, db.Stats.CountMessage(ctx, day.AddDate(0, 0, -10), FromGuest, "text"))
	counts, err := db.Stats.CountsSince(ctx, day.Add(-time.Hour))
	require.NoError(t, err)
	require.ElementsMatch(t, []StatsCount{{FromGuest, "text", 3}, {ToGuest, "file", 1}}, counts)
}

func TestInbox(t *testing.T) {
	db := newTestDB(t)
	now := ms(time.Now())
	require.NoError(t, db.Inbox.Keep(ctx, "$b", "!r:x", `{"b":1}`, now, 2))
	require.NoError(t, db.Inbox.Keep(ctx, "$a", "!r:x", `{"a":1}`, now, 1))
	require.NoError(t, db.Inbox.Keep(ctx, "$c", "!other:x", `{"c":1}`, now.Add(time.Hour), 3))
	require.NoError(t, db.Inbox.Keep(ctx, "$a", "!r:x", `{"changed":1}`, now, 9), "a redelivery is ignored")
	left, err := db.Inbox.Leftovers(ctx, now.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, []InboxEvent{{"$a", `{"a":1}`}, {"$b", `{"b":1}`}}, left, "in arrival order, before the time")
	require.NoError(t, db.Inbox.CountAttempt(ctx, "$a"))
	require.NoError(t, db.Inbox.CountAttempt(ctx, "$a"))
	require.NoError(t, db.Inbox.DropStale(ctx, 2, now.Add(-time.Hour)))
	left, _ = db.Inbox.Leftovers(ctx, now.Add(time.Minute))
	require.Equal(t, []InboxEvent{{"$b", `{"b":1}`}}, left, "tried too often: let go")
	require.NoError(t, db.Inbox.DropStale(ctx, 100, now.Add(time.Minute)))
	left, _ = db.Inbox.Leftovers(ctx, now.Add(2*time.Hour))
	require.Equal(t, []InboxEvent{{"$c", `{"c":1}`}}, left, "kept too long: let go")
	require.NoError(t, db.Inbox.ClearRoom(ctx, "!other:x"))
	left, _ = db.Inbox.Leftovers(ctx, now.Add(2*time.Hour))
	require.Empty(t, left)
	require.NoError(t, db.Inbox.Keep(ctx, "$d", "!r:x", `{}`, now, 4))
	require.NoError(t, db.Inbox.Done(ctx, "$d"))
	left, _ = db.Inbox.Leftovers(ctx, now.Add(2*time.Hour))
	require.Empty(t, left)
}

func TestBridgeTablesAfterAPurge(t *testing.T) {
	db := newTestDB(t)
	for _, stmt := range []string{
		`CREATE TABLE crypto_megolm_inbound_session (room_id TEXT)`,
		`CREATE TABLE crypto_megolm_outbound_session (room_id TEXT)`,
		`CREATE TABLE mx_room_state (room_id TEXT)`,
		`CREATE TABLE mx_user_profile (room_id TEXT)`,
		`CREATE TABLE ghost (bridge_id TEXT, id TEXT, name TEXT)`,
	} {
		_, err := db.Exec(ctx, stmt)
		require.NoError(t, err)
	}
	for _, table := range []string{"crypto_megolm_inbound_session", "crypto_megolm_outbound_session", "mx_room_state", "mx_user_profile"} {
		_, err := db.Exec(ctx, "INSERT INTO "+table+" (room_id) VALUES ('!gone:x'), ('!kept:x')")
		require.NoError(t, err)
	}
	_, err := db.Exec(ctx, "INSERT INTO ghost (bridge_id, id, name) VALUES ('sc', 'g1', 'MARKER'), ('sc', 'g2', 'other')")
	require.NoError(t, err)
	require.NoError(t, db.Bridge.ForgetRoom(ctx, "!gone:x"))
	require.NoError(t, db.Bridge.DeleteGhost(ctx, "sc", "g1"))
	require.NoError(t, db.Bridge.Compact(ctx))
	for _, table := range []string{"crypto_megolm_inbound_session", "crypto_megolm_outbound_session", "mx_room_state", "mx_user_profile"} {
		var rooms []string
		rows, err := db.Query(ctx, "SELECT room_id FROM "+table)
		require.NoError(t, err)
		for rows.Next() {
			var r string
			require.NoError(t, rows.Scan(&r))
			rooms = append(rooms, r)
		}
		require.NoError(t, rows.Close())
		require.Equal(t, []string{"!kept:x"}, rooms, table)
	}
	var n int
	require.NoError(t, db.QueryRow(ctx, "SELECT COUNT(*) FROM ghost").Scan(&n))
	require.Equal(t, 1, n)
}

func TestStatusOpen(t *testing.T) {
	require.True(t, StatusCreated.Open())
	require.True(t, StatusActive.Open())
	require.False(t, StatusClosed.Open())
	require.False(t, StatusExpired.Open())
}

// The queries on the guest's and the officer's message paths find their rows
// through an index that leads with the conversation, never by walking every
// message the conversation ever had (SQLite's plan; PostgreSQL has the same
// indexes).
func TestHotPathQueriesUseConversationIndexes(t *testing.T) {
	db := newTestDB(t)
	if db.Dialect != dbutil.SQLite {
		t.Skip("the plan checked is SQLite's; PostgreSQL chooses by its statistics")
	}
	plan := func(query string, args ...any) string {
		rows, err := db.RawDB.Query("EXPLAIN QUERY PLAN "+query, args...)
		require.NoError(t, err)
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			out = append(out, detail)
		}
		return strings.Join(out, "; ")
	}
	require.Contains(t, plan(undeliveredInConversationQuery, "c"), "sikkerchat_transcript_undelivered_idx (conversation_id=?)")
	require.NotContains(t, plan(undeliveredInConversationQuery, "c"), "TEMP B-TREE")
	for _, q := range []string{getByEventQuery, seqOfEventQuery} {
		require.Regexp(t, `USING (COVERING )?INDEX \S+ \(conversation_id=\? AND matrix_event_id=\?\)`, plan(q, "c", "$e"))
	}
}
