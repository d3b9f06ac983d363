package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

// infSide is the guest side's Matrix double for internal tests (the
// recording one in internal/matrixtest imports this package): only what a
// test uses answers.
type infSide struct {
	MatrixSide
	mu      sync.Mutex
	exports map[string][]byte
}

func (s *infSide) SendExport(ctx context.Context, conv *Conversation, name string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exports == nil {
		s.exports = map[string][]byte{}
	}
	s.exports[name] = data
	return nil
}

// infConnector is a detached connector over a fresh database, its keys in a
// temporary folder.
func infConnector(t *testing.T) *Connector {
	t.Helper()
	cfg := validConfig(t)
	cfg.KeyDir = t.TempDir()
	raw, _ := testdb.New(t)
	sc, err := NewDetached(zerolog.Nop().WithContext(context.Background()), cfg, raw, &infSide{})
	require.NoError(t, err)
	return sc
}

// infConversationIn makes an open conversation whose room is roomID.
func infConversationIn(t *testing.T, sc *Connector, roomID id.RoomID) *Conversation {
	t.Helper()
	conv, _, _ := newTestConversation(t, sc.DB, sc.Transcript)
	require.NoError(t, sc.DB.Conversation.SetRoom(context.Background(), conv.ID, roomID))
	conv.RoomID = roomID
	return conv
}

// infMatrixConnector is bridgev2's Matrix connector as Init leaves it, for a
// homeserver at address (nothing listens there unless a test serves it).
func infMatrixConnector(t *testing.T, address string) *matrix.Connector {
	t.Helper()
	if address == "" {
		address = "http://127.0.0.1:9"
	}
	cfg := &bridgeconfig.Config{}
	cfg.Homeserver.Address = address
	cfg.Homeserver.Domain = "example.org"
	cfg.AppService.ID = "sikkerchat"
	cfg.AppService.Bot.Username = "sikkerchatbot"
	cfg.AppService.UsernameTemplate = "sikkerchat_{{.}}"
	cfg.AppService.ASToken = "as-token"
	cfg.AppService.HSToken = "hs-token"
	mc := matrix.NewConnector(cfg)
	mc.AS = cfg.MakeAppService()
	mc.AS.DefaultHTTPRetries = 0
	mc.Bot = mc.AS.BotIntent()
	mc.EventProcessor = appservice.NewEventProcessor(mc.AS)
	mc.EventProcessor.ExecMode = appservice.Sync
	return mc
}

// infCrypto is bridgev2's crypto helper: room keys are always there, and the
// events it can decrypt are the ones a test gives it.
type infCrypto struct {
	matrix.Crypto
	mu        sync.Mutex
	waited    []id.SessionID
	decrypted map[id.EventID]*event.Event
	// wait, when set, answers WaitForSession (true: the key came).
	wait func() bool
}

func (c *infCrypto) WaitForSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, timeout time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waited = append(c.waited, sessionID)
	if c.wait != nil {
		return c.wait()
	}
	return true
}

func (c *infCrypto) RequestSession(context.Context, id.RoomID, id.SenderKey, id.SessionID, id.UserID, id.DeviceID) {
}

func (c *infCrypto) Decrypt(ctx context.Context, evt *event.Event) (*event.Event, error) {
	if plain, ok := c.decrypted[evt.ID]; ok {
		return plain, nil
	}
	return nil, errors.New("no session for this event")
}

func infTransaction(t *testing.T, events ...map[string]any) []byte {
	t.Helper()
	body, err := json.Marshal(map[string]any{"events": events})
	require.NoError(t, err)
	return body
}

func infInboxIDs(t *testing.T, sc *Connector) []string {
	t.Helper()
	left, err := sc.DB.Inbox.Leftovers(context.Background(), time.Now().Add(time.Hour))
	require.NoError(t, err)
	ids := []string{}
	for _, l := range left {
		ids = append(ids, string(l.EventID))
	}
	return ids
}

