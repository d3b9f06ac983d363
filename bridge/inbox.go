package bridge

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
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

const (
	insertInboxQuery = `INSERT INTO sikkerchat_inbox (event_id, room_id, event, received_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (event_id) DO NOTHING`
	deleteInboxQuery    = `DELETE FROM sikkerchat_inbox WHERE event_id=$1`
	leftInboxQuery      = `SELECT event_id, event FROM sikkerchat_inbox WHERE received_at < $1 ORDER BY received_at, event_id`
	bumpInboxQuery      = `UPDATE sikkerchat_inbox SET attempts=attempts+1 WHERE event_id=$1`
	dropStaleInboxQuery = `DELETE FROM sikkerchat_inbox WHERE attempts >= $1 OR received_at < $2`
)

// inboxMaxAttempts: an event handled this many times at start-up without the
// guest side taking it (e.g. from someone bridgev2 refuses) is let go.
const inboxMaxAttempts = 3

// inboxMaxAge: a left-over older than this is let go (the room still has it).
const inboxMaxAge = 7 * 24 * time.Hour

const maxTransactionBytes = 64 << 20

// interceptTransactions puts the inbox in front of mautrix's transaction
// handler. It must run before the appservice listener starts (Init).
func (sc *Connector) interceptTransactions(mc *matrix.Connector) {
	sc.inboxReady = make(chan struct{})
	next := mc.AS.Router
	mux := http.NewServeMux()
	mux.Handle("PUT /_matrix/app/v1/transactions/{txnID}", sc.inboxHandler(mc, next))
	mux.Handle("/", next)
	mc.AS.Router = mux
	// After bridgev2 has routed a decrypted event, events that never reach the
	// guest-side handlers leave the inbox here.
	for _, evtType := range []event.Type{event.EventMessage, event.EventSticker, event.EventReaction,
		event.EventUnstablePollStart, event.EventUnstablePollResponse} {
		mc.EventProcessor.On(evtType, sc.inboxRouted)
	}
}

func (sc *Connector) inboxHandler(mc *matrix.Connector, next http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if token == "" {
			token = r.URL.Query().Get("access_token")
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(mc.AS.Registration.ServerToken)) != 1 {
			next.ServeHTTP(w, r) // mautrix refuses it
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTransactionBytes))
		if err != nil {
			mautrix.MNotJSON.WithMessage("Failed to read transaction").Write(w)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err = sc.keepTransaction(r.Context(), mc, body, arrived); err != nil {
			zerolog.Ctx(r.Context()).Err(err).Str("transaction_id", r.PathValue("txnID")).
				Msg("Failed to keep officers' events before answering the homeserver; it will retry")
			sc.Metrics.Error(ErrKindTransactionStore)
			mautrix.MUnknown.WithMessage("Failed to store transaction, try again").Write(w)
			return
		}
		// What the last run left comes first: officers' messages reach the
		// guest in the order they were sent.
		select {
		case <-sc.inboxReady:
		case <-r.Context().Done():
			return
		}
		next.ServeHTTP(w, r)
	}
}

type inboxEventHead struct {
	ID     id.EventID `json:"event_id"`
	RoomID id.RoomID  `json:"room_id"`
	Type   string     `json:"type"`
	Sender id.UserID  `json:"sender"`
}

// keepTransaction writes the transaction's officer events for conversation rooms to the inbox.
func (sc *Connector) keepTransaction(ctx context.Context, mc *matrix.Connector, body []byte, arrived time.Time) error {
	var txn struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &txn); err != nil {
		return nil // not ours to judge: mautrix answers the bad JSON
	}
	for _, raw := range txn.Events {
		var head inboxEventHead
		if json.Unmarshal(raw, &head) != nil || head.ID == "" || head.Type != event.EventEncrypted.Type {
			continue
		}
		if head.Sender == mc.AS.BotMXID() {
			continue
		} else if _, isGhost := mc.ParseGhostMXID(head.Sender); isGhost {
			continue
		}
		conv, err := sc.Store.GetConversationByRoom(ctx, head.RoomID)
		if err != nil {
			return err
		} else if conv == nil {
			continue
		}
		if _, err = sc.Store.Exec(ctx, insertInboxQuery, head.ID, head.RoomID, string(raw), arrived.UnixMilli()); err != nil {
			return err
		}
		sc.Metrics.TransactionArrived(string(head.ID), arrived)
	}
	return nil
}

