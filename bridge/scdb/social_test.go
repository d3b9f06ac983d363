package scdb

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"
)

func newSocial(id, account string, hash []byte) *Social {
	now := ms(time.Now())
	return &Social{ID: id, Platform: "messenger", AccountID: account, PersonHash: hash, PersonSealed: []byte("sealed-psid"),
		NameSealed: []byte("sealed-name"), GhostID: "g" + id, Status: SocialOpen, CreatedAt: now}
}

func TestSocialQueries(t *testing.T) {
	db := newTestDB(t)
	s := newSocial("s1", "106512345678901", []byte("hash-a"))
	require.NoError(t, db.Social.Insert(ctx, s))
	got, err := db.Social.Get(ctx, "s1")
	require.NoError(t, err)
	require.Equal(t, s, got, "every field round-trips")

	// One open conversation per person and account: a parallel first message loses.
	require.ErrorIs(t, db.Social.Insert(ctx, newSocial("s2", "106512345678901", []byte("hash-a"))), ErrPersonTaken)
	require.NoError(t, db.Social.Insert(ctx, newSocial("s3", "17841400000000001", []byte("hash-a"))), "same person hash, other account")

	byPerson, err := db.Social.GetOpenByPerson(ctx, "106512345678901", []byte("hash-a"))
	require.NoError(t, err)
	require.Equal(t, "s1", byPerson.ID)
	none, err := db.Social.GetOpenByPerson(ctx, "106512345678901", []byte("hash-b"))
	require.NoError(t, err)
	require.Nil(t, none)

	require.NoError(t, db.Social.SetRoom(ctx, "s1", "!social:x"))
	byRoom, err := db.Social.GetByRoom(ctx, "!social:x")
	require.NoError(t, err)
	require.Equal(t, "s1", byRoom.ID)
	withRoom, err := db.Social.ListWithRoom(ctx)
	require.NoError(t, err)
	require.Len(t, withRoom, 1)

	// The last inbound time only moves forward.
	later := ms(time.Now().Add(time.Minute))
	require.NoError(t, db.Social.NoteInbound(ctx, "s1", later))
	require.NoError(t, db.Social.NoteInbound(ctx, "s1", later.Add(-time.Hour)))
	got, _ = db.Social.Get(ctx, "s1")
	require.Equal(t, later, got.LastInboundAt)

	idle, err := db.Social.Idle(ctx, later.Add(-time.Second))
	require.NoError(t, err)
	require.Equal(t, []string{"s3"}, idle, "s1's person wrote after the cutoff")
	n, err := db.Social.CountOpen(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	require.NoError(t, db.Social.SetLinked(ctx, "s1", "conv1"))
	require.NoError(t, db.Social.SetHold(ctx, "s1", true))

	// Close drops the person's ID, name and lookup hash: a new message from
	// them opens a new conversation.
	closedAt := ms(time.Now())
	ok, err := db.Social.Close(ctx, "s1", closedAt, closedAt.Add(time.Hour))
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = db.Social.Close(ctx, "s1", closedAt, closedAt)
	require.NoError(t, err)
	require.False(t, ok, "closing twice changes nothing")
	got, _ = db.Social.Get(ctx, "s1")
	require.Equal(t, SocialClosed, got.Status)
	require.Nil(t, got.PersonHash)
	require.Nil(t, got.PersonSealed)
	require.Nil(t, got.NameSealed)
	require.Equal(t, "conv1", got.LinkedConversation)
	require.True(t, got.Hold)
	none, _ = db.Social.GetOpenByPerson(ctx, "106512345678901", []byte("hash-a"))
	require.Nil(t, none)
	require.NoError(t, db.Social.Insert(ctx, newSocial("s4", "106512345678901", []byte("hash-a"))), "a new conversation after close")

	due, err := db.Social.DuePurge(ctx, closedAt.Add(2*time.Hour))
	require.NoError(t, err)
	require.Empty(t, due, "on hold")
	require.NoError(t, db.Social.SetHold(ctx, "s1", false))
	due, _ = db.Social.DuePurge(ctx, closedAt.Add(2*time.Hour))
	require.Equal(t, []string{"s1"}, due)

	// Deleting takes its events and outbox with it.
	_, _, err = db.SocialEvent.Claim(ctx, &SocialEvent{EventID: "m_1", SocialID: "s1", Direction: "in", Kind: "message", At: closedAt})
	require.NoError(t, err)
	_, _, err = db.SocialOutbox.Enqueue(ctx, &SocialOutboxEntry{SocialID: "s1", SourceID: "$e", CreatedAt: closedAt, Sealed: []byte("x")})
	require.NoError(t, err)
	require.NoError(t, db.Social.Delete(ctx, "s1"))
	e, err := db.SocialEvent.Get(ctx, "m_1")
	require.NoError(t, err)
	require.Nil(t, e)
	waiting, err := db.SocialOutbox.Waiting(ctx)
	require.NoError(t, err)
	require.Empty(t, waiting)
}

func TestSocialEventQueries(t *testing.T) {
	db := newTestDB(t)
	require.NoError(t, db.Social.Insert(ctx, newSocial("s1", "1", []byte("h"))))
	t0 := ms(time.Now())
	e := &SocialEvent{EventID: "m_in", SocialID: "s1", Direction: "in", Kind: "message", At: t0}
	_, fresh, err := db.SocialEvent.Claim(ctx, e)
	require.NoError(t, err)
	require.True(t, fresh)
	stored, fresh, err := db.SocialEvent.Claim(ctx, &SocialEvent{EventID: "m_in", SocialID: "s1", Direction: "in", Kind: "message", At: t0})
	require.NoError(t, err)
	require.False(t, fresh, "Meta's retry of the same mid")
	require.False(t, stored.Done)
	require.NoError(t, db.SocialEvent.Finish(ctx, "m_in", "$matrix_in"))
	got, _ := db.SocialEvent.Get(ctx, "m_in")
	require.True(t, got.Done)
	require.Equal(t, id.EventID("$matrix_in"), got.MatrixEventID)
	require.NoError(t, db.SocialEvent.Finish(ctx, "m_in", ""), "finishing without a Matrix event keeps the one recorded")
	got, _ = db.SocialEvent.Get(ctx, "m_in")
	require.Equal(t, id.EventID("$matrix_in"), got.MatrixEventID)
	byMatrix, err := db.SocialEvent.ByMatrixEvent(ctx, "s1", "$matrix_in")
	require.NoError(t, err)
	require.Equal(t, "m_in", byMatrix.EventID)

	for i, at := range []time.Time{t0.Add(time.Second), t0.Add(2 * time.Second), t0.Add(3 * time.Second)} {
		ev := &SocialEvent{EventID: "m_out" + string(rune('a'+i)), SocialID: "s1", Direction: "out", Kind: "message", At: at, MatrixEventID: id.EventID("$out" + string(rune('a'+i)))}
		_, _, err = db.SocialEvent.Claim(ctx, ev)
		require.NoError(t, err)
	}
	latest, err := db.SocialEvent.LatestOutboundUpTo(ctx, "s1", t0.Add(2500*time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, id.EventID("$outb"), latest.MatrixEventID)
	latest, err = db.SocialEvent.LatestOutboundUpTo(ctx, "s1", t0)
	require.NoError(t, err)
	require.Nil(t, latest, "the watermark is before anything the unit sent")
}

func TestSocialOutboxQueries(t *testing.T) {
	db := newTestDB(t)
	require.NoError(t, db.Social.Insert(ctx, newSocial("s1", "1", []byte("h"))))
	now := ms(time.Now())
	first, fresh, err := db.SocialOutbox.Enqueue(ctx, &SocialOutboxEntry{SocialID: "s1", SourceID: "$a", CreatedAt: now, Sealed: []byte("a")})
	require.NoError(t, err)
	require.True(t, fresh)
	require.Equal(t, int64(1), first.Seq)
	again, fresh, err := db.SocialOutbox.Enqueue(ctx, &SocialOutboxEntry{SocialID: "s1", SourceID: "$a", CreatedAt: now, Sealed: []byte("other")})
	require.NoError(t, err)
	require.False(t, fresh, "a redelivered Matrix event is queued once")
	require.Equal(t, []byte("a"), again.Sealed)
	second, _, err := db.SocialOutbox.Enqueue(ctx, &SocialOutboxEntry{SocialID: "s1", SourceID: "$b", CreatedAt: now, Sealed: []byte("b")})
	require.NoError(t, err)
	require.Equal(t, int64(2), second.Seq)

	require.NoError(t, db.SocialOutbox.MarkSending(ctx, "s1", 1))
	e, _ := db.SocialOutbox.Get(ctx, "s1", 1)
	require.Equal(t, OutboxSending, e.State)
	require.Equal(t, 1, e.Attempts)
	ok, err := db.SocialOutbox.MarkSent(ctx, "s1", 1, "m_sent")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = db.SocialOutbox.MarkSent(ctx, "s1", 1, "m_again")
	require.NoError(t, err)
	require.False(t, ok, "sent once")
	e, _ = db.SocialOutbox.Get(ctx, "s1", 1)
	require.Equal(t, "m_sent", e.MessageID)

	require.NoError(t, db.SocialOutbox.Retry(ctx, "s1", 2, now.Add(time.Minute)))
	waiting, err := db.SocialOutbox.Waiting(ctx)
	require.NoError(t, err)
	require.Len(t, waiting, 1)
	require.Equal(t, now.Add(time.Minute), waiting[0].NextAttemptAt)
	_, _, _ = db.SocialOutbox.Enqueue(ctx, &SocialOutboxEntry{SocialID: "s1", SourceID: "$c", CreatedAt: now, Sealed: []byte("c")})
	require.NoError(t, db.SocialOutbox.MarkFailed(ctx, "s1", 2))
	n, err := db.SocialOutbox.FailWaiting(ctx, "s1")
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "$c was still waiting")
	waiting, _ = db.SocialOutbox.Waiting(ctx)
	require.Empty(t, waiting)
	missing, err := db.SocialOutbox.Get(ctx, "s1", 99)
	require.NoError(t, err)
	require.Nil(t, missing)
}
