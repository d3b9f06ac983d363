package bridge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/meta"
)

// A process that is no longer the active one (its lease ran out: it was
// paused, or resumed from a frozen VM) sends nothing to Meta: neither a
// typing or seen mark nor the reply waiting in the outbox. The active sends
// them.
func TestAFormerActiveSendsNothingToMeta(t *testing.T) {
	b := newSocBridge(t, nil)
	th := b.openConversation("p1", "hei", time.Now())
	active := false
	b.sc.StillActive = func() bool { return active }

	b.s.SenderAction(b.ctx, th, meta.ActionTypingOn)
	b.s.SenderAction(b.ctx, th, meta.ActionMarkSeen)
	require.NoError(t, b.s.HandleOfficerMessage(b.ctx, th, officerText(th, "$reply", "svar")))
	b.sendOutbox()
	require.Empty(t, b.sim.Sends(), "a former active sends nothing")

	active = true
	b.s.SenderAction(b.ctx, th, meta.ActionTypingOn)
	sends := b.sim.Sends()
	require.Len(t, sends, 1, "the active sends")
	require.Equal(t, "typing_on", sends[0].SenderAction)
}