// inboxDone takes an event out of the inbox: the guest side has it (or never will).
func (sc *Connector) inboxDone(ctx context.Context, eventID id.EventID) {
	if _, err := sc.Store.Exec(ctx, deleteInboxQuery, eventID); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Stringer("event_id", eventID).Msg("Failed to clear handled event from the inbox")
	}
}

// inboxRouted runs after bridgev2 has routed a decrypted event. Messages for
// the guest leave the inbox in the handlers once kept; everything else
// (commands, reactions, polls) leaves now.
func (sc *Connector) inboxRouted(ctx context.Context, evt *event.Event) {
	if !evt.Mautrix.WasEncrypted {
		return // never in the inbox
	}
	if evt.Type == event.EventMessage {
		if msg := evt.Content.AsMessage(); msg != nil && !strings.HasPrefix(msg.Body, sc.commandPrefix()) {
			return
		}
	}
	sc.inboxDone(ctx, evt.ID)
}

// replayInbox handles again what was left in the inbox by a bridge that
// stopped before the guest side had it.
func (sc *Connector) replayInbox(ctx context.Context, mc *matrix.Connector, before time.Time) {
	log := zerolog.Ctx(ctx).With().Str("component", "inbox").Logger()
	ctx = log.WithContext(ctx)
	if _, err := sc.Store.Exec(ctx, dropStaleInboxQuery, inboxMaxAttempts, time.Now().Add(-inboxMaxAge).UnixMilli()); err != nil {
		log.Err(err).Msg("Failed to drop stale inbox events")
	}
	rows, err := sc.Store.Query(ctx, leftInboxQuery, before.UnixMilli())
	if err != nil {
		log.Err(err).Msg("Failed to read the inbox")
		return
	}
	type left struct {
		id  id.EventID
		raw string
	}
	var todo []left
	for rows.Next() {
		var l left
		if err = rows.Scan(&l.id, &l.raw); err != nil {
			break
		}
		todo = append(todo, l)
	}
	rows.Close()
	if err != nil {
		log.Err(err).Msg("Failed to read the inbox")
		return
	}
	for _, l := range todo {
		if ctx.Err() != nil {
			return
		}
		if _, err = sc.Store.Exec(ctx, bumpInboxQuery, l.id); err != nil {
			log.Err(err).Msg("Failed to count inbox attempt")
			return
		}
		var evt event.Event
		if err = json.Unmarshal([]byte(l.raw), &evt); err != nil {
			log.Warn().Err(err).Stringer("event_id", l.id).Msg("Dropping unreadable inbox event")
			sc.inboxDone(ctx, l.id)
			continue
		}
		evt.Type.Class = event.MessageEventType
		evt.Mautrix.EventSource = event.SourceTimeline
		evt.Mautrix.ReceivedAt = time.Now()
		if err = evt.Content.ParseRaw(evt.Type); err != nil {
			log.Warn().Err(err).Stringer("event_id", l.id).Msg("Dropping unparseable inbox event")
			sc.inboxDone(ctx, l.id)
			continue
		}
		sc.Metrics.Error(ErrKindInboxReplay)
		log.Info().Stringer("event_id", l.id).Msg("Handling an officer's event again that the last run did not finish")
		mc.EventProcessor.Dispatch(ctx, &evt)
	}
}

// startInbox handles what a previous run left in the inbox.
func (sc *Connector) startInbox(ctx context.Context) error {
	mc, ok := sc.Bridge.Matrix.(*matrix.Connector)
	if !ok {
		return nil
	}
	// Only what arrived before this process began: anything later is being
	// handled now, and handling a command twice would be wrong. New
	// transactions wait until this is done (inboxReady).
	go func() {
		defer close(sc.inboxReady)
		sc.replayInbox(ctx, mc, sc.startedAt)
	}()
	return nil
}
