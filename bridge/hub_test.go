package bridge

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHubCapsStreamsAndDropsSlowReaders(t *testing.T) {
	h := NewHub()
	var subs []*Subscription
	for range maxStreamsPerConversation + 1 {
		subs = append(subs, h.Subscribe("c1"))
	}
	require.Equal(t, maxStreamsPerConversation, h.Subscribers("c1"))
	select {
	case <-subs[0].Done:
	default:
		t.Fatal("the oldest stream must end when a new one exceeds the cap")
	}
	other := h.Subscribe("c2")
	h.Publish("c1", GuestEvent{Kind: GuestEventTyping, Typing: true})
	require.Len(t, subs[1].C, 1)
	require.Len(t, other.C, 0, "events stay in their conversation")

	for range subscriptionBuffer + 1 {
		h.Publish("c2", GuestEvent{Kind: GuestEventTyping})
	}
	select {
	case <-other.Done:
	default:
		t.Fatal("a reader that falls behind loses its stream")
	}
	require.Zero(t, h.Subscribers("c2"))
	subs[1].Close()
	subs[1].Close()
	require.Equal(t, maxStreamsPerConversation-1, h.Subscribers("c1"))
}