// In front of mautrix's transaction handler, the inbox keeps officers'
// encrypted events for conversation rooms, and only those: not the bridge's
// own (bot, ghosts), not plaintext, not other rooms. mautrix still gets the
// whole transaction, and every other appservice route still works.
func TestInboxInterceptKeepsOnlyOfficersEncryptedConversationEvents(t *testing.T) {
	sc := infConnector(t)
	infConversationIn(t, sc, "!room:example.org")
	mc := infMatrixConnector(t, "")
	sc.Inbox.intercept(mc)
	close(sc.Inbox.ready)
	put := func(txnID, auth string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPut, "/_matrix/app/v1/transactions/"+txnID, bytes.NewReader(body))
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		mc.AS.Router.ServeHTTP(rec, req)
		return rec
	}
	plain := map[string]any{"event_id": "$plain", "room_id": "!room:example.org", "sender": "@officer:example.org", "type": "m.room.message",
		"origin_server_ts": 1, "content": map[string]any{"msgtype": "m.text", "body": "hei"}}
	noID := encryptedEvent("", "!room:example.org", "@officer:example.org", "s")
	delete(noID, "event_id")

	rec := put("t1", "Bearer hs-token", infTransaction(t,
		encryptedEvent("$officer", "!room:example.org", "@officer:example.org", "s"),
		encryptedEvent("$bot", "!room:example.org", "@sikkerchatbot:example.org", "s"),
		encryptedEvent("$ghost", "!room:example.org", "@sikkerchat_abc123:example.org", "s"),
		encryptedEvent("$elsewhere", "!other:example.org", "@officer:example.org", "s"),
		plain, noID,
	))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, []string{"$officer"}, infInboxIDs(t, sc))
	require.Len(t, mc.AS.Events, 6, "mautrix got the whole transaction")

	// A request without the homeserver's token is mautrix's to refuse; nothing is kept.
	rec = put("t2", "Bearer wrong", infTransaction(t, encryptedEvent("$forged", "!room:example.org", "@officer:example.org", "s")))
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Equal(t, []string{"$officer"}, infInboxIDs(t, sc))

	// Nor one with the token where mautrix does not look for it (the query),
	// or without the Bearer scheme: what mautrix refuses is not kept.
	req := httptest.NewRequest(http.MethodPut, "/_matrix/app/v1/transactions/t4?access_token=hs-token",
		bytes.NewReader(infTransaction(t, encryptedEvent("$query", "!room:example.org", "@officer:example.org", "s"))))
	rec = httptest.NewRecorder()
	mc.AS.Router.ServeHTTP(rec, req)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	rec = put("t5", "hs-token", infTransaction(t, encryptedEvent("$noscheme", "!room:example.org", "@officer:example.org", "s")))
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Equal(t, []string{"$officer"}, infInboxIDs(t, sc))

	// A body mautrix cannot read is mautrix's to answer too.
	rec = put("t3", "Bearer hs-token", []byte("{not json"))
	require.Equal(t, http.StatusBadRequest, rec.Code)

	live := httptest.NewRecorder()
	mc.AS.Router.ServeHTTP(live, httptest.NewRequest(http.MethodGet, "/_matrix/mau/live", nil))
	require.Equal(t, http.StatusOK, live.Code, "mautrix's other routes stay reachable")
}

// Reactions and polls reach no handler of sikkerchat's; once bridgev2 has
// seen them they leave the inbox, or they would be replayed at every start.
func TestEventsNoSikkerchatHandlerSeesLeaveTheInbox(t *testing.T) {
	sc := infConnector(t)
	mc := infMatrixConnector(t, "")
	sc.Inbox.intercept(mc)
	ctx := context.Background()
	for _, evtID := range []id.EventID{"$reaction", "$poll", "$vote", "$plain-reaction"} {
		require.NoError(t, sc.DB.Inbox.Keep(ctx, evtID, "!room:example.org", `{}`, time.Now(), time.Now().UnixNano()))
	}
	for evtID, evtType := range map[id.EventID]event.Type{"$reaction": event.EventReaction, "$poll": event.EventUnstablePollStart, "$vote": event.EventUnstablePollResponse} {
		evt := &event.Event{ID: evtID, Type: evtType}
		evt.Mautrix.WasEncrypted = true
		mc.EventProcessor.Dispatch(ctx, evt)
	}
	// An unencrypted event was never kept by the inbox: the hook leaves the row of that ID alone.
	mc.EventProcessor.Dispatch(ctx, &event.Event{ID: "$plain-reaction", Type: event.EventReaction})
	require.Equal(t, []string{"$plain-reaction"}, infInboxIDs(t, sc))
}

