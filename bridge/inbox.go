package bridge

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Officers' messages reach the bridge in appservice transactions. mautrix
// answers the homeserver as soon as a transaction's events are queued, so a
// crash right after that answer would lose them: the homeserver never sends a
// transaction twice once it was answered. The inbox closes that gap. Every
// officer's encrypted event for a conversation room is written to
// sikkerchat_inbox before mautrix sees the transaction (a failed write answers
// 500, so the homeserver retries); the row goes when the guest side has the
// message (or bridgev2 routed the event elsewhere, e.g. a command); at start-up
// whatever is left is handled again. The transcript ignores events it already
// has, so handling twice shows the guest nothing twice.

// Inbox makes officers' events durable before the homeserver is answered,
// and hands on what a stopped bridge left behind (see the top of this file).
type Inbox struct {
	*Connector
	// ready is closed once the last run's left-overs are handled.
	ready chan struct{}
	// keysNotCome: megolm session ID → when a wait for its key gave up.
	keysNotCome sync.Map
	// lastArrival is the order key of the last event kept in the inbox.
	lastArrival atomic.Int64
}

// inboxMaxAttempts: an event handled this many times at start-up without the
// guest side taking it (e.g. from someone bridgev2 refuses) is let go.
const inboxMaxAttempts = 3

// inboxAttemptAfter: a replayed event counts as tried once the process that
// handed it on has run this long without finishing it. A process stopped
// sooner (a kill -9 during start-up, a failover) has not tried it: in a run
// of short-lived processes an officer's event is never let go.
const inboxAttemptAfter = 30 * time.Second

// inboxMaxAge: a left-over older than this is let go (the room still has it).
const inboxMaxAge = 7 * 24 * time.Hour

const maxTransactionBytes = 64 << 20

// intercept puts the inbox in front of mautrix's transaction
// handler. It must run before the appservice listener starts (Init).
func (ib *Inbox) intercept(mc *matrix.Connector) {
	ib.ready = make(chan struct{})
	next := mc.AS.Router
	mux := http.NewServeMux()
	mux.Handle("PUT /_matrix/app/v1/transactions/{txnID}", ib.handler(bridgeMatrix{mc}, next))
	mux.Handle("/", next)
	mc.AS.Router = mux
	// Reactions and polls reach no handler of sikkerchat's (officers' messages
	// and edits go to the OfficerClient, commands to the command processor):
	// bridgev2 has seen them when these hooks run.
	for _, evtType := range []event.Type{event.EventReaction, event.EventUnstablePollStart, event.EventUnstablePollResponse} {
		mc.EventProcessor.On(evtType, ib.routed)
	}
}

// inboxMatrix is what the inbox needs from the Matrix side: whose events are
// the bridge's own, the homeserver's token, and the room keys.
type inboxMatrix interface {
	serverToken() string
	isBridgeUser(id.UserID) bool
	waitForSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, timeout time.Duration) bool
	requestSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, userID id.UserID)
}

// bridgeMatrix is inboxMatrix on bridgev2's Matrix connector.
type bridgeMatrix struct{ mc *matrix.Connector }

func (b bridgeMatrix) serverToken() string { return b.mc.AS.Registration.ServerToken }

func (b bridgeMatrix) isBridgeUser(userID id.UserID) bool {
	if userID == b.mc.AS.BotMXID() {
		return true
	}
	_, isGhost := b.mc.ParseGhostMXID(userID)
	return isGhost
}

func (b bridgeMatrix) waitForSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, timeout time.Duration) bool {
	if b.mc.Crypto == nil {
		return true // nothing to wait for: mautrix reports the missing crypto
	}
	return b.mc.Crypto.WaitForSession(ctx, roomID, senderKey, sessionID, timeout)
}

// requestSession asks every device of the officer (the sending device is
// not named in the event any more since Matrix v1.3).
func (b bridgeMatrix) requestSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, userID id.UserID) {
	if b.mc.Crypto != nil {
		b.mc.Crypto.RequestSession(ctx, roomID, senderKey, sessionID, userID, "")
	}
}

func (ib *Inbox) handler(mc inboxMatrix, next http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		// The header only, as mautrix checks it: a transaction mautrix would
		// refuse is not kept either.
		token, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !bearer || subtle.ConstantTimeCompare([]byte(token), []byte(mc.serverToken())) != 1 {
			next.ServeHTTP(w, r) // mautrix refuses it
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTransactionBytes))
		if err != nil {
			mautrix.MNotJSON.WithMessage("Failed to read transaction").Write(w)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		kept, err := ib.keepTransaction(r.Context(), mc, body, arrived)
		if err != nil {
			zerolog.Ctx(r.Context()).Err(err).Str("transaction_id", r.PathValue("txnID")).
				Msg("Failed to keep officers' events before answering the homeserver; it will retry")
			ib.Metrics.Error(ErrKindTransactionStore)
			mautrix.MUnknown.WithMessage("Failed to store transaction, try again").Write(w)
			return
		}
		// What the last run left comes first: officers' messages reach the
		// guest in the order they were sent.
		select {
		case <-ib.ready:
		case <-r.Context().Done():
			return
		}
		ib.waitForRoomKeys(r.Context(), mc, kept, transactionKeyWait)
		next.ServeHTTP(w, r)
	}
}

