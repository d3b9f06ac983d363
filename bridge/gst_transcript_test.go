package bridge_test

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// The officer's label (often a case number or a name) is sealed with the
// conversation key like the messages: unreadable in the database, and gone
// for good with the key at close.
func TestOfficerLabelIsSealedAndGoesWithTheKey(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	a, b := tb.newInvite(time.Hour), tb.newInvite(time.Hour)
	const label = "Sak 2024-118 Ola Nordmann"
	sealed, err := tb.Transcript.SealLabel(tb.ctx, a.conv.ID, label)
	require.NoError(t, err)
	require.False(t, bytes.Contains(sealed, []byte("Ola")))
	none, err := tb.Transcript.SealLabel(tb.ctx, a.conv.ID, "")
	require.NoError(t, err)
	require.Nil(t, none, "no label, nothing stored")

	conv := &bridge.Conversation{ID: a.conv.ID, SealedLabel: sealed}
	require.Equal(t, label, tb.Transcript.OpenLabel(tb.ctx, conv))
	conv.Label = "i minnet"
	require.Equal(t, "i minnet", tb.Transcript.OpenLabel(tb.ctx, conv), "a label in memory needs no key")
	require.Empty(t, tb.Transcript.OpenLabel(tb.ctx, &bridge.Conversation{ID: b.conv.ID, SealedLabel: sealed}),
		"another conversation's sealed label does not open")
	require.Empty(t, tb.Transcript.OpenLabel(tb.ctx, &bridge.Conversation{ID: a.conv.ID}))

	require.NoError(t, tb.Transcript.DestroyKey(a.conv.ID))
	require.Empty(t, tb.Transcript.OpenLabel(tb.ctx, &bridge.Conversation{ID: a.conv.ID, SealedLabel: sealed}))
	_, err = tb.Transcript.SealLabel(tb.ctx, a.conv.ID, label)
	require.Error(t, err, "nothing can be sealed for a conversation without its key")
}

// An officer's edit or deletion replaces what the guest sees: the entry is
// sealed again at its place, still unreadable in the database, and an edit
// of something the transcript does not have changes nothing.
func TestRevisionsAreSealedAgainInPlace(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	for i, eventID := range []id.EventID{"$first", "$second"} {
		_, err := tb.Transcript.Append(tb.ctx, inv.conv.ID, &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: eventID,
			CreatedAt: time.Now(), Kind: "text", Text: fmt.Sprintf("melding %d", i+1)})
		require.NoError(t, err)
	}
	var before []byte
	require.NoError(t, tb.DB.QueryRow(tb.ctx, `SELECT sealed FROM sikkerchat_transcript WHERE seq=1`).Scan(&before))

	revised, err := tb.Transcript.Revise(tb.ctx, inv.conv.ID, "$first", func(e *bridge.TranscriptEntry) {
		e.Text, e.Edited = "MARKØR-rettet tekst", true
	})
	require.NoError(t, err)
	require.EqualValues(t, 1, revised.Seq)
	require.Equal(t, "MARKØR-rettet tekst", revised.Text)
	var after []byte
	require.NoError(t, tb.DB.QueryRow(tb.ctx, `SELECT sealed FROM sikkerchat_transcript WHERE seq=1`).Scan(&after))
	require.NotEqual(t, before, after)
	require.False(t, bytes.Contains(after, []byte("MARKØR")))

	_, err = tb.Transcript.Revise(tb.ctx, inv.conv.ID, "$second", func(e *bridge.TranscriptEntry) { e.Text, e.Deleted = "", true })
	require.NoError(t, err)
	entries := tb.gstEntries(inv.conv.ID)
	require.Len(t, entries, 2)
	require.True(t, entries[0].Edited)
	require.Equal(t, "MARKØR-rettet tekst", entries[0].Text)
	require.True(t, entries[1].Deleted)
	require.Empty(t, entries[1].Text)
	require.Equal(t, id.EventID("$second"), entries[1].MatrixEventID)

	called := false
	unknown, err := tb.Transcript.Revise(tb.ctx, inv.conv.ID, "$never-seen", func(*bridge.TranscriptEntry) { called = true })
	require.NoError(t, err)
	require.Nil(t, unknown)
	require.False(t, called)
	require.Len(t, tb.gstEntries(inv.conv.ID), 2)
}

