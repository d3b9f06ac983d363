package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	mautrixappservice "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/appservice"
	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

// gstSide is a minimal homeserver for the package's own tests (the
// recording double in internal/matrixtest imports this package): it sends,
// or answers every send with err.
type gstSide struct {
	lock sync.Mutex
	err  error
	// refuse is a text the homeserver refuses for good.
	refuse string
	sent   []string
}

var _ MatrixSide = (*gstSide)(nil)

func (s *gstSide) SendGuestText(_ context.Context, _ *Conversation, txnID, text string) (id.EventID, error) {
	s.lock.Lock()
	defer s.lock.Unlock()
	if s.err != nil {
		return "", s.err
	} else if text == s.refuse {
		return "", mautrix.HTTPError{Response: &http.Response{StatusCode: http.StatusRequestEntityTooLarge}}
	}
	s.sent = append(s.sent, text)
	return id.EventID(fmt.Sprintf("$sent%d", len(s.sent))), nil
}

func (s *gstSide) SendGuestFile(ctx context.Context, conv *Conversation, txnID string, info FileInfo, _ []byte) (id.EventID, error) {
	return s.SendGuestText(ctx, conv, txnID, "file:"+info.Name)
}

func (s *gstSide) FindSent(context.Context, *Conversation, string) (id.EventID, error) {
	return "", nil
}
func (s *gstSide) Notice(context.Context, *Conversation, string) {}
func (s *gstSide) CloseRoom(context.Context, *Conversation, *appservice.ConversationState, string) {
}
func (s *gstSide) ForgetRoom(context.Context, *Conversation)                                 {}
func (s *gstSide) SendExport(context.Context, *Conversation, string, []byte) error           { return nil }
func (s *gstSide) InviteOfficer(context.Context, *Conversation, id.UserID) error             { return nil }
func (s *gstSide) UpdateState(context.Context, *Conversation, *appservice.ConversationState) {}
func (s *gstSide) GuestTyping(context.Context, *Conversation, bool, time.Duration)           {}
func (s *gstSide) GuestRead(context.Context, *Conversation, id.EventID) error                { return nil }
func (s *gstSide) BridgeMembers(*Conversation) (id.UserID, id.UserID)                        { return "", "" }
func (s *gstSide) RemoveMember(context.Context, *Conversation, id.UserID, string) error      { return nil }
func (s *gstSide) GuardRoom(context.Context, *Conversation) (map[id.UserID]event.Membership, error) {
	return nil, nil
}

// gstConnector is a detached connector over a fresh database with one open
// conversation.
func gstConnector(t *testing.T) (*Connector, *gstSide, *Conversation) {
	t.Helper()
	var cfg Config
	require.NoError(t, yaml.Unmarshal([]byte(ExampleConfig), &cfg))
	cfg.MasterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	cfg.KeyDir = t.TempDir()
	raw, _ := testdb.New(t)
	side := &gstSide{}
	ctx := zerolog.Nop().WithContext(context.Background())
	sc, err := NewDetached(ctx, cfg, raw, side)
	require.NoError(t, err)
	conv, _, _ := newTestConversation(t, sc.DB, sc.Transcript)
	require.NoError(t, sc.DB.Conversation.SetRoom(ctx, conv.ID, "!room:example.org"))
	conv.RoomID = "!room:example.org"
	return sc, side, conv
}

// gstStore puts a guest text in the transcript as QueueText does, without
// waking the outbox.
func gstStore(t *testing.T, sc *Connector, conv *Conversation, clientID, text string) *TranscriptEntry {
	t.Helper()
	entry := &TranscriptEntry{Direction: FromGuest, ClientID: clientID, Status: EntryStored, CreatedAt: time.Now(), Kind: "text", Text: text}
	_, err := sc.Transcript.Append(context.Background(), conv.ID, entry)
	require.NoError(t, err)
	return entry
}

// Only what no retry can fix gives a guest message up: the homeserver's
// refusals (4xx but rate limits and timeouts), media over its limit, a
// conversation that is gone. Outages and server errors are retried.
func TestOnlyRefusalsGiveAGuestMessageUp(t *testing.T) {
	status := func(code int) error {
		return mautrix.HTTPError{Response: &http.Response{StatusCode: code}}
	}
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"bad request", status(http.StatusBadRequest), true},
		{"forbidden", status(http.StatusForbidden), true},
		{"too large", status(http.StatusRequestEntityTooLarge), true},
		{"too large, wrapped", fmt.Errorf("failed to send guest message: %w", status(http.StatusRequestEntityTooLarge)), true},
		{"media over the homeserver's limit", fmt.Errorf("upload: %w", bridgev2.ErrMediaTooLarge), true},
		{"conversation not open", ErrConversationNotOpen, true},
		{"rate limited", status(http.StatusTooManyRequests), false},
		{"request timeout", status(http.StatusRequestTimeout), false},
		{"server error", status(http.StatusInternalServerError), false},
		{"bad gateway", status(http.StatusBadGateway), false},
		{"no response at all", mautrix.HTTPError{}, false},
		{"connection reset", errors.New("connection reset by peer"), false},
		{"deadline", context.DeadlineExceeded, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.permanent, isPermanent(tc.err))
		})
	}
}

