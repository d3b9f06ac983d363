package scdb

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A conversation and its first invite are stored together or not at all:
// a failed invite leaves no conversation without a way in.
func TestConversationIsStoredWithItsInviteOrNotAtAll(t *testing.T) {
	db := newTestDB(t)
	_, first := insertConversation(t, db, "c1", StatusCreated)
	now := ms(time.Now())

	clash := &Conversation{ID: "c2", GhostID: "g-c2", Status: StatusCreated, CreatedBy: "@officer:x", CreatedAt: now, InviteExpiresAt: now.Add(time.Hour)}
	inv := &Invite{TokenHash: first.TokenHash, ConversationID: "c2", CodeMAC: []byte("mac"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.ErrorContains(t, db.Conversation.Insert(ctx, clash, inv), "failed to insert invite")
	got, err := db.Conversation.Get(ctx, "c2")
	require.NoError(t, err)
	require.Nil(t, got, "rolled back with its invite")

	other := &Invite{TokenHash: []byte("hash-c3"), ConversationID: "c1", CodeMAC: []byte("mac"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.ErrorContains(t, db.Conversation.Insert(ctx, &Conversation{ID: "c3", Status: StatusCreated}, other), "another conversation")
	got, err = db.Conversation.Get(ctx, "c3")
	require.NoError(t, err)
	require.Nil(t, got)

	require.ErrorContains(t, db.Conversation.Insert(ctx, &Conversation{ID: "c1", GhostID: "g", Status: StatusCreated, CreatedBy: "@o:x", CreatedAt: now, InviteExpiresAt: now},
		&Invite{TokenHash: []byte("fresh"), ConversationID: "c1", CodeMAC: []byte("m"), CreatedAt: now, ExpiresAt: now}), "failed to insert conversation")
	fresh, err := db.Invite.Get(ctx, []byte("fresh"))
	require.NoError(t, err)
	require.Nil(t, fresh, "a second conversation with a taken ID adds no invite")
}

// A reissued link moves the time the lifecycle loop expires an unused
// conversation at.
func TestReissueMovesTheInviteExpiry(t *testing.T) {
	db := newTestDB(t)
	conv, _ := insertConversation(t, db, "c1", StatusCreated)
	after := conv.InviteExpiresAt.Add(time.Second)
	expired, err := db.Conversation.ExpiredInvites(ctx, after)
	require.NoError(t, err)
	require.Equal(t, []string{"c1"}, expired)

	later := conv.InviteExpiresAt.Add(24 * time.Hour)
	require.NoError(t, db.Conversation.SetInviteExpiry(ctx, "c1", later))
	expired, err = db.Conversation.ExpiredInvites(ctx, after)
	require.NoError(t, err)
	require.Empty(t, expired)
	got, err := db.Conversation.Get(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, later, got.InviteExpiresAt)
}

// Closing revokes every invite of the conversation, a used one too (its
// session goes with it), and keeps the time of an earlier revocation; other
// conversations' invites are not touched.
func TestCloseRevokesEveryInviteOfTheConversation(t *testing.T) {
	db := newTestDB(t)
	_, used := insertConversation(t, db, "c1", StatusActive)
	_, elsewhere := insertConversation(t, db, "c2", StatusCreated)
	now := ms(time.Now())
	earlier := now.Add(-time.Hour)
	consumed, err := db.Invite.Consume(ctx, used.TokenHash, now, 5)
	require.NoError(t, err)
	require.True(t, consumed)
	burned := &Invite{TokenHash: []byte("burned"), ConversationID: "c1", CodeMAC: []byte("m"), CreatedAt: earlier, ExpiresAt: now.Add(time.Hour)}
	unused := &Invite{TokenHash: []byte("unused"), ConversationID: "c1", CodeMAC: []byte("m"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.NoError(t, db.Invite.Insert(ctx, burned))
	require.NoError(t, db.Invite.Insert(ctx, unused))
	require.NoError(t, db.Invite.Burn(ctx, burned.TokenHash, earlier))

	require.NoError(t, db.Invite.RevokeAll(ctx, "c1", now))
	for hash, want := range map[string]time.Time{string(used.TokenHash): now, "unused": now, "burned": earlier} {
		got, err := db.Invite.Get(ctx, []byte(hash))
		require.NoError(t, err)
		require.Equal(t, want, got.RevokedAt, hash)
	}
	got, err := db.Invite.Get(ctx, elsewhere.TokenHash)
	require.NoError(t, err)
	require.True(t, got.RevokedAt.IsZero())
	consumed, err = db.Invite.Consume(ctx, []byte("unused"), now, 5)
	require.NoError(t, err)
	require.False(t, consumed, "a revoked link lets nobody in")
}
