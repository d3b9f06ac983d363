package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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

// QueueGuestText stores a guest's text for delivery. The bool is false when
// the same client_id was already accepted (the stored entry is returned).
func (sc *Connector) QueueGuestText(ctx context.Context, conv *Conversation, clientID, text string) (*TranscriptEntry, bool, error) {
	if !ValidClientID(clientID) {
		return nil, false, ErrBadClientID
	}
	if !utf8.ValidString(text) {
		return nil, false, ErrEmptyMessage
	}
	text = strings.TrimRight(text, " \t\r\n")
	if strings.TrimSpace(text) == "" {
		return nil, false, ErrEmptyMessage
	} else if utf8.RuneCountInString(text) > sc.Config.Guest.MaxMessageLength {
		return nil, false, ErrMessageTooLong
	}
	entry := &TranscriptEntry{
		Direction: FromGuest,
		ClientID:  clientID,
		Status:    EntryStored,
		CreatedAt: time.Now(),
		Kind:      "text",
		Text:      text,
	}
	isNew, err := sc.Transcript.Append(ctx, conv.ID, entry)
	if err != nil {
		return nil, false, err
	}
	if !isNew {
		existing, err := sc.Transcript.ByClientID(ctx, conv.ID, clientID)
		if err != nil {
			return nil, false, err
		} else if existing == nil || existing.Text != text || existing.Kind != "text" {
			return nil, false, ErrClientIDReused
		}
		return existing, false, nil
	}
	sc.Metrics.GuestPosted(guestTxnID(conv.ID, clientID), RequestStart(ctx))
	sc.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventMessage, Entry: entry})
	sc.wakeOutbox()
	return entry, true, nil
}

func (sc *Connector) wakeOutbox() {
	select {
	case sc.outboxWake <- struct{}{}:
	default:
	}
}

// outboxWorkers bounds how many conversations send at the same time.
const outboxWorkers = 16

// outbox tracks the per-conversation senders: each conversation's messages go
// out one after the other (order is kept), conversations go out side by side
// (one slow upload or busy room holds up nobody else).
type outbox struct {
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
}

func newOutbox() *outbox {
	return &outbox{
		running: map[string]bool{},
		again:   map[string]bool{},
		slots:   make(chan struct{}, outboxWorkers),
		failed:  make(chan struct{}, 1),
		unsure:  map[string]bool{},
	}
}

