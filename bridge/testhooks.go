//go:build sikkerchat_testhooks

package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"time"

	"maunium.net/go/mautrix/id"
)

// Only in builds with -tags sikkerchat_testhooks (the integration tests and
// the benchmark). Release builds have none of this.

// BenchSession makes a conversation with a joined guest session and no Matrix
// room, for measuring what an idle guest page costs the bridge. It returns the
// session cookie value.
func (g *Guests) BenchSession(ctx context.Context) (sessionToken string, conv *Conversation, err error) {
	now := time.Now()
	conv = &Conversation{
		ID:              randomID(10),
		GhostID:         randomID(10),
		Status:          StatusActive,
		CreatedBy:       "@bench:invalid",
		CreatedAt:       now,
		InviteExpiresAt: now.Add(time.Hour),
	}
	conv.RoomID = id.RoomID("!bench-" + conv.ID + ":invalid")
	token, tokenHash, err := NewInviteToken()
	if err != nil {
		return "", nil, err
	}
	if err = g.Transcript.CreateKey(conv.ID); err != nil {
		return "", nil, err
	}
	inv := &Invite{TokenHash: tokenHash, ConversationID: conv.ID, CodeMAC: CodeMAC(token, "bench"), CreatedAt: now, ExpiresAt: conv.InviteExpiresAt}
	if err = g.DB.Conversation.Insert(ctx, conv, inv); err != nil {
		return "", nil, err
	}
	raw := make([]byte, 32)
	if _, err = rand.Read(raw); err != nil {
		return "", nil, err
	}
	sessionToken = base64.RawURLEncoding.EncodeToString(raw)
	err = g.DB.Session.Insert(ctx, hashSessionToken(sessionToken), conv.ID, now)
	return sessionToken, conv, err
}
