package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"
)

// fakeKeys is the Matrix side of the inbox with room keys that arrive when the test says so.
type fakeKeys struct {
	mu      sync.Mutex
	arrived map[id.SessionID]chan struct{}
	waits   []id.SessionID
	// requested: the sessions asked for, as "session from user".
	requested []string
	// answer: the officer's device answers a key request (the key comes).
	answer bool
}

func (f *fakeKeys) key(s id.SessionID) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.arrived == nil {
		f.arrived = map[id.SessionID]chan struct{}{}
	}
	if f.arrived[s] == nil {
		f.arrived[s] = make(chan struct{})
	}
	return f.arrived[s]
}

func (f *fakeKeys) serverToken() string           { return "hs-token" }
func (f *fakeKeys) isBridgeUser(u id.UserID) bool { return u == "@sikkerchatbot:example.org" }
func (f *fakeKeys) deliver(s id.SessionID)        { close(f.key(s)) }
func (f *fakeKeys) requestSession(_ context.Context, _ id.RoomID, _ id.SenderKey, s id.SessionID, u id.UserID) {
	f.mu.Lock()
	f.requested = append(f.requested, string(s)+" from "+string(u))
	answer := f.answer
	f.mu.Unlock()
	if answer {
		f.deliver(s)
	}
}
func (f *fakeKeys) waitForSession(ctx context.Context, _ id.RoomID, _ id.SenderKey, s id.SessionID, timeout time.Duration) bool {
	f.mu.Lock()
	f.waits = append(f.waits, s)
	f.mu.Unlock()
	select {
	case <-f.key(s):
		return true
	case <-time.After(timeout):
		return false
	case <-ctx.Done():
		return false
	}
}

func encryptedEvent(eventID, roomID, sender, session string) map[string]any {
	return map[string]any{
		"event_id": eventID, "room_id": roomID, "sender": sender, "type": "m.room.encrypted",
		"origin_server_ts": 1, "content": map[string]any{
			"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "key", "session_id": session, "ciphertext": "x", "device_id": "DEV",
		},
	}
}

// An officer's client sends a new session's key by to-device message, which
// the bridge gets through /sync, not in the transaction. Until it is there
// the transaction is held (and kept in the inbox), so a later event cannot
// be decrypted and shown before it.
func TestInboxHoldsTransactionUntilItsRoomKeyArrives(t *testing.T) {
	ctx := context.Background()
	store, _ := newTestStore(t)
	transcript := NewTranscript(store, newTestKeys(t), bytes.Repeat([]byte{7}, 32))
	conv, _, _ := newTestConversation(t, store, transcript)
	require.NoError(t, store.Conversation.SetRoom(ctx, conv.ID, "!room:example.org"))
	sc := &Connector{DB: store, Metrics: NewMetrics(nil)}
	ib := &Inbox{Connector: sc, ready: make(chan struct{})}
	close(ib.ready)
	keys := &fakeKeys{}
	passed := make(chan string, 4)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		passed <- r.PathValue("txnID")
		w.WriteHeader(http.StatusOK)
	})
	mux := http.NewServeMux()
	mux.Handle("PUT /_matrix/app/v1/transactions/{txnID}", ib.handler(keys, next))

	put := func(txnID string, events ...map[string]any) *httptest.ResponseRecorder {
		body, err := json.Marshal(map[string]any{"events": events})
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodPut, "/_matrix/app/v1/transactions/"+txnID, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer hs-token")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	inInbox := func(eventID string) bool {
		var n int
		require.NoError(t, store.QueryRow(ctx, `SELECT COUNT(*) FROM sikkerchat_inbox WHERE event_id=$1`, eventID).Scan(&n))
		return n == 1
	}

	// A session the bridge has: handed on at once.
	keys.deliver("old")
	require.Equal(t, http.StatusOK, put("t1", encryptedEvent("$a", "!room:example.org", "@officer:example.org", "old")).Code)
	require.Equal(t, "t1", <-passed)

	// A new session: the transaction waits for its key, its event already kept.
	done := make(chan int, 1)
	go func() {
		done <- put("t2", encryptedEvent("$b", "!room:example.org", "@officer:example.org", "new")).Code
	}()
	require.Eventually(t, func() bool { return inInbox("$b") }, 10*time.Second, 5*time.Millisecond)
	select {
	case txn := <-passed:
		t.Fatalf("transaction %s handed on before its room key arrived", txn)
	case <-time.After(200 * time.Millisecond):
	}
	keys.deliver("new")
	require.Equal(t, "t2", <-passed)
	require.Equal(t, http.StatusOK, <-done)

	// The bridge's own events and rooms that are no conversation are not held or kept.
	require.Equal(t, http.StatusOK, put("t3",
		encryptedEvent("$c", "!room:example.org", "@sikkerchatbot:example.org", "never"),
		encryptedEvent("$d", "!other:example.org", "@officer:example.org", "never")).Code)
	require.Equal(t, "t3", <-passed)
	require.False(t, inInbox("$c"))
	require.False(t, inInbox("$d"))
}