// Guest messages, officer messages and redeliveries arriving side by side
// get one position each, without gaps or duplicates, in every conversation.
func TestParallelAppendsGetOnePositionEach(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	a, b := tb.newInvite(time.Hour), tb.newInvite(time.Hour)
	const writers, each = 6, 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		for _, conv := range []*bridge.Conversation{a.conv, b.conv} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range each {
					// Every officer event arrives twice, as a redelivered transaction would.
					eventID := id.EventID(fmt.Sprintf("$w%d-%d", w, i))
					for range 2 {
						_, err := tb.Transcript.Append(tb.ctx, conv.ID, &bridge.TranscriptEntry{Direction: bridge.ToGuest,
							MatrixEventID: eventID, CreatedAt: time.Now(), Kind: "text", Text: string(eventID)})
						assert.NoError(t, err)
					}
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	for _, conv := range []*bridge.Conversation{a.conv, b.conv} {
		entries := tb.gstEntries(conv.ID)
		require.Len(t, entries, writers*each)
		var texts []string
		for i, e := range entries {
			require.EqualValues(t, i+1, e.Seq)
			texts = append(texts, e.Text)
		}
		sort.Strings(texts)
		require.Equal(t, texts, gstDedupe(texts), "each event once")
	}
}

func gstDedupe(sorted []string) []string {
	var out []string
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// A sealed row opens only at the place it was written: turned into a
// message of the other direction (an officer's words shown as the
// guest's), it no longer opens.
func TestASealedRowCannotChangeDirection(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	_, err := tb.Transcript.Append(tb.ctx, inv.conv.ID, &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: "$o",
		CreatedAt: time.Now(), Kind: "text", Text: "fra politiet"})
	require.NoError(t, err)
	_, err = tb.DB.Exec(tb.ctx, `UPDATE sikkerchat_transcript SET direction='from_guest' WHERE conversation_id=$1`, inv.conv.ID)
	require.NoError(t, err)
	_, err = tb.Transcript.Since(tb.ctx, inv.conv.ID, 0)
	require.ErrorContains(t, err, "failed to open transcript entry 1")
	_, err = tb.Transcript.BySeq(tb.ctx, inv.conv.ID, 1)
	require.Error(t, err)
}

// Looking entries up: by position, by the guest's client_id, by Matrix
// event; what is not there is nil, the plain columns come with the opened
// entry, and nothing opens once the key is gone.
func TestTranscriptLookups(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	created := time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
	guest := &bridge.TranscriptEntry{Direction: bridge.FromGuest, ClientID: gstClientID("look"), Status: bridge.EntryStored,
		CreatedAt: created, Kind: "text", Text: "fra gjesten"}
	isNew, err := tb.Transcript.Append(tb.ctx, inv.conv.ID, guest)
	require.NoError(t, err)
	require.True(t, isNew)
	officer := &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: "$o1", CreatedAt: created, Kind: "text", Text: "fra politiet"}
	_, err = tb.Transcript.Append(tb.ctx, inv.conv.ID, officer)
	require.NoError(t, err)

	again := &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: "$o1", CreatedAt: time.Now(), Kind: "text", Text: "fra politiet"}
	isNew, err = tb.Transcript.Append(tb.ctx, inv.conv.ID, again)
	require.NoError(t, err)
	require.False(t, isNew)
	require.Equal(t, officer.Seq, again.Seq, "a redelivery learns the place of the first")

	byClient, err := tb.Transcript.ByClientID(tb.ctx, inv.conv.ID, gstClientID("look"))
	require.NoError(t, err)
	require.Equal(t, "fra gjesten", byClient.Text)
	require.Equal(t, bridge.FromGuest, byClient.Direction)
	require.Equal(t, bridge.EntryStored, byClient.Status)
	require.True(t, created.Equal(byClient.CreatedAt))
	bySeq, err := tb.Transcript.BySeq(tb.ctx, inv.conv.ID, 2)
	require.NoError(t, err)
	require.Equal(t, id.EventID("$o1"), bySeq.MatrixEventID)
	later, err := tb.Transcript.Since(tb.ctx, inv.conv.ID, 1)
	require.NoError(t, err)
	require.Len(t, later, 1)
	require.Equal(t, "fra politiet", later[0].Text)

	for _, missing := range []func() (*bridge.TranscriptEntry, error){
		func() (*bridge.TranscriptEntry, error) {
			return tb.Transcript.ByClientID(tb.ctx, inv.conv.ID, gstClientID("none"))
		},
		func() (*bridge.TranscriptEntry, error) { return tb.Transcript.BySeq(tb.ctx, inv.conv.ID, 3) },
		func() (*bridge.TranscriptEntry, error) { return tb.Transcript.ByEvent(tb.ctx, inv.conv.ID, "$none") },
	} {
		entry, err := missing()
		require.NoError(t, err)
		require.Nil(t, entry)
	}

	ok, err := tb.Transcript.MarkDelivered(tb.ctx, inv.conv.ID, guest.Seq, "$g1")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = tb.Transcript.MarkDelivered(tb.ctx, inv.conv.ID, guest.Seq, "$g2")
	require.NoError(t, err)
	require.False(t, ok, "delivered once; the first event stays")
	byEvent, err := tb.Transcript.ByEvent(tb.ctx, inv.conv.ID, "$g1")
	require.NoError(t, err)
	require.Equal(t, bridge.EntryDelivered, byEvent.Status)

	_, err = tb.Transcript.Append(tb.ctx, "no-such-conversation", &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: "$x", CreatedAt: time.Now()})
	require.ErrorIs(t, err, bridge.ErrConversationNotOpen)
	require.NoError(t, tb.Transcript.DestroyKey(inv.conv.ID))
	_, err = tb.Transcript.ByClientID(tb.ctx, inv.conv.ID, gstClientID("look"))
	require.Error(t, err)
	_, err = tb.Transcript.BySeq(tb.ctx, inv.conv.ID, 3)
	require.Error(t, err, "without the key not even absence is told")
}

// A stream that was ended to make room for a newer page (a reload) and
// then closes itself must not take a newer page's stream with it.
func TestAnEvictedStreamClosingDoesNotEndANewerOne(t *testing.T) {
	h := bridge.NewHub()
	oldest := h.Subscribe("c")
	var newer []*bridge.Subscription
	for range 3 {
		newer = append(newer, h.Subscribe("c"))
	}
	<-oldest.Done
	oldest.Close()
	require.Equal(t, 3, h.Subscribers("c"))
	h.Publish("c", bridge.GuestEvent{Kind: bridge.GuestEventClosed, Reason: "officer"})
	for _, sub := range newer {
		require.Equal(t, "officer", (<-sub.C).Reason)
	}
	require.Empty(t, oldest.C, "an ended stream gets nothing more")
	h.Publish("nobody", bridge.GuestEvent{Kind: bridge.GuestEventTyping}) // no pages open: nothing to do
}
