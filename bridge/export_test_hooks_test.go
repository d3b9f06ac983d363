package bridge

import (
	"context"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// What the external tests (package bridge_test) reach of the connector's
// insides; compiled into tests only.

func (sc *Connector) CheckMember(ctx context.Context, conv *Conversation, user id.UserID, membership event.Membership) {
	sc.checkMember(ctx, conv, user, membership)
}

func (sc *Connector) GuardRooms(ctx context.Context) { sc.guardRooms(ctx) }