// runOutbox delivers stored guest messages until ctx ends. After a failed
// send the conversation is retried with backoff (1 s doubling to 30 s) or as
// soon as the guest sends more; without failures a sweep runs every minute.
func (sc *Connector) runOutbox(ctx context.Context) {
	log := zerolog.Ctx(ctx).With().Str("component", "outbox").Logger()
	ctx = log.WithContext(ctx)
	backoff := time.Second
	for {
		convs, err := sc.pendingConversations(ctx)
		if err != nil {
			log.Err(err).Msg("Failed to list undelivered guest messages")
		}
		for _, conv := range convs {
			sc.startSender(ctx, conv)
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
			case <-sc.outboxWake:
				break wait
			case <-sweep:
				backoff = time.Second
				break wait
			case <-retry:
				break wait
			case <-sc.outbox.failed:
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
func (sc *Connector) startSender(ctx context.Context, conversationID string) {
	ob := sc.outbox
	ob.lock.Lock()
	if ob.running[conversationID] {
		ob.again[conversationID] = true
		ob.lock.Unlock()
		return
	}
	ob.running[conversationID] = true
	ob.lock.Unlock()
	go func() {
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
			failed := sc.deliverConversation(ctx, conversationID)
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
	}()
}

// pendingConversations lists conversations with stored, undelivered guest messages.
func (sc *Connector) pendingConversations(ctx context.Context) ([]string, error) {
	counts, err := sc.DB.Transcript.Undelivered(ctx)
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
	sc.Metrics.OutboxPending.Set(float64(pending))
	return convs, nil
}

// deliverPending delivers everything stored now, one conversation after the
// other, and returns (tests and tools).
func (sc *Connector) deliverPending(ctx context.Context) (failed bool) {
	convs, err := sc.pendingConversations(ctx)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to list undelivered guest messages")
		return true
	}
	for _, conv := range convs {
		if sc.deliverConversation(ctx, conv) {
			failed = true
		}
	}
	return failed
}

// deliverConversation sends a conversation's stored messages in order. It
// stops at the first failure that a retry may fix.
func (sc *Connector) deliverConversation(ctx context.Context, conversationID string) (failed bool) {
	lock, _ := sc.outbox.delivering.LoadOrStore(conversationID, &sync.Mutex{})
	lock.(*sync.Mutex).Lock()
	defer lock.(*sync.Mutex).Unlock()
	log := zerolog.Ctx(ctx)
	for ctx.Err() == nil {
		seqs, err := sc.DB.Transcript.UndeliveredIn(ctx, conversationID)
		if err != nil {
			log.Err(err).Str("conversation_id", conversationID).Msg("Failed to list undelivered guest messages")
			return true
		} else if len(seqs) == 0 {
			return false
		}
		for _, seq := range seqs {
			err := sc.deliver(ctx, conversationID, seq)
			switch {
			case err == nil:
			case isPermanent(err):
				// Retrying cannot help (too large for the homeserver, refused): give up on
				// this one, tell the guest and the officers, and let the next ones through.
				log.Err(err).Str("conversation_id", conversationID).Int64("seq", seq).Msg("Guest message can never be delivered")
				sc.Metrics.Error(ErrKindUndeliverable)
				sc.markUndeliverable(ctx, conversationID, seq)
			default:
				log.Warn().Err(err).Str("conversation_id", conversationID).Int64("seq", seq).Msg("Guest message not delivered yet, will retry")
				sc.Metrics.Error(ErrKindHomeserverSend)
				return true
			}
		}
	}
	return true
}

func (sc *Connector) deliver(ctx context.Context, conversationID string, seq int64) error {
	conv, err := sc.DB.Conversation.Get(ctx, conversationID)
	if err != nil {
		return fmt.Errorf("failed to get conversation: %w", err)
	} else if conv == nil || conv.RoomID == "" {
		return ErrConversationNotOpen
	}
	entry, err := sc.Transcript.BySeq(ctx, conversationID, seq)
	if err != nil {
		return err
	} else if entry == nil || entry.Status != EntryStored {
		return nil
	}
	txnID := guestTxnID(conv.ID, entry.ClientID)
	var eventID id.EventID
	if sc.outbox.uncertain(txnID, entry, sc.startedAt) {
		// An earlier attempt may have reached the room without an answer coming
		// back (a crash, a timeout). Homeservers forget the transaction IDs of
		// such requests, so look before sending again.
		if eventID, err = sc.Matrix.FindSent(ctx, conv, txnID); err != nil {
			return err
		} else if eventID != "" {
			zerolog.Ctx(ctx).Info().Str("conversation_id", conversationID).Int64("seq", seq).
				Msg("Guest message was already in the room from an earlier attempt")
		}
	}
	if eventID == "" {
		if eventID, err = sc.send(ctx, conv, txnID, entry); err != nil {
			sc.outbox.markUncertain(txnID, err)
			return err
		}
	}
	sc.outbox.settled(txnID)
	if _, err = sc.Transcript.MarkDelivered(ctx, conversationID, seq, eventID); err != nil {
		return err
	}
	if info, isFile := FileInfoOf(entry); isFile {
		// The room has the file now; the bridge keeps no copy it does not need.
		if err = sc.DB.File.Delete(ctx, conversationID, info.ID); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to drop delivered guest file")
		}
	}
	entry.MatrixEventID, entry.Status = eventID, EntryDelivered
	kind := "text"
	if _, isFile := FileInfoOf(entry); isFile {
		kind = "file"
	}
	sc.Metrics.Delivered(txnID, kind)
	sc.Hub.Publish(conversationID, GuestEvent{Kind: GuestEventStatus, Entry: entry})
	zerolog.Ctx(ctx).Debug().Str("conversation_id", conversationID).Int64("seq", seq).Stringer("event_id", eventID).Msg("Guest message delivered")
	return nil
}

func (sc *Connector) send(ctx context.Context, conv *Conversation, txnID string, entry *TranscriptEntry) (id.EventID, error) {
	if info, isFile := FileInfoOf(entry); isFile {
		data, err := sc.Transcript.File(ctx, conv.ID, info.ID)
		if err != nil {
			return "", err
		}
		return sc.Matrix.SendGuestFile(ctx, conv, txnID, info, data)
	}
	return sc.Matrix.SendGuestText(ctx, conv, txnID, entry.Text)
}

// uncertain tells whether an earlier attempt to send this message may have
// reached the room: one in an earlier run of the bridge (it may have died
// mid-send), or one in this run that failed without a clear "not sent".
func (ob *outbox) uncertain(txnID string, entry *TranscriptEntry, started time.Time) bool {
	if entry.CreatedAt.Before(started) {
		return true
	}
	ob.lock.Lock()
	defer ob.lock.Unlock()
	return ob.unsure[txnID]
}

// markUncertain notes a failed send that may have reached the homeserver
// anyway. A refused connection certainly did not.
func (ob *outbox) markUncertain(txnID string, err error) {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return
	}
	ob.lock.Lock()
	defer ob.lock.Unlock()
	ob.unsure[txnID] = true
}

func (ob *outbox) settled(txnID string) {
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

func (sc *Connector) markUndeliverable(ctx context.Context, conversationID string, seq int64) {
	if err := sc.DB.Transcript.MarkUndeliverable(ctx, conversationID, seq); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to mark guest message undeliverable")
		return
	}
	if entry, err := sc.Transcript.BySeq(ctx, conversationID, seq); err == nil && entry != nil {
		sc.Hub.Publish(conversationID, GuestEvent{Kind: GuestEventStatus, Entry: entry})
	}
	if conv, err := sc.DB.Conversation.Get(ctx, conversationID); err == nil && conv != nil {
		sc.Matrix.Notice(ctx, conv, sc.Config.validatedLanguage.T(msgUndeliverable))
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
