package bridge

import (
	"context"
	"errors"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/id"
)

// A guest's message is first sealed into the transcript ("stored": the page
// shows it as sent), then delivered to the room by the outbox. The Matrix
// transaction ID comes from the guest's client ID, so a retry after a crash or
// a homeserver outage reaches the room once.

var (
	ErrBadClientID    = errors.New("client_id must be 16-64 characters of A-Z, a-z, 0-9, _ and -")
	ErrEmptyMessage   = errors.New("message is empty")
	ErrMessageTooLong = errors.New("message is too long")
	ErrClientIDReused = errors.New("client_id was used for another message")
)

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)

// ValidClientID tells whether a guest-chosen message ID is acceptable.
func ValidClientID(clientID string) bool {
	return clientIDPattern.MatchString(clientID)
}

// outboxWorkers bounds how many conversations send at the same time.
const outboxWorkers = 16

// Outbox delivers guests' stored messages to their rooms: each
// conversation's messages go out one after the other (order is kept),
// conversations go out side by side (one slow upload or busy room holds up
// nobody else). A new message wakes its own conversation's sender, with the
// entry in hand, so the first send needs no read of what was just written.
type Outbox struct {
	*Connector
	// ctx is the running outbox's (nil before Run).
	ctx     atomic.Pointer[context.Context]
	lock    sync.Mutex
	running map[string]bool
	again   map[string]bool
	slots   chan struct{}
	failed  chan struct{}
	// unsure: messages whose last send failed in a way that may still have reached the room.
	unsure map[string]bool
	// delivering: conversation ID → *sync.Mutex held while its messages go out
	// (the outbox's sender and a close never send the same message side by side).
	delivering sync.Map
	// held: the entries just stored, by conversation and position, until delivered.
	held map[heldKey]*TranscriptEntry
}

type heldKey struct {
	conversationID string
	seq            int64
}

// maxHeld bounds the entries the outbox keeps in memory; beyond it (a long
// homeserver outage) the sender reads them back from the transcript.
const maxHeld = 1000

func newOutbox(sc *Connector) *Outbox {
	return &Outbox{
		Connector: sc,
		running:   map[string]bool{},
		again:     map[string]bool{},
		slots:     make(chan struct{}, outboxWorkers),
		failed:    make(chan struct{}, 1),
		unsure:    map[string]bool{},
		held:      map[heldKey]*TranscriptEntry{},
	}
}

// Wake hands the outbox a guest message just stored: its conversation's
// sender starts (or looks again when it is done) without a sweep of the rest.
func (ob *Outbox) Wake(conversationID string, entry *TranscriptEntry) {
	if entry != nil {
		ob.lock.Lock()
		if len(ob.held) < maxHeld {
			ob.held[heldKey{conversationID, entry.Seq}] = entry
		}
		ob.lock.Unlock()
	}
	if ctx := ob.ctx.Load(); ctx != nil {
		ob.startSender(*ctx, conversationID)
	}
}

// heldEntry is a copy of the entry a Wake handed over (the page's stream
// may be reading the original), or nil.
func (ob *Outbox) heldEntry(conversationID string, seq int64) *TranscriptEntry {
	ob.lock.Lock()
	defer ob.lock.Unlock()
	if e := ob.held[heldKey{conversationID, seq}]; e != nil {
		cp := *e
		return &cp
	}
	return nil
}

func (ob *Outbox) release(conversationID string, seq int64) {
	ob.lock.Lock()
	defer ob.lock.Unlock()
	delete(ob.held, heldKey{conversationID, seq})
}

// Run delivers stored guest messages until ctx ends (Start runs it). After
// a failed send the conversations are tried again with backoff (1 s doubling
// to 30 s) or as soon as the guest sends more; without failures a sweep runs
// every minute.
func (ob *Outbox) Run(ctx context.Context) {
	log := zerolog.Ctx(ctx).With().Str("component", "outbox").Logger()
	ctx = log.WithContext(ctx)
	ob.ctx.Store(&ctx)
	backoff := time.Second
	for {
		convs, err := ob.pendingConversations(ctx)
		if err != nil {
			log.Err(err).Msg("Failed to list undelivered guest messages")
		}
		for _, conv := range convs {
			ob.startSender(ctx, conv)
		}
		var retry <-chan time.Time
		if err != nil {
			retry = time.After(backoff)
			backoff = min(backoff*2, 30*time.Second)
		}
		sweep := time.After(time.Minute)
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-sweep:
				backoff = time.Second
				break wait
			case <-retry:
				break wait
			case <-ob.failed:
				if retry == nil {
					retry = time.After(backoff)
					backoff = min(backoff*2, 30*time.Second)
				}
			}
		}
	}
}