type inboxEventHead struct {
	ID      id.EventID `json:"event_id"`
	RoomID  id.RoomID  `json:"room_id"`
	Type    string     `json:"type"`
	Sender  id.UserID  `json:"sender"`
	Content struct {
		SenderKey id.SenderKey `json:"sender_key"`
		SessionID id.SessionID `json:"session_id"`
	} `json:"content"`
}

// transactionKeyWait bounds how long a transaction is held for the room keys
// of its officers' events; Dendrite gives up on an unanswered transaction
// after 30 s (and sends it again).
const transactionKeyWait = 20 * time.Second

// keyGiveUpMemory: a session whose key did not come within a wait is not
// waited for again for this long (an officer's client that never shares its
// keys with the bridge must not hold every transaction).
const keyGiveUpMemory = 10 * time.Minute

// replayKeyWait bounds the wait for one left-over event's room key at start.
const replayKeyWait = 10 * time.Second

// keyRequestAfter: a room key not there after this is asked for from the
// officer's device (a key share that never reached the bridge, e.g. one sent
// while it was down, is sent again on request), and the wait goes on.
const keyRequestAfter = 2 * time.Second

// waitForRoomKeys holds officers' events until the bridge has their megolm
// sessions, so they are decrypted in the order they were sent. An officer's
// client sends a new session's key as a to-device message, which reaches the
// bridge through its own /sync, not through the transaction; after a restart
// or when the officer's client starts a new session, the key can come a
// little after the first events that use it. mautrix would then wait for the
// key beside the event stream and let later events overtake. A key not there
// after keyRequestAfter is asked for from the officer's device; whatever does
// not come within the wait is handed on anyway (mautrix asks again).
func (ib *Inbox) waitForRoomKeys(ctx context.Context, mc inboxMatrix, events []inboxEventHead, limit time.Duration) {
	if len(events) == 0 {
		return
	}
	deadline := time.Now().Add(limit)
	for _, head := range events {
		wait := time.Until(deadline)
		if head.Content.SessionID == "" || wait <= 0 {
			continue
		}
		if given, ok := ib.keysNotCome.Load(head.Content.SessionID); ok && time.Since(given.(time.Time)) < keyGiveUpMemory {
			continue // waited for it in vain already: do not hold every transaction again
		}
		started := time.Now()
		got := mc.waitForSession(ctx, head.RoomID, head.Content.SenderKey, head.Content.SessionID, min(wait, keyRequestAfter))
		if !got && wait > keyRequestAfter && ctx.Err() == nil {
			zerolog.Ctx(ctx).Debug().Stringer("event_id", head.ID).Stringer("session_id", head.Content.SessionID).
				Msg("Asking the officer's device for the room key of a held event")
			mc.requestSession(ctx, head.RoomID, head.Content.SenderKey, head.Content.SessionID, head.Sender)
			got = mc.waitForSession(ctx, head.RoomID, head.Content.SenderKey, head.Content.SessionID, wait-keyRequestAfter)
		}
		if got {
			if waited := time.Since(started); waited > 100*time.Millisecond {
				zerolog.Ctx(ctx).Debug().Stringer("event_id", head.ID).Dur("waited", waited).
					Msg("Held an officer's event until its room key arrived")
			}
		} else if ctx.Err() == nil {
			ib.keysNotCome.Store(head.Content.SessionID, time.Now())
			zerolog.Ctx(ctx).Warn().Stringer("event_id", head.ID).Stringer("session_id", head.Content.SessionID).
				Msg("Room key for an officer's event did not arrive in time; handing it on")
		}
	}
}

// nextArrival gives each kept event an order key: its arrival in nanoseconds,
// strictly after the one before, so the events of one transaction (which
// share their arrival time) and of transactions in the same instant keep the
// homeserver's order. Across restarts the wall clock orders them.
func (ib *Inbox) nextArrival(arrived time.Time) int64 {
	for {
		last := ib.lastArrival.Load()
		next := max(arrived.UnixNano(), last+1)
		if ib.lastArrival.CompareAndSwap(last, next) {
			return next
		}
	}
}

// keepTransaction writes the transaction's officer events for conversation
// rooms to the inbox and returns them.
func (ib *Inbox) keepTransaction(ctx context.Context, mc inboxMatrix, body []byte, arrived time.Time) ([]inboxEventHead, error) {
	var txn struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &txn); err != nil {
		return nil, nil // not ours to judge: mautrix answers the bad JSON
	}
	var kept []inboxEventHead
	for _, raw := range txn.Events {
		var head inboxEventHead
		if json.Unmarshal(raw, &head) != nil || head.ID == "" || head.Type != event.EventEncrypted.Type {
			continue
		}
		if mc.isBridgeUser(head.Sender) {
			continue
		}
		conv, err := ib.DB.Conversation.GetByRoom(ctx, head.RoomID)
		if err != nil {
			return nil, err
		} else if conv == nil {
			// Officers' replies in the patrol inbox's rooms are kept the same way.
			social, err := ib.DB.Social.GetByRoom(ctx, head.RoomID)
			if err != nil {
				return nil, err
			} else if social == nil {
				continue
			}
		}
		if err = ib.DB.Inbox.Keep(ctx, head.ID, head.RoomID, string(raw), arrived, ib.nextArrival(arrived)); err != nil {
			return nil, err
		}
		ib.Metrics.TransactionArrived(string(head.ID), arrived)
		kept = append(kept, head)
	}
	return kept, nil
}

