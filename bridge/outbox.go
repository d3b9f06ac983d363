package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
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

// runOutbox delivers stored guest messages, oldest first, until ctx ends. A
// conversation whose send fails waits for the next round, so order is kept.
func (sc *Connector) runOutbox(ctx context.Context) {
	log := zerolog.Ctx(ctx).With().Str("component", "outbox").Logger()
	ctx = log.WithContext(ctx)
	backoff := time.Second
	for {
		failed := sc.deliverPending(ctx)
		wait := time.Minute
		if failed {
			wait = backoff
			backoff = min(backoff*2, 30*time.Second)
		} else {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-sc.outboxWake:
		case <-time.After(wait):
		}
	}
}

func (sc *Connector) deliverPending(ctx context.Context) (failed bool) {
	log := zerolog.Ctx(ctx)
	rows, err := sc.Store.Query(ctx, undeliveredQuery)
	if err != nil {
		log.Err(err).Msg("Failed to list undelivered guest messages")
		return true
	}
	type pending struct {
		conv string
		seq  int64
	}
	var todo []pending
	for rows.Next() {
		var p pending
		if err = rows.Scan(&p.conv, &p.seq); err != nil {
			break
		}
		todo = append(todo, p)
	}
	rows.Close()
	if err != nil {
		log.Err(err).Msg("Failed to read undelivered guest messages")
		return true
	}
	blocked := map[string]bool{}
	for _, p := range todo {
		if blocked[p.conv] || ctx.Err() != nil {
			continue
		}
		err := sc.deliver(ctx, p.conv, p.seq)
		switch {
		case err == nil:
		case isPermanent(err):
			// Retrying cannot help (too large for the homeserver, refused): give up on
			// this one, tell the guest and the officers, and let the next ones through.
			log.Err(err).Str("conversation_id", p.conv).Int64("seq", p.seq).Msg("Guest message can never be delivered")
			sc.markUndeliverable(ctx, p.conv, p.seq)
		default:
			log.Warn().Err(err).Str("conversation_id", p.conv).Int64("seq", p.seq).Msg("Guest message not delivered yet, will retry")
			blocked[p.conv] = true
			failed = true
		}
	}
	return failed
}

func (sc *Connector) deliver(ctx context.Context, conversationID string, seq int64) error {
	conv, err := sc.Store.GetConversation(ctx, conversationID)
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
	if info, isFile := FileInfoOf(entry); isFile {
		data, err := sc.Transcript.File(ctx, conversationID, info.ID)
		if err != nil {
			return err
		}
		eventID, err = sc.Matrix.SendGuestFile(ctx, conv, txnID, info, data)
		if err != nil {
			return err
		}
	} else if eventID, err = sc.Matrix.SendGuestText(ctx, conv, txnID, entry.Text); err != nil {
		return err
	}
	if _, err = sc.Transcript.MarkDelivered(ctx, conversationID, seq, eventID); err != nil {
		return err
	}
	if info, isFile := FileInfoOf(entry); isFile {
		// The room has the file now; the bridge keeps no copy it does not need.
		if _, err = sc.Store.Exec(ctx, deleteFileQuery, conversationID, info.ID); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to drop delivered guest file")
		}
	}
	entry.MatrixEventID, entry.Status = eventID, EntryDelivered
	sc.Hub.Publish(conversationID, GuestEvent{Kind: GuestEventStatus, Entry: entry})
	zerolog.Ctx(ctx).Debug().Str("conversation_id", conversationID).Int64("seq", seq).Stringer("event_id", eventID).Msg("Guest message delivered")
	return nil
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
	if _, err := sc.Store.Exec(ctx, markUndeliverableQuery, conversationID, seq); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to mark guest message undeliverable")
		return
	}
	if entry, err := sc.Transcript.BySeq(ctx, conversationID, seq); err == nil && entry != nil {
		sc.Hub.Publish(conversationID, GuestEvent{Kind: GuestEventStatus, Entry: entry})
	}
	if conv, err := sc.Store.GetConversation(ctx, conversationID); err == nil && conv != nil {
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
