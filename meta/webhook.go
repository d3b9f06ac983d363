// Package meta is sikkerchat's side of Meta's messaging contract: the webhook
// (verification handshake, signature, the envelope and its events) and the
// Graph API calls the patrol inbox makes (Send API, sender actions, profiles,
// attachment downloads). It holds no state and knows nothing of Matrix.
//
// Built against Graph API v25.0 as Meta documents it; docs/setup-meta.md and
// docs/research/meta-messaging.md cite the pages each rule comes from.
package meta

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the HMAC-SHA256 of the raw body, keyed with the app
// secret, as "sha256=<64 lowercase hex>". Meta also still sends the SHA-1
// X-Hub-Signature; sikkerchat never relies on it.
const SignatureHeader = "X-Hub-Signature-256"

// Errors of the webhook check, each answered with its own status.
var (
	ErrNoSignature  = errors.New("no X-Hub-Signature-256 header")
	ErrBadSignature = errors.New("X-Hub-Signature-256 does not match the body")
)

// Sign is the X-Hub-Signature-256 value Meta sends for body.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks header against the raw body bytes as received: Meta
// signs its own escaped form ("\u00e6"), so the body must never be decoded
// and encoded again before this. Any of secrets may have signed it (an app
// secret being rotated).
func VerifySignature(body []byte, header string, secrets ...string) error {
	got, err := ParseSignature(header)
	if err != nil {
		return err
	}
	match := 0
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		match |= subtle.ConstantTimeCompare(mac.Sum(nil), got)
	}
	if match != 1 {
		return ErrBadSignature
	}
	return nil
}

// ParseSignature reads an X-Hub-Signature-256 value without the body:
// ErrNoSignature when it is empty, ErrBadSignature when it is not
// "sha256=" and 64 hex digits. The listener checks this before it reads a
// byte of the body.
func ParseSignature(header string) ([]byte, error) {
	hexSum, ok := strings.CutPrefix(header, "sha256=")
	if header == "" {
		return nil, ErrNoSignature
	} else if !ok || len(hexSum) != sha256.Size*2 {
		return nil, ErrBadSignature
	}
	sum, err := hex.DecodeString(hexSum)
	if err != nil {
		return nil, ErrBadSignature
	}
	return sum, nil
}

// Handshake answers Meta's subscription check (GET with hub.mode=subscribe,
// hub.verify_token and hub.challenge): the challenge to echo back, or false
// when the mode or the token is wrong.
func Handshake(query url.Values, verifyToken string) (challenge string, ok bool) {
	if verifyToken == "" || query.Get("hub.mode") != "subscribe" {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(query.Get("hub.verify_token")), []byte(verifyToken)) != 1 {
		return "", false
	}
	challenge = query.Get("hub.challenge")
	// Meta sends an integer; anything else is not Meta.
	if challenge == "" || len(challenge) > 64 || strings.Trim(challenge, "0123456789") != "" {
		return "", false
	}
	return challenge, true
}

// Platform is where a conversation lives.
type Platform string

const (
	Messenger Platform = "messenger"
	Instagram Platform = "instagram"
)

// PlatformOf maps the envelope's object to a platform ("" for others).
func PlatformOf(object string) Platform {
	switch object {
	case "page":
		return Messenger
	case "instagram":
		return Instagram
	}
	return ""
}

// Envelope is one webhook delivery: {"object", "entry": [...]}, batched.
type Envelope struct {
	Object string  `json:"object"`
	Entry  []Entry `json:"entry"`
}

// Entry is one account's part of a delivery. Messaging events come in
// messaging[], in standby[] (handover protocol: another app owns the thread)
// and, for the dashboard's test button, as changes[] with field/value.
type Entry struct {
	ID        string      `json:"id"`
	Time      Timestamp   `json:"time"`
	Messaging []Messaging `json:"messaging"`
	Standby   []Messaging `json:"standby"`
	Changes   []Change    `json:"changes"`
}

// Change is the field/value form of an event.
type Change struct {
	Field string    `json:"field"`
	Value Messaging `json:"value"`
}