// startSender makes sure a sender runs for the conversation; if one already
// does, it looks again once it is done.
func (ob *Outbox) startSender(ctx context.Context, conversationID string) {
	ob.lock.Lock()
	if ob.running[conversationID] {
		ob.again[conversationID] = true
		ob.lock.Unlock()
		return
	}
	ob.running[conversationID] = true
	ob.lock.Unlock()
	ob.spawn(func() {
		select {
		case ob.slots <- struct{}{}:
		case <-ctx.Done():
			ob.lock.Lock()
			delete(ob.running, conversationID)
			ob.lock.Unlock()
			return
		}
		defer func() { <-ob.slots }()
		for {
			failed := ob.deliverConversation(ctx, conversationID)
			if failed {
				select {
				case ob.failed <- struct{}{}:
				default:
				}
			}
			ob.lock.Lock()
			if ob.again[conversationID] && !failed && ctx.Err() == nil {
				delete(ob.again, conversationID)
				ob.lock.Unlock()
				continue
			}
			delete(ob.again, conversationID)
			delete(ob.running, conversationID)
			ob.lock.Unlock()
			return
		}
	})
}

// pendingConversations lists conversations with stored, undelivered guest messages.
func (ob *Outbox) pendingConversations(ctx context.Context) ([]string, error) {
	counts, err := ob.DB.Transcript.Undelivered(ctx)
	if err != nil {
		return nil, err
	}
	convs := make([]string, 0, len(counts))
	pending := 0
	for conv, n := range counts {
		convs = append(convs, conv)
		pending += n
	}
	slices.Sort(convs)
	ob.Metrics.OutboxPending.Set(float64(pending))
	return convs, nil
}

// RunOnce delivers everything stored now, one conversation after the other,
// and returns (tests and tools).
func (ob *Outbox) RunOnce(ctx context.Context) (failed bool) {
	convs, err := ob.pendingConversations(ctx)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to list undelivered guest messages")
		return true
	}
	for _, conv := range convs {
		if ob.deliverConversation(ctx, conv) {
			failed = true
		}
	}
	return failed
}

// deliverConversation sends a conversation's stored messages in order. It
// stops at the first failure that a retry may fix.
func (ob *Outbox) deliverConversation(ctx context.Context, conversationID string) (failed bool) {
	lock, _ := ob.delivering.LoadOrStore(conversationID, &sync.Mutex{})
	lock.(*sync.Mutex).Lock()
	defer lock.(*sync.Mutex).Unlock()
	log := zerolog.Ctx(ctx)
	for ctx.Err() == nil {
		seqs, err := ob.DB.Transcript.UndeliveredIn(ctx, conversationID)
		if err != nil {
			log.Err(err).Str("conversation_id", conversationID).Msg("Failed to list undelivered guest messages")
			return true
		} else if len(seqs) == 0 {
			return false
		}
		conv, err := ob.DB.Conversation.Get(ctx, conversationID)
		if err != nil {
			log.Err(err).Str("conversation_id", conversationID).Msg("Failed to get conversation to deliver to")
			return true
		}
		for _, seq := range seqs {
			err := ob.deliver(ctx, conv, seq)
			switch {
			case err == nil:
			case isPermanent(err):
				// Retrying cannot help (too large for the homeserver, refused): give up on
				// this one, tell the guest and the officers, and let the next ones through.
				log.Err(err).Str("conversation_id", conversationID).Int64("seq", seq).Msg("Guest message can never be delivered")
				ob.Metrics.Error(ErrKindUndeliverable)
				ob.markUndeliverable(ctx, conversationID, seq)
			default:
				log.Warn().Err(err).Str("conversation_id", conversationID).Int64("seq", seq).Msg("Guest message not delivered yet, will retry")
				ob.Metrics.Error(ErrKindHomeserverSend)
				return true
			}
		}
	}
	return true
}