// A transaction whose events cannot be made durable is refused with 500, so
// the homeserver sends it again; mautrix never sees it (it would answer 200
// and the events could be lost in a crash).
func TestTransactionThatCannotBeKeptIsRefusedForARetry(t *testing.T) {
	sc := infConnector(t)
	infConversationIn(t, sc, "!room:example.org")
	ib := sc.Inbox
	ib.ready = make(chan struct{})
	close(ib.ready)
	reached := false
	handler := ib.handler(&fakeKeys{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
	_, err := sc.DB.Exec(context.Background(), "DROP TABLE sikkerchat_inbox")
	require.NoError(t, err)

	req := httptest.NewRequest(http.MethodPut, "/_matrix/app/v1/transactions/t9",
		bytes.NewReader(infTransaction(t, encryptedEvent("$e", "!room:example.org", "@officer:example.org", "s"))))
	req.Header.Set("Authorization", "Bearer hs-token")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Contains(t, rec.Body.String(), "M_UNKNOWN")
	require.False(t, reached)
	require.Contains(t, infScrapeInternal(t, sc.Metrics), `sikkerchat_errors_total{kind="transaction_store"} 1`)
}

// New transactions wait until what the last run left in the inbox has been
// handled, so officers' messages reach the guest in the order they were
// sent; a homeserver that gives up meanwhile gets no answer from mautrix.
func TestTransactionsWaitForTheLastRunsLeftovers(t *testing.T) {
	sc := infConnector(t)
	infConversationIn(t, sc, "!room:example.org")
	ib := sc.Inbox
	ib.ready = make(chan struct{})
	passed := make(chan string, 2)
	keys := &fakeKeys{}
	keys.deliver("s")
	handler := ib.handler(keys, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		passed <- r.PathValue("txnID")
	}))
	mux := http.NewServeMux()
	mux.Handle("PUT /_matrix/app/v1/transactions/{txnID}", handler)
	send := func(ctx context.Context, txnID, eventID string) {
		req := httptest.NewRequestWithContext(ctx, http.MethodPut, "/_matrix/app/v1/transactions/"+txnID,
			bytes.NewReader(infTransaction(t, encryptedEvent(eventID, "!room:example.org", "@officer:example.org", "s"))))
		req.Header.Set("Authorization", "Bearer hs-token")
		mux.ServeHTTP(httptest.NewRecorder(), req)
	}

	// The homeserver gives up on a transaction while the replay runs.
	gaveUp, giveUp := context.WithCancel(context.Background())
	abandoned := make(chan struct{})
	go func() {
		defer close(abandoned)
		send(gaveUp, "t1", "$first")
	}()
	require.Eventually(t, func() bool { return len(infInboxIDs(t, sc)) == 1 }, 10*time.Second, 5*time.Millisecond,
		"the events are kept before the wait")
	giveUp()
	<-abandoned
	require.Empty(t, passed, "mautrix must not handle a transaction the homeserver will send again")

	done := make(chan struct{})
	go func() {
		defer close(done)
		send(context.Background(), "t2", "$second")
	}()
	require.Eventually(t, func() bool { return len(infInboxIDs(t, sc)) == 2 }, 10*time.Second, 5*time.Millisecond)
	select {
	case txn := <-passed:
		t.Fatalf("transaction %s overtook the replay", txn)
	default:
	}
	close(ib.ready)
	<-done
	require.Equal(t, "t2", <-passed)
}