// Messaging is one event: who, to whom, when, and exactly one of the parts.
type Messaging struct {
	Sender      Party        `json:"sender"`
	Recipient   Party        `json:"recipient"`
	Timestamp   Timestamp    `json:"timestamp"`
	Message     *Message     `json:"message,omitempty"`
	Read        *Read        `json:"read,omitempty"`
	Delivery    *Delivery    `json:"delivery,omitempty"`
	Postback    *Postback    `json:"postback,omitempty"`
	Reaction    *Reaction    `json:"reaction,omitempty"`
	MessageEdit *MessageEdit `json:"message_edit,omitempty"`
}

// Party is a sender or recipient: a page, an Instagram account or a person
// (page- or Instagram-scoped ID). user_ref appears only for chat-plugin users.
type Party struct {
	ID      string `json:"id,omitempty"`
	UserRef string `json:"user_ref,omitempty"`
}

// Message is a person's message, or an echo of one sent to them.
type Message struct {
	MID           string       `json:"mid"`
	Text          string       `json:"text,omitempty"`
	IsEcho        bool         `json:"is_echo,omitempty"`
	AppID         FlexString   `json:"app_id,omitempty"`
	Metadata      string       `json:"metadata,omitempty"`
	IsDeleted     bool         `json:"is_deleted,omitempty"`
	IsUnsupported bool         `json:"is_unsupported,omitempty"`
	QuickReply    *QuickReply  `json:"quick_reply,omitempty"`
	ReplyTo       *ReplyTo     `json:"reply_to,omitempty"`
	Attachments   []Attachment `json:"attachments,omitempty"`
}

type QuickReply struct {
	Payload string `json:"payload"`
}

// ReplyTo is the message (or, on Instagram, the story) replied to.
type ReplyTo struct {
	MID         string `json:"mid,omitempty"`
	IsSelfReply bool   `json:"is_self_reply,omitempty"`
	Story       *struct {
		URL string `json:"url"`
		ID  string `json:"id"`
	} `json:"story,omitempty"`
}

// Attachment is media or a share. Types Meta documents: image (stickers
// too), audio, video, file, reel, ig_reel, post, ig_post, share,
// story_mention, like_heart, location, fallback, template (echoes).
type Attachment struct {
	Type    string            `json:"type"`
	Title   string            `json:"title,omitempty"`
	URL     string            `json:"url,omitempty"`
	Payload AttachmentPayload `json:"payload"`
}

type AttachmentPayload struct {
	URL         string     `json:"url,omitempty"`
	Title       string     `json:"title,omitempty"`
	StickerID   FlexString `json:"sticker_id,omitempty"`
	Coordinates *struct {
		Lat  float64 `json:"lat"`
		Long float64 `json:"long"`
	} `json:"coordinates,omitempty"`
}

// MediaURL is where the attachment's bytes are ("" when it has none).
func (a Attachment) MediaURL() string {
	switch a.Type {
	case "image", "audio", "video", "file":
		return a.Payload.URL
	}
	return ""
}

// Link is the address a shared link (a fallback attachment) points to: an
// http(s) URL, or "" when it has none. It is for showing, never fetching.
func (a Attachment) Link() string {
	for _, raw := range []string{a.URL, a.Payload.URL} {
		if u, err := url.Parse(raw); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
			return u.String()
		}
	}
	return ""
}

// LinkTitle is the title Meta gives a shared link ("" when none).
func (a Attachment) LinkTitle() string {
	if a.Title != "" {
		return a.Title
	}
	return a.Payload.Title
}

// Read: on Messenger everything sent up to the watermark was seen; on
// Instagram (messaging_seen) one message was.
type Read struct {
	Watermark Timestamp `json:"watermark,omitempty"`
	MID       string    `json:"mid,omitempty"`
}

// Delivery: Messenger's delivery receipt (mids are sometimes missing).
type Delivery struct {
	MIDs      []string  `json:"mids,omitempty"`
	Watermark Timestamp `json:"watermark"`
}

// Postback: the person tapped a button or an ice breaker.
type Postback struct {
	MID     string `json:"mid,omitempty"`
	Title   string `json:"title"`
	Payload string `json:"payload,omitempty"`
}