func (ob *Outbox) deliver(ctx context.Context, conv *Conversation, seq int64) (err error) {
	if conv == nil || conv.RoomID == "" {
		return ErrConversationNotOpen
	}
	conversationID := conv.ID
	// The message the guest just sent is in hand; one from before a restart
	// (or beyond what the outbox holds) is read back.
	entry := ob.heldEntry(conversationID, seq)
	if entry == nil {
		if entry, err = ob.Transcript.BySeq(ctx, conversationID, seq); err != nil {
			return err
		} else if entry == nil || entry.Status != EntryStored {
			return nil
		}
	}
	txnID := guestTxnID(conv.ID, entry.ClientID)
	var eventID id.EventID
	if ob.uncertain(txnID, entry, ob.startedAt) {
		// An earlier attempt may have reached the room without an answer coming
		// back (a crash, a timeout). Homeservers forget the transaction IDs of
		// such requests, so look before sending again.
		if eventID, err = ob.Matrix.FindSent(ctx, conv, txnID); err != nil {
			return err
		} else if eventID != "" {
			zerolog.Ctx(ctx).Info().Str("conversation_id", conversationID).Int64("seq", seq).
				Msg("Guest message was already in the room from an earlier attempt")
		}
	}
	if eventID == "" {
		if eventID, err = ob.send(ctx, conv, txnID, entry); err != nil {
			ob.markUncertain(txnID, err)
			return err
		}
	}
	ob.settled(txnID)
	if _, err = ob.Transcript.MarkDelivered(ctx, conversationID, seq, eventID); err != nil {
		return err
	}
	ob.release(conversationID, seq)
	if info, isFile := FileInfoOf(entry); isFile {
		// The room has the file now; the bridge keeps no copy it does not need.
		if err = ob.DB.File.Delete(ctx, conversationID, info.ID); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to drop delivered guest file")
		}
	}
	entry.MatrixEventID, entry.Status = eventID, EntryDelivered
	kind := "text"
	if _, isFile := FileInfoOf(entry); isFile {
		kind = "file"
	}
	ob.Metrics.Delivered(txnID, kind)
	ob.Hub.Publish(conversationID, GuestEvent{Kind: GuestEventStatus, Entry: entry})
	zerolog.Ctx(ctx).Debug().Str("conversation_id", conversationID).Int64("seq", seq).Stringer("event_id", eventID).Msg("Guest message delivered")
	return nil
}

func (ob *Outbox) send(ctx context.Context, conv *Conversation, txnID string, entry *TranscriptEntry) (id.EventID, error) {
	if !ob.active() {
		return "", errNotActive
	}
	if info, isFile := FileInfoOf(entry); isFile {
		data, err := ob.Transcript.File(ctx, conv.ID, info.ID)
		if err != nil {
			return "", err
		}
		return ob.Matrix.SendGuestFile(ctx, conv, txnID, info, data)
	}
	return ob.Matrix.SendGuestText(ctx, conv, txnID, entry.Text)
}

// uncertain tells whether an earlier attempt to send this message may have
// reached the room: one in an earlier run of the bridge (it may have died
// mid-send), or one in this run that failed without a clear "not sent".
func (ob *Outbox) uncertain(txnID string, entry *TranscriptEntry, started time.Time) bool {
	if entry.CreatedAt.Before(started) {
		return true
	}
	ob.lock.Lock()
	defer ob.lock.Unlock()
	return ob.unsure[txnID]
}

// markUncertain notes a failed send that may have reached the homeserver
// anyway. A refused connection certainly did not.
func (ob *Outbox) markUncertain(txnID string, err error) {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return
	}
	ob.lock.Lock()
	defer ob.lock.Unlock()
	ob.unsure[txnID] = true
}

func (ob *Outbox) settled(txnID string) {
	ob.lock.Lock()
	defer ob.lock.Unlock()
	delete(ob.unsure, txnID)
}

// isPermanent tells errors that no retry can fix from outages.
func isPermanent(err error) bool {
	if errors.Is(err, bridgev2.ErrMediaTooLarge) || errors.Is(err, ErrConversationNotOpen) {
		return true
	}
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.Response != nil {
		code := httpErr.Response.StatusCode
		return code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout
	}
	return false
}

func (ob *Outbox) markUndeliverable(ctx context.Context, conversationID string, seq int64) {
	ob.release(conversationID, seq)
	if err := ob.DB.Transcript.MarkUndeliverable(ctx, conversationID, seq); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to mark guest message undeliverable")
		return
	}
	if entry, err := ob.Transcript.BySeq(ctx, conversationID, seq); err == nil && entry != nil {
		ob.Hub.Publish(conversationID, GuestEvent{Kind: GuestEventStatus, Entry: entry})
	}
	if conv, err := ob.DB.Conversation.Get(ctx, conversationID); err == nil && conv != nil {
		ob.Matrix.Notice(ctx, conv, ob.Config.validatedLanguage.T(msgUndeliverable))
	}
}

// guestTxnID is unique per conversation and guest message, so that no two
// ghosts ever share a transaction ID (Synapse deduplicates on it alone).
func guestTxnID(conversationID, clientID string) string {
	return "sikkerchat." + conversationID + "." + clientID
}

func ghostIDOf(conv *Conversation) networkid.UserID {
	return networkid.UserID(conv.GhostID)
}

type requestStartKey struct{}

// WithRequestStart marks when a guest's request arrived (the guest listener
// sets it), so the bridge's own share of the send time can be measured.
func WithRequestStart(ctx context.Context, at time.Time) context.Context {
	return context.WithValue(ctx, requestStartKey{}, at)
}

// RequestStart is when the request in ctx arrived, or now.
func RequestStart(ctx context.Context) time.Time {
	if at, ok := ctx.Value(requestStartKey{}).(time.Time); ok {
		return at
	}
	return time.Now()
}