// finish takes an event out of the inbox unless a retry could change the
// outcome: a refusal reported as certain is final, a failure is not.
func TestInboxFinishKeepsOnlyWhatARetryCouldFix(t *testing.T) {
	sc := infConnector(t)
	ctx := context.Background()
	outcomes := map[id.EventID]struct {
		err   error
		stays bool
	}{
		"$kept":      {nil, false},
		"$refused":   {bridgev2.WrapErrorInStatus(errors.New("refused")).WithIsCertain(true), false},
		"$unsure":    {bridgev2.WrapErrorInStatus(errors.New("maybe later")), true},
		"$db-failed": {errors.New("database is locked"), true},
	}
	for evtID := range outcomes {
		require.NoError(t, sc.DB.Inbox.Keep(ctx, evtID, "!room:example.org", `{}`, time.Now(), time.Now().UnixNano()))
	}
	for evtID, o := range outcomes {
		sc.Inbox.finish(ctx, evtID, o.err)
	}
	require.ElementsMatch(t, []string{"$unsure", "$db-failed"}, infInboxIDs(t, sc))
	require.Contains(t, infScrapeInternal(t, sc.Metrics), `sikkerchat_errors_total{kind="officer_message"} 2`)
}

// infKeepRaw puts a stored event in the inbox as a transaction at receivedAt left it.
func infKeepRaw(t *testing.T, sc *Connector, evt map[string]any, receivedAt time.Time, arrival int64) {
	t.Helper()
	raw, err := json.Marshal(evt)
	require.NoError(t, err)
	require.NoError(t, sc.DB.Inbox.Keep(context.Background(), id.EventID(evt["event_id"].(string)), id.RoomID(evt["room_id"].(string)), string(raw), receivedAt, arrival))
}

// After a crash, what the last run left in the inbox is handed to bridgev2
// again as the homeserver sent it (timeline message events, in arrival
// order, each after its room key), an attempt counted for what a process
// that ran on did not finish; what cannot be read, was tried too often or is
// a week old is let go, and what arrived during this run is not touched.
func TestInboxReplayHandsTheLastRunsEventsOnAgain(t *testing.T) {
	sc := infConnector(t)
	ctx := context.Background()
	mc := infMatrixConnector(t, "")
	crypto := &infCrypto{}
	mc.Crypto = crypto
	type seen struct {
		id      id.EventID
		class   event.TypeClass
		source  event.Source
		session id.SessionID
	}
	var dispatched []seen
	mc.EventProcessor.On(event.EventEncrypted, func(ctx context.Context, evt *event.Event) {
		enc := evt.Content.AsEncrypted()
		dispatched = append(dispatched, seen{evt.ID, evt.Type.Class, evt.Mautrix.EventSource, enc.SessionID})
	})
	started := time.Now()
	before := started.Add(-time.Minute)
	infKeepRaw(t, sc, encryptedEvent("$b", "!room:example.org", "@officer:example.org", "s2"), before, 2)
	infKeepRaw(t, sc, encryptedEvent("$a", "!room:example.org", "@officer:example.org", "s1"), before, 1)
	infKeepRaw(t, sc, encryptedEvent("$now", "!room:example.org", "@officer:example.org", "s3"), started.Add(time.Second), 3)
	infKeepRaw(t, sc, encryptedEvent("$tired", "!room:example.org", "@officer:example.org", "s4"), before, 4)
	for range inboxMaxAttempts {
		require.NoError(t, sc.DB.Inbox.CountAttempt(ctx, "$tired"))
	}
	infKeepRaw(t, sc, encryptedEvent("$ancient", "!room:example.org", "@officer:example.org", "s5"), started.Add(-inboxMaxAge-time.Hour), 0)
	require.NoError(t, sc.DB.Inbox.Keep(ctx, "$garbled", "!room:example.org", "{not json", before, 5))

	handed := sc.Inbox.replay(ctx, mc, started)

	require.Equal(t, []id.EventID{"$a", "$b"}, handed)
	require.Equal(t, []seen{
		{"$a", event.MessageEventType, event.SourceTimeline, "s1"},
		{"$b", event.MessageEventType, event.SourceTimeline, "s2"},
	}, dispatched)
	require.Equal(t, []id.SessionID{"s1", "s2"}, crypto.waited, "each event waits for its room key")
	require.Equal(t, []string{"$a", "$b", "$now"}, infInboxIDs(t, sc),
		"handed-on events stay until their handler finishes them; this run's event is untouched")
	attempts := func() map[string]int {
		got := map[string]int{}
		for _, evtID := range []string{"$a", "$b", "$now"} {
			var n int
			require.NoError(t, sc.DB.QueryRow(ctx, "SELECT attempts FROM sikkerchat_inbox WHERE event_id=$1", evtID).Scan(&n))
			got[evtID] = n
		}
		return got
	}
	require.Equal(t, map[string]int{"$a": 0, "$b": 0, "$now": 0}, attempts(), "not tried before the process ran for a while")
	require.Contains(t, infScrapeInternal(t, sc.Metrics), `sikkerchat_errors_total{kind="inbox_replay"} 2`)

	// A process stopped within the attempt wait has not tried them.
	stopped, stop := context.WithCancel(ctx)
	stop()
	sc.Inbox.countAttempts(stopped, handed, time.Hour)
	require.Equal(t, map[string]int{"$a": 0, "$b": 0, "$now": 0}, attempts())
	// One that ran on without finishing them has.
	sc.Inbox.countAttempts(ctx, handed, 0)
	require.Equal(t, map[string]int{"$a": 1, "$b": 1, "$now": 0}, attempts())

	// An event that keeps failing is let go after the last attempt.
	for range inboxMaxAttempts - 1 {
		sc.Inbox.countAttempts(ctx, sc.Inbox.replay(ctx, mc, started), 0)
	}
	require.Len(t, dispatched, 2*inboxMaxAttempts)
	sc.Inbox.replay(ctx, mc, started)
	require.Len(t, dispatched, 2*inboxMaxAttempts, "tried enough")
	require.Equal(t, []string{"$now"}, infInboxIDs(t, sc))
}

