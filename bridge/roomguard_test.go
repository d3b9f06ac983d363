package bridge_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/internal/matrixtest"
)

const (
	officer  = id.UserID("@officer:example.org")
	outsider = id.UserID("@nysgjerrig:example.org")
)

func newGuardedBridge(t *testing.T) (*testBridge, testInvite) {
	tb := newTestBridge(t, newTestConfig(t))
	tb.Guard.SetOfficerCheck(func(u id.UserID) bool { return u == officer || u == "@officer2:example.org" })
	return tb, tb.newInvite(time.Hour)
}

// Anyone in a conversation room who is not the bot, the guest or a permitted
// officer is kicked, the room is told, and the audit trail says who.
func TestUnexpectedMembersAreRemovedAndAnnounced(t *testing.T) {
	tb, inv := newGuardedBridge(t)
	_, guest := tb.matrix.BridgeMembers(inv.conv)
	for _, m := range []struct {
		user       id.UserID
		membership event.Membership
		removed    bool
	}{
		{officer, event.MembershipJoin, false},
		{"@officer2:example.org", event.MembershipInvite, false},
		{matrixtest.Bot, event.MembershipJoin, false},
		{guest, event.MembershipJoin, false},
		{outsider, event.MembershipJoin, true},
		{"@sikkerchat_annengjest:example.org", event.MembershipJoin, true}, // another conversation's guest
		{"@admin:example.org", event.MembershipInvite, true},
		{"@banka:example.org", event.MembershipKnock, true},
		{"@gikk:example.org", event.MembershipLeave, false},
		{"@utestengt:example.org", event.MembershipBan, false},
	} {
		tb.Guard.CheckMember(tb.ctx, inv.conv, m.user, m.membership)
		tb.matrix.Lock()
		removed := len(tb.matrix.Removed) > 0 && tb.matrix.Removed[len(tb.matrix.Removed)-1] == m.user
		tb.matrix.Unlock()
		require.Equal(t, m.removed, removed, "%s (%s)", m.user, m.membership)
	}
	_, notices := tb.matrix.Snapshot()
	require.Len(t, notices, 4)
	require.Contains(t, notices[0], string(outsider))
	require.Contains(t, notices[0], "ikke en godkjent betjent")
	rows, err := tb.Audit.ForConversation(tb.ctx, inv.conv.ID)
	require.NoError(t, err)
	require.Len(t, rows, 4)
	require.Equal(t, bridge.AuditMemberRemoved, rows[0].Action)
	require.Equal(t, string(outsider), rows[0].Detail)
}

// When the kick fails the officers are warned not to write.
func TestMemberThatCannotBeRemovedIsAnnounced(t *testing.T) {
	tb, inv := newGuardedBridge(t)
	tb.matrix.Failing = true
	tb.Guard.CheckMember(tb.ctx, inv.conv, outsider, event.MembershipJoin)
	_, notices := tb.matrix.Snapshot()
	require.Len(t, notices, 1)
	require.Contains(t, notices[0], "kunne ikke fjernes")
	require.Empty(t, tb.auditActions(inv.conv.ID))
}

// At start every room the police keep is checked: its power levels and who
// is in it.
func TestGuardRoomsChecksEveryKeptRoom(t *testing.T) {
	tb, inv := newGuardedBridge(t)
	closed := tb.newInvite(time.Hour)
	require.NoError(t, tb.Conversations.Close(tb.ctx, closed.conv, string(officer), bridge.CloseByOfficer))
	tb.matrix.Members = map[id.UserID]event.Membership{officer: event.MembershipJoin, outsider: event.MembershipJoin}
	tb.Guard.GuardRooms(tb.ctx)
	tb.matrix.Lock()
	defer tb.matrix.Unlock()
	require.Equal(t, 2, tb.matrix.Guarded, "the open and the closed room")
	require.Equal(t, []id.UserID{outsider, outsider}, tb.matrix.Removed)
	require.Contains(t, tb.auditActions(inv.conv.ID), bridge.AuditMemberRemoved)
}

// A redaction is written to the audit trail with who made it, once however
// often the homeserver sends it.
func TestRedactionsAreAudited(t *testing.T) {
	tb, inv := newGuardedBridge(t)
	for range 3 {
		tb.Guard.RecordRedaction(tb.ctx, inv.conv, officer, "$redaction1", "$message1")
	}
	tb.Guard.RecordRedaction(tb.ctx, inv.conv, "@officer2:example.org", "$redaction2", "$message2")
	rows, err := tb.Audit.ForConversation(tb.ctx, inv.conv.ID)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, bridge.AuditRedact, rows[0].Action)
	require.Equal(t, string(officer), rows[0].Actor)
	require.Contains(t, rows[0].Detail, "$message1")
	require.Equal(t, "@officer2:example.org", rows[1].Actor)
}