func keyHead(eventID id.EventID, session id.SessionID) inboxEventHead {
	head := inboxEventHead{ID: eventID}
	head.Content.SessionID = session
	return head
}

// A key that never comes holds the transaction only for the wait, then mautrix
// gets it (and asks the officer's devices for the key).
func TestWaitForRoomKeysGivesUp(t *testing.T) {
	ib := &Inbox{Connector: &Connector{}}
	keys := &fakeKeys{}
	ib.waitForRoomKeys(context.Background(), keys, []inboxEventHead{
		keyHead("$a", "missing"),
		keyHead("$b", "missing-too"),
	}, 300*time.Millisecond)
	// Both events share one deadline: the first used it up, the second is not waited for.
	require.Equal(t, []id.SessionID{"missing"}, keys.waits)
	// A session waited for in vain is not waited for again.
	ib.waitForRoomKeys(context.Background(), keys, []inboxEventHead{
		keyHead("$c", "missing"),
	}, 300*time.Millisecond)
	require.Equal(t, []id.SessionID{"missing"}, keys.waits)
}

// A key share that never reached the bridge (the officer's client sent it
// while the bridge was down, or it was lost) is asked for from the officer's
// device after keyRequestAfter; the answer comes within the same wait, so the
// held event still goes first.
func TestWaitForRoomKeysAsksTheOfficersDeviceForAMissingKey(t *testing.T) {
	ib := &Inbox{Connector: &Connector{}}
	keys := &fakeKeys{answer: true}
	head := keyHead("$a", "lost")
	head.Sender = "@officer:example.org"
	ib.waitForRoomKeys(context.Background(), keys, []inboxEventHead{head}, time.Minute)
	require.Equal(t, []string{"lost from @officer:example.org"}, keys.requested)
	require.Equal(t, []id.SessionID{"lost", "lost"}, keys.waits, "waited before asking and after")
	_, givenUp := ib.keysNotCome.Load(id.SessionID("lost"))
	require.False(t, givenUp)

	// A key that comes in time is not asked for.
	keys = &fakeKeys{}
	keys.deliver("here")
	ib.waitForRoomKeys(context.Background(), keys, []inboxEventHead{keyHead("$b", "here")}, time.Minute)
	require.Empty(t, keys.requested)

	// Nobody answers: asked for once, then handed on at the end of the wait.
	keys = &fakeKeys{}
	ib.waitForRoomKeys(context.Background(), keys, []inboxEventHead{keyHead("$c", "gone")}, keyRequestAfter+300*time.Millisecond)
	require.Len(t, keys.requested, 1)
	_, givenUp = ib.keysNotCome.Load(id.SessionID("gone"))
	require.True(t, givenUp)
}

// After a crash the inbox's left-overs are handled again in the order the
// homeserver sent them, also within one transaction (whose events share
// their arrival time) and whatever their event IDs.
func TestInboxLeftoversKeepTheHomeserversOrder(t *testing.T) {
	ctx := context.Background()
	store, _ := newTestStore(t)
	transcript := NewTranscript(store, newTestKeys(t), bytes.Repeat([]byte{7}, 32))
	conv, _, _ := newTestConversation(t, store, transcript)
	require.NoError(t, store.Conversation.SetRoom(ctx, conv.ID, "!room:example.org"))
	sc := &Connector{DB: store, Metrics: NewMetrics(nil)}
	ib := &Inbox{Connector: sc}
	keys := &fakeKeys{}
	keys.deliver("s")
	arrived := time.Now()
	var events []json.RawMessage
	order := []string{"$zz", "$aa", "$mm", "$bb", "$yy"}
	for _, eventID := range order {
		raw, err := json.Marshal(encryptedEvent(eventID, "!room:example.org", "@officer:example.org", "s"))
		require.NoError(t, err)
		events = append(events, raw)
	}
	first, err := json.Marshal(map[string]any{"events": events[:3]})
	require.NoError(t, err)
	second, err := json.Marshal(map[string]any{"events": events[3:]})
	require.NoError(t, err)
	_, err = ib.keepTransaction(ctx, keys, first, arrived)
	require.NoError(t, err)
	_, err = ib.keepTransaction(ctx, keys, second, arrived) // same millisecond
	require.NoError(t, err)
	// The homeserver sends the first transaction again: nothing moves.
	_, err = ib.keepTransaction(ctx, keys, first, arrived.Add(time.Second))
	require.NoError(t, err)

	left, err := sc.DB.Inbox.Leftovers(ctx, arrived.Add(time.Minute))
	require.NoError(t, err)
	var got []string
	for _, l := range left {
		got = append(got, string(l.EventID))
	}
	require.Equal(t, order, got)
}