// A process stopped while its replay waits for a room key (an outside
// kill -9 stops it there as well) has not tried the event: no attempt is
// counted, so a run of stopped processes never lets an officer's event go.
func TestInboxReplayStoppedDuringTheKeyWaitCountsNoAttempt(t *testing.T) {
	sc := infConnector(t)
	mc := infMatrixConnector(t, "")
	var stop context.CancelFunc
	mc.Crypto = &infCrypto{wait: func() bool { stop(); return false }}
	dispatched := 0
	mc.EventProcessor.On(event.EventEncrypted, func(context.Context, *event.Event) { dispatched++ })
	started := time.Now()
	infKeepRaw(t, sc, encryptedEvent("$a", "!room:example.org", "@officer:example.org", "s1"), started.Add(-time.Minute), 1)

	for range inboxMaxAttempts + 1 { // one process after the other
		ctx, cancel := context.WithCancel(context.Background())
		stop = cancel
		require.Empty(t, sc.Inbox.replay(ctx, mc, started))
		require.Error(t, ctx.Err(), "stopped during the key wait")
		cancel()
	}

	require.Zero(t, dispatched)
	var attempts int
	require.NoError(t, sc.DB.QueryRow(context.Background(), "SELECT attempts FROM sikkerchat_inbox WHERE event_id=$1", "$a").Scan(&attempts))
	require.Zero(t, attempts)

	// The next process gets the key and hands the event on.
	mc.Crypto = &infCrypto{}
	sc.Inbox.replay(context.Background(), mc, started)
	require.Equal(t, 1, dispatched)
}

// At start the replay runs beside bridgev2's start-up, and new transactions
// are let through once it is done.
func TestInboxStartReplaysThenLetsTransactionsThrough(t *testing.T) {
	sc := infConnector(t)
	mc := infMatrixConnector(t, "")
	sc.Bridge = &bridgev2.Bridge{Matrix: mc, Log: zerolog.Nop()}
	handled := make(chan id.EventID, 1)
	mc.EventProcessor.On(event.EventEncrypted, func(ctx context.Context, evt *event.Event) {
		handled <- evt.ID
		sc.Inbox.finish(ctx, evt.ID, nil)
	})
	infKeepRaw(t, sc, encryptedEvent("$left", "!room:example.org", "@officer:example.org", "s"), sc.startedAt.Add(-time.Second), 1)
	sc.Inbox.intercept(mc)
	sc.Inbox.start(context.Background())
	select {
	case <-sc.Inbox.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the inbox never opened for new transactions")
	}
	require.Equal(t, id.EventID("$left"), <-handled)
	require.Empty(t, infInboxIDs(t, sc))
}

// infScrapeInternal is the metrics text as Prometheus reads it.
func infScrapeInternal(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}