// Reaction to a message; Reaction and Emoji are absent on unreact.
type Reaction struct {
	MID      string `json:"mid"`
	Action   string `json:"action"`
	Reaction string `json:"reaction,omitempty"`
	Emoji    string `json:"emoji,omitempty"`
}

// MessageEdit: the person changed a message's text (at most five times).
type MessageEdit struct {
	MID     string     `json:"mid"`
	Text    string     `json:"text"`
	NumEdit FlexString `json:"num_edit,omitempty"`
}

// Timestamp is milliseconds since the epoch. Meta mostly sends milliseconds
// as a number, sometimes seconds, and in field/value events a string of
// seconds; all are read into milliseconds.
type Timestamp int64

func (t *Timestamp) UnmarshalJSON(data []byte) error {
	s := strings.Trim(string(data), `"`)
	if s == "" || s == "null" {
		*t = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return fmt.Errorf("timestamp %q is not a number", s)
		}
		n = int64(f)
	}
	if n > 0 && n < 1e12 {
		n *= 1000 // seconds
	}
	*t = Timestamp(n)
	return nil
}

// Time is the timestamp as a time (zero for none).
func (t Timestamp) Time() time.Time {
	if t <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(t))
}

// FlexString reads a JSON string or number as a string (app_id is typed as a
// string but shown as a number in Meta's examples).
type FlexString string

func (f *FlexString) UnmarshalJSON(data []byte) error {
	if bytes.Equal(data, []byte("null")) {
		*f = ""
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*f = FlexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("expected a string or a number: %w", err)
	}
	*f = FlexString(n.String())
	return nil
}

// EventKind names what an event is, after reading its parts.
type EventKind string

const (
	KindMessage  EventKind = "message"
	KindEcho     EventKind = "echo"
	KindDeleted  EventKind = "deleted"
	KindEdit     EventKind = "edit"
	KindRead     EventKind = "read"
	KindDelivery EventKind = "delivery"
	KindPostback EventKind = "postback"
	KindReaction EventKind = "reaction"
)

// Event is one messaging event with its platform and account resolved.
type Event struct {
	Platform Platform
	// Account is the page or Instagram account the conversation is with.
	Account string
	// Person is the page- or Instagram-scoped ID of the other side.
	Person string
	Time   time.Time
	Kind   EventKind
	Messaging
}

// ErrMalformed wraps what cannot be read as a webhook delivery.
var ErrMalformed = errors.New("malformed webhook delivery")

// Parse reads a delivery and flattens it into events in the order Meta sent
// them. Events that are not messaging events (feed changes) and events of
// unknown kinds are skipped; they are not an error, as Meta adds fields and
// kinds over time. An object other than page or instagram is an error.
func Parse(body []byte) ([]Event, error) {
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	platform := PlatformOf(env.Object)
	if platform == "" {
		return nil, fmt.Errorf("%w: object %q is neither page nor instagram", ErrMalformed, env.Object)
	}
	var events []Event
	for _, entry := range env.Entry {
		all := make([]Messaging, 0, len(entry.Messaging)+len(entry.Standby)+len(entry.Changes))
		all = append(all, entry.Messaging...)
		all = append(all, entry.Standby...)
		for _, ch := range entry.Changes {
			if ch.Field == "messages" || ch.Field == "message_echoes" || ch.Field == "messaging_postbacks" ||
				ch.Field == "message_reads" || ch.Field == "messaging_seen" || ch.Field == "message_deliveries" ||
				ch.Field == "message_reactions" || ch.Field == "message_edits" {
				all = append(all, ch.Value)
			}
		}
		for _, m := range all {
			evt, ok := classify(platform, entry.ID, m)
			if ok {
				events = append(events, evt)
			}
		}
	}
	return events, nil
}