// finish is the one place an officer's event leaves the inbox, driven by
// what handling it came to: kept for the guest, or never to be (not a
// conversation any more, a kind the page cannot show, refused), it goes;
// after a failure a retry may fix (the database, a download) it stays, to be
// handled again at the next start.
func (ib *Inbox) finish(ctx context.Context, eventID id.EventID, err error) {
	if err != nil && !isFinal(err) {
		ib.Metrics.Error(ErrKindOfficerMessage)
		return
	}
	if err := ib.DB.Inbox.Done(ctx, eventID); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Stringer("event_id", eventID).Msg("Failed to clear handled event from the inbox")
	}
}

// isFinal tells an outcome that handling again cannot change: every
// refusal sikkerchat reports to the officer as certain.
func isFinal(err error) bool {
	var ms bridgev2.MessageStatus
	return errors.As(err, &ms) && ms.IsCertain
}

// routed finishes events that no handler of sikkerchat's sees.
func (ib *Inbox) routed(ctx context.Context, evt *event.Event) {
	if evt.Mautrix.WasEncrypted {
		ib.finish(ctx, evt.ID, nil)
	}
}

// replay handles again what was left in the inbox by a bridge that
// stopped before the guest side had it, and returns what it handed on.
func (ib *Inbox) replay(ctx context.Context, mc *matrix.Connector, before time.Time) (handed []id.EventID) {
	log := zerolog.Ctx(ctx).With().Str("component", "inbox").Logger()
	ctx = log.WithContext(ctx)
	if err := ib.DB.Inbox.DropStale(ctx, inboxMaxAttempts, time.Now().Add(-inboxMaxAge)); err != nil {
		log.Err(err).Msg("Failed to drop stale inbox events")
	}
	todo, err := ib.DB.Inbox.Leftovers(ctx, before)
	if err != nil {
		log.Err(err).Msg("Failed to read the inbox")
		return nil
	}
	for _, l := range todo {
		if ctx.Err() != nil {
			return handed
		}
		var evt event.Event
		if err = json.Unmarshal([]byte(l.Raw), &evt); err != nil {
			log.Warn().Err(err).Stringer("event_id", l.EventID).Msg("Dropping unreadable inbox event")
			ib.finish(ctx, l.EventID, nil)
			continue
		}
		evt.Type.Class = event.MessageEventType
		evt.Mautrix.EventSource = event.SourceTimeline
		evt.Mautrix.ReceivedAt = time.Now()
		if err = evt.Content.ParseRaw(evt.Type); err != nil {
			log.Warn().Err(err).Stringer("event_id", l.EventID).Msg("Dropping unparseable inbox event")
			ib.finish(ctx, l.EventID, nil)
			continue
		}
		if enc := evt.Content.AsEncrypted(); enc != nil {
			head := inboxEventHead{ID: l.EventID, RoomID: evt.RoomID, Sender: evt.Sender}
			head.Content.SenderKey, head.Content.SessionID = enc.SenderKey, enc.SessionID
			ib.waitForRoomKeys(ctx, bridgeMatrix{mc}, []inboxEventHead{head}, replayKeyWait)
		}
		if ctx.Err() != nil {
			return handed
		}
		ib.Metrics.Error(ErrKindInboxReplay)
		log.Info().Stringer("event_id", l.EventID).Msg("Handling an officer's event again that the last run did not finish")
		mc.EventProcessor.Dispatch(ctx, &evt)
		handed = append(handed, l.EventID)
	}
	return handed
}

// countAttempts counts one attempt for each handed-on event still in the
// inbox after the process has run for wait; nothing if it stops before.
func (ib *Inbox) countAttempts(ctx context.Context, handed []id.EventID, wait time.Duration) {
	if len(handed) == 0 {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(wait):
	}
	for _, eventID := range handed {
		if err := ib.DB.Inbox.CountAttempt(ctx, eventID); err != nil {
			zerolog.Ctx(ctx).Err(err).Msg("Failed to count inbox attempt")
			return
		}
	}
}

// start handles what a previous run left in the inbox.
func (ib *Inbox) start(ctx context.Context) {
	mc, ok := ib.Bridge.Matrix.(*matrix.Connector)
	if !ok {
		return
	}
	// Only what arrived before this process began: anything later is being
	// handled now, and handling a command twice would be wrong. New
	// transactions wait until this is done (ready).
	go func() {
		handed := func() []id.EventID {
			defer close(ib.ready)
			return ib.replay(ctx, mc, ib.startedAt)
		}()
		ib.countAttempts(ctx, handed, inboxAttemptAfter)
	}()
}
