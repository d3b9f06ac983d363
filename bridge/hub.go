package bridge

import (
	"slices"
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
// reader loses its stream rather than blocking the bridge; the page reconnects
// and gets everything back from the transcript.
type Hub struct {
	lock sync.Mutex
	subs map[string][]*Subscription // per conversation, oldest first
}

// Subscription is one open stream.
type Subscription struct {
	C chan GuestEvent
	// Done is closed when the subscription ends (Close, a newer stream took its
	// place, or the reader fell behind).
	Done   chan struct{}
	hub    *Hub
	convID string
	once   sync.Once
}

const subscriptionBuffer = 64

// maxStreamsPerConversation bounds the open pages of one conversation; a new
// one ends the oldest (a reload must never be refused).
const maxStreamsPerConversation = 3

func NewHub() *Hub {
	return &Hub{subs: make(map[string][]*Subscription)}
}

func (h *Hub) Subscribe(conversationID string) *Subscription {
	sub := &Subscription{C: make(chan GuestEvent, subscriptionBuffer), Done: make(chan struct{}), hub: h, convID: conversationID}
	h.lock.Lock()
	list := append(h.subs[conversationID], sub)
	var evicted []*Subscription
	if len(list) > maxStreamsPerConversation {
		evicted = slices.Clone(list[:len(list)-maxStreamsPerConversation])
		list = slices.Clone(list[len(list)-maxStreamsPerConversation:])
	}
	h.subs[conversationID] = list
	h.lock.Unlock()
	for _, old := range evicted {
		old.end()
	}
	return sub
}

func (s *Subscription) end() {
	s.once.Do(func() { close(s.Done) })
}

// Close unsubscribes; it is safe to call more than once.
func (s *Subscription) Close() {
	s.hub.lock.Lock()
	list := s.hub.subs[s.convID]
	if i := slices.Index(list, s); i >= 0 {
		list = slices.Delete(slices.Clone(list), i, i+1)
		if len(list) == 0 {
			delete(s.hub.subs, s.convID)
		} else {
			s.hub.subs[s.convID] = list
		}
	}
	s.hub.lock.Unlock()
	s.end()
}

func (h *Hub) Publish(conversationID string, evt GuestEvent) {
	h.lock.Lock()
	subs := h.subs[conversationID] // never mutated in place
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
