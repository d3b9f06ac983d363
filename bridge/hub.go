package bridge

import (
	"sync"
)

// GuestEventKind names what the guest page is told about.
type GuestEventKind string

const (
	GuestEventMessage GuestEventKind = "message"
	GuestEventStatus  GuestEventKind = "status"
	GuestEventTyping  GuestEventKind = "typing"
	GuestEventClosed  GuestEventKind = "closed"
)

// GuestEvent is one thing to push to the open guest pages of a conversation.
type GuestEvent struct {
	Kind  GuestEventKind
	Entry *TranscriptEntry // message, status
	// Revision marks a message event that replaces one the page already has.
	Revision bool
	Typing   bool   // typing
	Reason   string // closed
}

// Hub fans out guest events to the SSE streams of a conversation. A slow
// reader loses live events rather than blocking the bridge; it gets them back
// from the transcript when it reconnects (the stream is closed on overflow).
type Hub struct {
	lock sync.Mutex
	subs map[string]map[*Subscription]struct{}
}

type Subscription struct {
	C chan GuestEvent
	// Done is closed when the subscription ends (Close, or the reader fell behind).
	Done   chan struct{}
	hub    *Hub
	convID string
	once   sync.Once
}

const subscriptionBuffer = 64

func NewHub() *Hub {
	return &Hub{subs: make(map[string]map[*Subscription]struct{})}
}

func (h *Hub) Subscribe(conversationID string) *Subscription {
	sub := &Subscription{C: make(chan GuestEvent, subscriptionBuffer), Done: make(chan struct{}), hub: h, convID: conversationID}
	h.lock.Lock()
	defer h.lock.Unlock()
	if h.subs[conversationID] == nil {
		h.subs[conversationID] = make(map[*Subscription]struct{})
	}
	h.subs[conversationID][sub] = struct{}{}
	return sub
}

// Close unsubscribes; it is safe to call more than once.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.hub.lock.Lock()
		defer s.hub.lock.Unlock()
		if set := s.hub.subs[s.convID]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(s.hub.subs, s.convID)
			}
		}
		close(s.Done)
	})
}

func (h *Hub) Publish(conversationID string, evt GuestEvent) {
	h.lock.Lock()
	subs := make([]*Subscription, 0, len(h.subs[conversationID]))
	for sub := range h.subs[conversationID] {
		subs = append(subs, sub)
	}
	h.lock.Unlock()
	for _, sub := range subs {
		select {
		case sub.C <- evt:
		case <-sub.Done:
		default:
			sub.Close()
		}
	}
}

// Subscribers is how many streams are open for a conversation.
func (h *Hub) Subscribers(conversationID string) int {
	h.lock.Lock()
	defer h.lock.Unlock()
	return len(h.subs[conversationID])
}
