package bridge

import (
	"context"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// What the external tests (package bridge_test) reach of the bridge's
// insides; compiled into tests only.

func (rg *RoomGuard) CheckMember(ctx context.Context, conv *Conversation, user id.UserID, membership event.Membership) {
	rg.checkMember(ctx, conv, user, membership)
}

func (rg *RoomGuard) GuardRooms(ctx context.Context) { rg.guardRooms(ctx) }

// KeyInMemory is the conversation key the transcript holds unwrapped (nil if none).
func (t *Transcript) KeyInMemory(conversationID string) []byte {
	t.keyLock.RLock()
	defer t.keyLock.RUnlock()
	return t.unwrapped[conversationID]
}

// AnnounceJoin runs what a join does in the background, with the conversation
// as the join read it.
func (g *Guests) AnnounceJoin(ctx context.Context, conv *Conversation, firstJoin bool) {
	g.announceJoin(ctx, conv, firstJoin)
}
