package bridge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A raid of 200 throwaway accounts with a budget of 20 new rooms an hour:
// 20 rooms, the other 180 people's messages kept (none lost, none opening a
// room, no invite), the officers told once, the gauge counting who waits;
// as the window moves on the next 20 get rooms, and a person who already has
// a room is never held.
func TestRaidOfNewSendersIsHeldWithinTheBudget(t *testing.T) {
	b := newSocBridge(t, func(m *MetaConfig) { m.NewRoomBudget = 20; m.NewRoomWindow = "1h" })
	now := time.Now().UnixMilli()
	b.postSigned(messengerText("regular", "m_regular_1", "hei", now))
	require.False(t, b.drain())
	for i := range 200 {
		b.postSigned(messengerText(fmt.Sprintf("raid%03d", i), fmt.Sprintf("m_raid_%d", i), "spam", now+1+int64(i)))
	}
	require.True(t, b.drain(), "the held wait for the budget")
	require.Len(t, b.conversations(), 20, "the regular person and 19 new ones")
	require.Len(t, b.room.invited, 20)
	require.Equal(t, 181, b.stored(), "kept, none lost")
	require.Equal(t, 181.0, b.heldPeople())
	require.Len(t, b.room.told, 1, "one summary line")
	require.Equal(t, []string{string(socOfficer)}, []string{string(b.room.told[0].Officers[0])})
	require.Contains(t, b.room.told[0].Text, "grensen på 20 nye rom per 1h er nådd")

	// A person who has a room is never held.
	b.postSigned(messengerText("regular", "m_regular_2", "er dere der?", now+500))
	require.True(t, b.drain())
	require.Equal(t, []string{"hei", "er dere der?"}, bodies(b.room.sentBy(b.conversationOf("regular").GhostID)))

	// Nothing more opens inside the window, and nobody is told again.
	b.later(30 * time.Minute)
	require.True(t, b.drain())
	require.Len(t, b.conversations(), 20)
	require.Len(t, b.room.told, 1)

	// The window moves on: 20 more rooms, oldest first (give or take the
	// laneWorkers people worked on at once in each round).
	b.later(31 * time.Minute)
	require.True(t, b.drain())
	require.Len(t, b.conversations(), 40)
	require.Equal(t, 161.0, b.heldPeople())
	for i := range 39 - 2*laneWorkers {
		c := b.conversationOf(fmt.Sprintf("raid%03d", i))
		require.Equal(t, []string{"spam"}, bodies(b.room.sentBy(c.GhostID)))
	}

	// Hours later everyone has a room, and the officers hear it once.
	for range 9 {
		b.later(time.Hour + time.Minute)
		b.drain()
	}
	require.False(t, b.drain())
	require.Len(t, b.conversations(), 201)
	require.Zero(t, b.heldPeople())
	require.Len(t, b.room.told, 2)
	require.True(t, strings.HasPrefix(b.room.told[1].Text, "Alle nye personer som ventet på rom"))
}

// heldPeople reads the gauge sikkerchat_meta_held_people as it is scraped.
func (b *socBridge) heldPeople() float64 {
	b.t.Helper()
	families, err := b.sc.Metrics.Registry.Gather()
	require.NoError(b.t, err)
	for _, fam := range families {
		if fam.GetName() == "sikkerchat_meta_held_people" {
			return fam.GetMetric()[0].GetGauge().GetValue()
		}
	}
	b.t.Fatal("no sikkerchat_meta_held_people")
	return 0
}
