package bridge_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// The room's state event follows the conversation: the join's update, which
// runs in the background with the conversation as the join read it, never
// puts "active" back over a close that happened meanwhile.
func TestLateJoinUpdateDoesNotUndoANewerState(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	tb.join(inv)
	asJoined := tb.conv(inv.conv.ID)
	require.NoError(t, tb.Conversations.Close(tb.ctx, tb.conv(inv.conv.ID), "@officer:example.org", bridge.CloseByOfficer))

	tb.Guests.AnnounceJoin(tb.ctx, asJoined, true)
	tb.matrix.Lock()
	states := append([]string(nil), tb.matrix.States...)
	tb.matrix.Unlock()
	require.NotEmpty(t, states)
	require.Equal(t, "closed", states[len(states)-1], "every state sent: %v", states)
}

// Once a conversation is purged, a late update sends nothing to its room.
func TestNoStateIsSentForAPurgedConversation(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	tb.join(inv)
	asJoined := tb.conv(inv.conv.ID)
	require.NoError(t, tb.DB.Conversation.Delete(tb.ctx, inv.conv.ID))
	tb.matrix.Lock()
	before := len(tb.matrix.States)
	tb.matrix.Unlock()

	tb.Guests.AnnounceJoin(tb.ctx, asJoined, true)
	tb.matrix.Lock()
	defer tb.matrix.Unlock()
	require.Len(t, tb.matrix.States, before)
}