func classify(platform Platform, account string, m Messaging) (Event, bool) {
	if account == "" || account == "0" {
		// No account in the entry (the dashboard's test events): it is the side
		// that is not the person.
		account = m.Recipient.ID
		if m.Message != nil && m.Message.IsEcho {
			account = m.Sender.ID
		}
	}
	evt := Event{Platform: platform, Account: account, Time: m.Timestamp.Time(), Messaging: m}
	evt.Person = m.Sender.ID
	switch {
	case m.Message != nil && m.Message.IsEcho:
		evt.Kind, evt.Person = KindEcho, m.Recipient.ID
	case m.Message != nil && m.Message.IsDeleted:
		evt.Kind = KindDeleted
	case m.Message != nil:
		evt.Kind = KindMessage
	case m.MessageEdit != nil:
		evt.Kind = KindEdit
	case m.Read != nil:
		evt.Kind = KindRead
	case m.Delivery != nil:
		evt.Kind = KindDelivery
	case m.Postback != nil:
		evt.Kind = KindPostback
	case m.Reaction != nil:
		evt.Kind = KindReaction
	default:
		return evt, false
	}
	if evt.Person == "" || account == "" || evt.Person == account {
		// Chat-plugin users (user_ref) cannot be answered through the Send API
		// with an ID; an event without an account, or from the account to
		// itself, is not a conversation.
		return evt, false
	}
	if (m.Message != nil || m.MessageEdit != nil) && evt.messageID() == "" {
		// Meta gives every message, echo, deletion and edit its mid: without
		// one it cannot be told apart from a retry, nor answered or edited.
		return evt, false
	}
	return evt, true
}

// ID is what identifies the event for de-duplication: its message ID where it
// has one, else a digest of its kind, sides and time (reads and deliveries
// carry none; Meta sends them again identically on a retry).
func (e Event) ID() string {
	switch {
	case e.Message != nil && e.Kind != KindDeleted:
		return e.Message.MID
	case e.Kind == KindDeleted:
		return "deleted:" + e.Message.MID
	case e.MessageEdit != nil:
		return "edit:" + e.MessageEdit.MID + ":" + string(e.MessageEdit.NumEdit) + ":" + strconv.FormatInt(int64(e.Timestamp), 10)
	case e.Postback != nil && e.Postback.MID != "":
		return e.Postback.MID
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%d", e.Kind, e.Platform, e.Account, e.Person, e.Timestamp)
	switch {
	case e.Read != nil:
		fmt.Fprintf(h, "\x00%d\x00%s", e.Read.Watermark, e.Read.MID)
	case e.Delivery != nil:
		fmt.Fprintf(h, "\x00%d\x00%s", e.Delivery.Watermark, strings.Join(e.Delivery.MIDs, ","))
	case e.Reaction != nil:
		fmt.Fprintf(h, "\x00%s\x00%s\x00%s", e.Reaction.MID, e.Reaction.Action, e.Reaction.Reaction)
	case e.Postback != nil:
		fmt.Fprintf(h, "\x00%s\x00%s", e.Postback.Title, e.Postback.Payload)
	}
	return e.Kind.String() + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// messageID is the mid of the message an event is about ("" if none).
func (e Event) messageID() string {
	switch {
	case e.Message != nil:
		return e.Message.MID
	case e.MessageEdit != nil:
		return e.MessageEdit.MID
	}
	return ""
}

func (k EventKind) String() string { return string(k) }

// storedEvent is an event as it is kept between its arrival and its
// handling: the resolved account and the raw messaging object.
type storedEvent struct {
	Platform  Platform  `json:"platform"`
	Account   string    `json:"account"`
	Messaging Messaging `json:"messaging"`
}

// Encode is the event in the form DecodeEvent reads back.
func (e Event) Encode() ([]byte, error) {
	return json.Marshal(storedEvent{Platform: e.Platform, Account: e.Account, Messaging: e.Messaging})
}

// DecodeEvent reads an event written by Encode and classifies it again, so
// that its person, kind and ID are what Parse made of it.
func DecodeEvent(data []byte) (Event, error) {
	var s storedEvent
	if err := json.Unmarshal(data, &s); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if s.Platform != Messenger && s.Platform != Instagram {
		return Event{}, fmt.Errorf("%w: platform %q", ErrMalformed, s.Platform)
	}
	evt, ok := classify(s.Platform, s.Account, s.Messaging)
	if !ok {
		return Event{}, fmt.Errorf("%w: not a conversation event", ErrMalformed)
	}
	return evt, nil
}
