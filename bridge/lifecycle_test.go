package bridge_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// A close delivers what the guest sent first; while the homeserver cannot
// take it, the close is refused and nothing is shredded.
func TestCloseDeliversGuestMessagesFirstOrRefuses(t *testing.T) {
	tb, inv := newGuardedBridge(t)
	_, _, err := tb.Guests.QueueText(tb.ctx, inv.conv, "close-test-client-01", "hjelp meg")
	require.NoError(t, err)

	tb.matrix.Failing = true
	err = tb.Conversations.Close(tb.ctx, inv.conv, string(officer), bridge.CloseByOfficer)
	var undelivered *bridge.UndeliveredError
	require.ErrorAs(t, err, &undelivered)
	require.Equal(t, 1, undelivered.Count)
	conv, err := tb.DB.Conversation.Get(tb.ctx, inv.conv.ID)
	require.NoError(t, err)
	require.Equal(t, bridge.StatusCreated, conv.Status, "still open")
	entries, err := tb.Transcript.Since(tb.ctx, inv.conv.ID, 0)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing shredded")

	tb.matrix.Failing = false
	require.NoError(t, tb.Conversations.Close(tb.ctx, conv, string(officer), bridge.CloseByOfficer))
	sent, _ := tb.matrix.Snapshot()
	require.Equal(t, []string{"hjelp meg"}, sent, "delivered before the close")
	_, _, err = tb.Guests.QueueText(tb.ctx, conv, "close-test-client-02", "etterpå")
	require.Error(t, err)
}

// Guest messages racing a close: every one the guest was told is stored
// reaches the room; the rest are refused as closed. Never stored and shredded.
func TestGuestMessagesRacingACloseAreDeliveredOrRefused(t *testing.T) {
	for round := range 5 {
		tb, inv := newGuardedBridge(t)
		var accepted []string
		var lock sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					time.Sleep(5 * time.Millisecond) // far faster than the rate limit lets a guest send
					text := fmt.Sprintf("melding %d-%d-%d", round, g, i)
					_, _, err := tb.Guests.QueueText(tb.ctx, inv.conv, fmt.Sprintf("race-client-%02d-%06d", g, i), text)
					if err == nil {
						lock.Lock()
						accepted = append(accepted, text)
						lock.Unlock()
					} else if !errors.Is(err, bridge.ErrConversationNotOpen) {
						t.Errorf("unexpected error: %v", err)
						return
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		for attempt := 0; ; attempt++ {
			err := tb.Conversations.Close(tb.ctx, inv.conv, string(officer), bridge.CloseByOfficer)
			var undelivered *bridge.UndeliveredError
			if errors.As(err, &undelivered) && attempt < 20 {
				continue // as an officer would: try again
			}
			require.NoError(t, err)
			break
		}
		time.Sleep(10 * time.Millisecond)
		close(stop)
		wg.Wait()
		sent, _ := tb.matrix.Snapshot()
		require.NotEmpty(t, accepted)
		require.ElementsMatch(t, accepted, sent, "round %d: every accepted message reached the room, once", round)
	}
}

// The close clears what officers sent that never reached the guest side.
func TestCloseClearsTheInbox(t *testing.T) {
	tb, inv := newGuardedBridge(t)
	_, err := tb.DB.Exec(tb.ctx, `INSERT INTO sikkerchat_inbox (event_id, room_id, event, received_at, arrival) VALUES ('$e1', $1, '{}', 1, 1), ('$e2', '!other:x', '{}', 1, 2)`, inv.conv.RoomID)
	require.NoError(t, err)
	require.NoError(t, tb.Conversations.Close(tb.ctx, inv.conv, string(officer), bridge.CloseByOfficer))
	var left []string
	rows, err := tb.DB.Query(tb.ctx, `SELECT event_id FROM sikkerchat_inbox`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		left = append(left, id)
	}
	require.NoError(t, rows.Close())
	require.Equal(t, []string{"$e2"}, left, "only the other room's event stays")
}

// The unwrapped conversation key is read from key_dir once and kept in
// memory while the conversation is open; the close wipes that copy.
func TestConversationKeyIsWipedFromMemoryAtClose(t *testing.T) {
	tb, inv := newGuardedBridge(t)
	_, _, err := tb.Guests.QueueText(tb.ctx, inv.conv, "key-cache-client-01", "hei")
	require.NoError(t, err)
	key := tb.Transcript.KeyInMemory(inv.conv.ID)
	require.Len(t, key, 32)
	require.NotEqual(t, make([]byte, 32), key)
	// Read again: the same copy, not a second one from disk.
	_, err = tb.Transcript.Since(tb.ctx, inv.conv.ID, 0)
	require.NoError(t, err)
	require.Same(t, &key[0], &tb.Transcript.KeyInMemory(inv.conv.ID)[0])

	tb.Outbox.RunOnce(tb.ctx)
	require.NoError(t, tb.Conversations.Close(tb.ctx, inv.conv, string(officer), bridge.CloseByOfficer))
	require.Equal(t, make([]byte, 32), key, "the copy in memory is overwritten")
	require.Nil(t, tb.Transcript.KeyInMemory(inv.conv.ID))
	_, err = tb.Transcript.Since(tb.ctx, inv.conv.ID, 0)
	require.ErrorContains(t, err, "conversation key not found")
}