// Only a failure that certainly sent nothing (the connection was refused)
// lets the next attempt send without looking in the room first.
func TestOnlyARefusedConnectionIsCertainlyNotSent(t *testing.T) {
	sc, _, _ := gstConnector(t)
	ob := sc.Outbox
	now := &TranscriptEntry{CreatedAt: time.Now().Add(time.Minute)}
	for _, tc := range []struct {
		name   string
		err    error
		unsure bool
	}{
		{"refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{"refused, wrapped", fmt.Errorf("failed to send: %w", &net.OpError{Op: "dial", Err: errors.New("no route")}), false},
		{"broken while reading", &net.OpError{Op: "read", Err: errors.New("connection reset")}, true},
		{"timeout", context.DeadlineExceeded, true},
		{"server error", mautrix.HTTPError{Response: &http.Response{StatusCode: 502}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			txnID := "sikkerchat.c." + tc.name
			ob.markUncertain(txnID, tc.err)
			require.Equal(t, tc.unsure, ob.uncertain(txnID, now, sc.startedAt))
			ob.settled(txnID)
			require.False(t, ob.uncertain(txnID, now, sc.startedAt), "settled once delivered")
		})
	}
	before := &TranscriptEntry{CreatedAt: sc.startedAt.Add(-time.Second)}
	require.True(t, ob.uncertain("sikkerchat.c.old", before, sc.startedAt), "a message from an earlier run may have been sent")
}

// The outbox keeps the messages it was handed in memory only until they
// are delivered or given up, never more than maxHeld (a long outage cannot
// grow the bridge's memory without bound), and it sends a copy: the entry
// the guest's page stream holds is never written to by the sender.
func TestOutboxForgetsHeldMessagesOnceSettledAndHoldsAtMostMaxHeld(t *testing.T) {
	sc, side, conv := gstConnector(t)
	ob := sc.Outbox
	a := gstStore(t, sc, conv, "held-client-id-0001", "for stor")
	b := gstStore(t, sc, conv, "held-client-id-0002", "andre")
	ob.Wake(conv.ID, a)
	ob.Wake(conv.ID, b)
	require.Len(t, ob.held, 2)
	side.refuse = "for stor"
	require.False(t, ob.RunOnce(zerolog.Nop().WithContext(context.Background())))
	require.Equal(t, []string{"andre"}, side.sent)
	require.Empty(t, ob.held, "both settled: one given up, one delivered")
	require.Equal(t, EntryStored, b.Status, "the page's copy is not touched")
	require.Empty(t, b.MatrixEventID)

	for seq := range int64(maxHeld + 10) {
		ob.Wake(conv.ID, &TranscriptEntry{Seq: 100 + seq})
	}
	require.Len(t, ob.held, maxHeld)
}

// gstSendTimings is how many guest → homeserver send timings were observed.
func gstSendTimings(t *testing.T, m *Metrics) uint64 {
	t.Helper()
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, fam := range families {
		if fam.GetName() != "sikkerchat_bridge_latency_seconds" {
			continue
		}
		for _, metric := range fam.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "path" && l.GetValue() == PathGuestToHomeserver {
					return metric.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	t.Fatal("no guest_to_homeserver histogram")
	return 0
}

// The bridge's share of a guest message's trip ends when its send request
// leaves for the homeserver: the timer notes exactly the PUTs of guest
// messages (transaction IDs of the outbox) and passes every request on.
func TestSendTimerTimesOnlyGuestMessageSends(t *testing.T) {
	var reached []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = append(reached, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusOK)
	}))
	defer hs.Close()
	metrics := NewMetrics(nil)
	mc := &matrix.Connector{AS: &mautrixappservice.AppService{HTTPClient: &http.Client{}}}
	instrumentHomeserverClient(mc, metrics)
	instrumentHomeserverClient(&matrix.Connector{AS: &mautrixappservice.AppService{}}, metrics) // no client yet: nothing to do
	client := mc.AS.HTTPClient

	txnID := guestTxnID("conv1", "client-id-000000001")
	metrics.GuestPosted(txnID, time.Now().Add(-time.Second))
	send := func(method, path string) {
		req, err := http.NewRequest(method, hs.URL+path, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
	}
	room := "/_matrix/client/v3/rooms/%21room:example.org"
	for _, other := range []struct{ method, path string }{
		{http.MethodGet, room + "/send/m.room.encrypted/" + txnID},
		{http.MethodPut, room + "/state/no.sikkerchat.conversation/"},
		{http.MethodPut, room + "/send/m.room.encrypted/mautrix-go_1700000000_1"},
		{http.MethodPut, room + "/send/m.room.encrypted/" + guestTxnID("conv1", "never-posted-00001")},
	} {
		send(other.method, other.path)
	}
	require.Zero(t, gstSendTimings(t, metrics), "not a guest message's send")
	send(http.MethodPut, room+"/send/m.room.encrypted/"+txnID)
	require.EqualValues(t, 1, gstSendTimings(t, metrics))
	require.Len(t, reached, 5, "every request reached the homeserver")
}
