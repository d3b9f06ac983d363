package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
	"github.com/sikkerchat/sikkerchat/meta"
)

// handleEvent takes one event to its conversation's room.
func (s *Social) handleEvent(ctx context.Context, e meta.Event) error {
	page, ok := s.Config.Meta.page(e.Account)
	if !ok || (e.Platform == meta.Instagram) != (e.Account == page.InstagramAccountID) {
		s.log.Warn().Str("account", e.Account).Str("platform", string(e.Platform)).Msg("Ignored an event for an account that is not configured")
		return nil
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	eventID := e.ID()
	// An event handled before (Meta's redelivery, a replay) opens no room,
	// even when its conversation has been closed since.
	if seen, err := s.DB.SocialEvent.Get(ctx, eventID); err != nil {
		return retry(err)
	} else if seen != nil && seen.Done {
		return nil
	}
	var th *SocialConversation
	var err error
	switch e.Kind {
	case meta.KindMessage, meta.KindPostback:
		th, err = s.ensureConversation(ctx, e, page)
	default:
		// Reads, reactions, edits, echoes: only for a conversation that exists.
		var hash []byte
		if hash, err = s.personHash(ctx, e.Platform, e.Account, e.Person); err == nil {
			th, err = s.DB.Social.GetOpenByPerson(ctx, e.Account, hash)
			err = retry(err)
		}
		if err == nil && (th == nil || th.RoomID == "") {
			return nil
		}
	}
	if err != nil {
		return err
	}
	direction := "in"
	if e.Kind == meta.KindEcho {
		direction = "out"
	}
	claimed, fresh, err := s.DB.SocialEvent.Claim(ctx, &scdb.SocialEvent{
		EventID: eventID, SocialID: th.ID, Direction: direction, Kind: socialEventKind(e), At: e.Time,
	})
	if err != nil {
		return retry(err)
	} else if !fresh && (claimed.Done || claimed.SocialID != th.ID) {
		return nil // Meta sent it again
	}
	mx, err := s.showEvent(ctx, th, e, eventID, !fresh)
	if err != nil {
		return err
	}
	if err = s.DB.SocialEvent.Finish(ctx, eventID, mx); err != nil {
		return retry(err)
	}
	if direction == "in" && (e.Kind == meta.KindMessage || e.Kind == meta.KindPostback) {
		s.noteInbound(ctx, th, e.Time)
	}
	return nil
}

// socialEventKind is how an event is kept: what the unit sent is a
// "message" whether the bridge or Meta's own tools sent it.
func socialEventKind(e meta.Event) string {
	if e.Kind == meta.KindEcho {
		return string(meta.KindMessage)
	}
	return string(e.Kind)
}

// noteInbound moves the window forward and tells the room when it changes.
func (s *Social) noteInbound(ctx context.Context, th *SocialConversation, at time.Time) {
	if !at.After(th.LastInboundAt) {
		return
	}
	before, _, _, _, _ := meta.Window(th.LastInboundAt, s.now(), s.Config.Meta.HumanAgent)
	if err := s.DB.Social.NoteInbound(ctx, th.ID, at); err != nil {
		s.log.Err(err).Str("social_id", th.ID).Msg("Failed to note the person's last message")
		return
	}
	stale := at.Sub(th.LastInboundAt) > time.Hour
	th.LastInboundAt = at
	// The state event says until when replies go: it changes when the window
	// opens again, and is brought forward at most hourly (not at every message).
	if before != meta.WindowOpen || stale {
		s.publishSocialState(ctx, th.ID)
	}
}

// txnID is the Matrix transaction ID of a part of a Meta event: the same on
// every retry, so the homeserver (or FindSentAs) keeps it from doubling.
func socialTxnID(eventID string, part int) string {
	sum := sha256.Sum256([]byte(eventID))
	return fmt.Sprintf("meta-%s-%d", hex.EncodeToString(sum[:12]), part)
}

// showEvent puts one event in the room; it returns the Matrix event that
// stands for it (for replies, edits, reactions and reads).
func (s *Social) showEvent(ctx context.Context, th *SocialConversation, e meta.Event, eventID string, again bool) (id.EventID, error) {
	lang := s.Config.validatedLanguage
	platform := platformName(e.Platform)
	switch e.Kind {
	case meta.KindMessage:
		return s.showMessage(ctx, th, th.GhostID, e.Message, eventID, again)
	case meta.KindEcho:
		if s.isOwnEcho(ctx, th, e, eventID) {
			return "", nil
		}
		// Written at the page in Meta's own tools: shown as the page.
		return s.showMessage(ctx, th, pageGhostID(th.AccountID), e.Message, eventID, again)
	case meta.KindPostback:
		return s.sendText(ctx, th, th.GhostID, socialTxnID(eventID, 0), lang.T(msgSocialPostback, e.Postback.Title), "", again)
	case meta.KindRead:
		return "", s.showRead(ctx, th, e)
	case meta.KindDelivery:
		return "", nil // Matrix has no delivery receipt; the echo already said it was sent
	case meta.KindReaction:
		return s.showReaction(ctx, th, e, eventID, again)
	case meta.KindEdit:
		target, err := s.matrixEventOf(ctx, e.MessageEdit.MID)
		if err != nil || target == "" {
			return "", err
		}
		content := &event.MessageEventContent{MsgType: event.MsgText, Body: "* " + e.MessageEdit.Text}
		content.SetEdit(target)
		content.NewContent.Body = e.MessageEdit.Text
		return s.send(ctx, th, th.GhostID, socialTxnID(eventID, 0), event.EventMessage, &event.Content{Parsed: content}, again)
	case meta.KindDeleted:
		// What the person sent stays as evidence; the room is told it was withdrawn.
		target, err := s.matrixEventOf(ctx, e.Message.MID)
		if err != nil || target == "" {
			return "", err
		}
		content := renderNotice(lang.T(msgSocialDeleted, platform))
		content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(target)
		return s.send(ctx, th, "", socialTxnID(eventID, 0), event.EventMessage, &event.Content{Parsed: content}, again)
	}
	return "", nil
}

// matrixEventOf is the Matrix event a Meta message became ("" if unknown).
func (s *Social) matrixEventOf(ctx context.Context, mid string) (id.EventID, error) {
	if mid == "" {
		return "", nil
	}
	e, err := s.DB.SocialEvent.Get(ctx, mid)
	if err != nil {
		return "", retry(err)
	} else if e == nil {
		return "", nil
	}
	return e.MatrixEventID, nil
}

// showMessage sends a message's text and attachments as sender; the first
// Matrix event stands for the message.
func (s *Social) showMessage(ctx context.Context, th *SocialConversation, sender string, m *meta.Message, eventID string, again bool) (id.EventID, error) {
	lang := s.Config.validatedLanguage
	var first id.EventID
	note := func(mx id.EventID) {
		if first == "" {
			first = mx
		}
	}
	var replyTo id.EventID
	if m.ReplyTo != nil && m.ReplyTo.MID != "" {
		var err error
		if replyTo, err = s.matrixEventOf(ctx, m.ReplyTo.MID); err != nil {
			return "", err
		}
	}
	part := 0
	if m.Text != "" {
		mx, err := s.sendText(ctx, th, sender, socialTxnID(eventID, part), m.Text, replyTo, again)
		if err != nil {
			return "", err
		}
		note(mx)
	}
	for i, att := range m.Attachments {
		part++
		txn := socialTxnID(eventID, part)
		var mx id.EventID
		var err error
		switch {
		case att.Type == "like_heart":
			mx, err = s.sendText(ctx, th, sender, txn, "❤️", replyTo, again)
		case att.Type == "location" && att.Payload.Coordinates != nil:
			c := att.Payload.Coordinates
			mx, err = s.sendText(ctx, th, sender, txn, fmt.Sprintf("📍 %.5f, %.5f", c.Lat, c.Long), replyTo, again)
		case att.Type == "fallback" && att.Link() != "":
			// A shared link is shown, never fetched: it can point anywhere.
			mx, err = s.sendText(ctx, th, sender, txn, lang.T(msgSocialLink, att.LinkTitle(), att.Link()), replyTo, again)
		case att.MediaURL() != "" || (att.Payload.URL != "" && (att.Type == "story_mention" || att.Type == "share" || att.Type == "reel" || att.Type == "ig_reel")):
			mx, err = s.sendMedia(ctx, th, sender, txn, att, i, again)
		default:
			label := strings.ReplaceAll(att.Type, "_", " ")
			if label == "" {
				label = "vedlegg"
			}
			mx, err = s.sendText(ctx, th, sender, txn, lang.T(msgSocialUnsupported, label), replyTo, again)
		}
		if err != nil {
			return "", err
		}
		note(mx)
	}
	if m.IsUnsupported && first == "" {
		mx, err := s.sendText(ctx, th, sender, socialTxnID(eventID, part+1), lang.T(msgSocialUnsupported, "melding"), replyTo, again)
		if err != nil {
			return "", err
		}
		note(mx)
	}
	return first, nil
}

// maxAttachment is the most the bridge downloads of one attachment: Meta's
// own limit for what it carries, or the homeserver's upload limit when that
// is lower (bridgev2 learns it at start).
func (s *Social) maxAttachment() int64 {
	limit := int64(meta.MaxAttachment)
	if hs := s.homeserverMaxFile.Load(); hs > 0 && hs < limit {
		limit = hs
	}
	return limit
}

// sendMedia downloads an attachment at once (Meta's URLs expire) and sends
// it. An attachment that can never be brought over (too large, a type guests
// may not send either, a URL that is not Meta's CDN, one Meta no longer
// serves, one the homeserver refuses) becomes a notice in the room saying
// what it was; a failure that may pass is tried again.
func (s *Social) sendMedia(ctx context.Context, th *SocialConversation, sender, txn string, att meta.Attachment, index int, again bool) (id.EventID, error) {
	if again {
		for _, earlier := range []struct{ sender, txn string }{{sender, txn}, {"", lostTxnID(txn)}} {
			if mx, err := s.room.FindSentAs(ctx, th.RoomID, earlier.sender, earlier.txn); err != nil {
				return "", retry(err)
			} else if mx != "" {
				return mx, nil
			}
		}
	}
	limit := s.maxAttachment()
	data, _, err := s.media.Fetch(ctx, att.Payload.URL, limit)
	if err != nil {
		switch class := meta.ClassOf(err); class {
		case meta.ClassTransient, meta.ClassRateLimited:
			return "", retry(err)
		}
		lost := lostAttachment{kind: att.Type, reason: lostExpired, limit: limit}
		var tooLarge *meta.TooLargeError
		switch {
		case errors.As(err, &tooLarge):
			lost.reason, lost.size = lostTooLarge, tooLarge.Size
		case errors.Is(err, meta.ErrMediaURL), errors.Is(err, meta.ErrMediaAddress), errors.Is(err, meta.ErrTooManyRedirects):
			lost.reason = lostNotMeta
		}
		return s.attachmentLost(ctx, th, txn, lost, err)
	}
	mimeType := DetectFileType(data)
	if !FileTypeAllowed(mimeType) {
		return s.attachmentLost(ctx, th, txn, lostAttachment{kind: att.Type, reason: lostFileType, size: int64(len(data)), mimeType: mimeType}, ErrFileTypeRefused)
	}
	name := SafeFileName(fmt.Sprintf("%s-%d", attachmentWord(att.Type), index+1), mimeType)
	content, err := s.room.Upload(ctx, th.RoomID, sender, name, mimeType, data)
	if err != nil {
		if !isUploadRefused(err) {
			return "", retry(err)
		}
		lost := lostAttachment{kind: att.Type, reason: lostHomeserver, size: int64(len(data)), limit: s.homeserverMaxFile.Load()}
		if errors.Is(err, bridgev2.ErrMediaTooLarge) || errors.Is(err, mautrix.MTooLarge) || httpStatusOf(err) == http.StatusRequestEntityTooLarge {
			lost.reason = lostTooLarge
		}
		return s.attachmentLost(ctx, th, txn, lost, err)
	}
	return s.send(ctx, th, sender, txn, event.EventMessage, content, false)
}

// isUploadRefused tells a refusal of the homeserver that another try of the
// same upload cannot change: too large, forbidden, or any other 4xx answer
// but "too many requests" and "timeout".
func isUploadRefused(err error) bool {
	if errors.Is(err, bridgev2.ErrMediaTooLarge) || errors.Is(err, mautrix.MTooLarge) || errors.Is(err, mautrix.MForbidden) {
		return true
	}
	code := httpStatusOf(err)
	return code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout
}

func httpStatusOf(err error) int {
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.Response != nil {
		return httpErr.Response.StatusCode
	}
	return 0
}

// Why an attachment could not be brought over.
const (
	lostTooLarge   = "too_large"
	lostFileType   = "file_type"
	lostExpired    = "expired"
	lostNotMeta    = "not_meta"
	lostHomeserver = "homeserver"
)

// lostAttachment is what the room is told of an attachment that could not
// be brought over: no URL, no name, only its kind, size and why.
type lostAttachment struct {
	kind, reason, mimeType string
	size, limit            int64
}

// lostTxnID is the transaction of the notice that stands for an attachment
// (the bot's own, never the person's ghost's: homeservers de-duplicate on
// the transaction ID alone).
func lostTxnID(txn string) string { return txn + "-lost" }

// attachmentLost puts the notice for an attachment in the room, from the bot.
func (s *Social) attachmentLost(ctx context.Context, th *SocialConversation, txn string, lost lostAttachment, cause error) (id.EventID, error) {
	s.Metrics.Error(ErrKindMetaDownload)
	s.log.Warn().Str("reason", lost.reason).Str("class", string(meta.ClassOf(cause))).Str("type", lost.kind).Int64("bytes", lost.size).
		Msg("An attachment could not be brought over from Meta; the room is told")
	lang := s.Config.validatedLanguage
	size := ""
	if lost.size > 0 {
		size = ", " + lang.fileSize(lost.size)
	}
	var why string
	switch lost.reason {
	case lostTooLarge:
		why = lang.T(msgSocialWhyTooLarge, lang.fileSize(lost.limit))
		if lost.limit <= 0 {
			why = lang.T(msgSocialWhyHomeserver)
		}
	case lostFileType:
		why = lang.T(msgSocialWhyFileType, lost.mimeType)
	case lostNotMeta:
		why = lang.T(msgSocialWhyNotMeta)
	case lostHomeserver:
		why = lang.T(msgSocialWhyHomeserver)
	default:
		why = lang.T(msgSocialWhyExpired)
	}
	text := lang.T(msgSocialAttachmentNotBrought, lang.T(attachmentNoun(lost.kind)), size, why)
	return s.send(ctx, th, "", lostTxnID(txn), event.EventMessage, &event.Content{Parsed: renderNotice(text)}, false)
}

// attachmentNoun names an attachment's kind for officers.
func attachmentNoun(t string) messageKey {
	switch t {
	case "image":
		return msgSocialNounImage
	case "video", "reel", "ig_reel":
		return msgSocialNounVideo
	case "audio":
		return msgSocialNounAudio
	case "story_mention":
		return msgSocialNounStory
	}
	return msgSocialNounFile
}

func attachmentWord(t string) string {
	switch t {
	case "image":
		return "bilde"
	case "video", "reel", "ig_reel":
		return "video"
	case "audio":
		return "lyd"
	case "story_mention":
		return "story"
	}
	return "vedlegg"
}

func (s *Social) sendText(ctx context.Context, th *SocialConversation, sender, txn, text string, replyTo id.EventID, again bool) (id.EventID, error) {
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: text}
	if replyTo != "" {
		content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(replyTo)
	}
	return s.send(ctx, th, sender, txn, event.EventMessage, &event.Content{Parsed: content}, again)
}

// send sends one event; on a retry it first looks whether an earlier try
// got it into the room.
func (s *Social) send(ctx context.Context, th *SocialConversation, sender, txn string, evtType event.Type, content *event.Content, again bool) (id.EventID, error) {
	if again {
		if mx, err := s.room.FindSentAs(ctx, th.RoomID, sender, txn); err != nil {
			return "", retry(err)
		} else if mx != "" {
			return mx, nil
		}
	}
	if sender != "" {
		withoutMentions(content)
	}
	mx, err := s.room.SendAs(quietContext(ctx), th.RoomID, sender, txn, evtType, content)
	if err != nil {
		return "", retry(err)
	}
	return mx, nil
}

// showRead marks the unit's messages the person has seen: on Messenger up to
// a time (watermark), on Instagram one message.
func (s *Social) showRead(ctx context.Context, th *SocialConversation, e meta.Event) error {
	var target id.EventID
	if e.Read.MID != "" {
		stored, err := s.DB.SocialEvent.Get(ctx, e.Read.MID)
		if err != nil {
			return retry(err)
		} else if stored == nil || stored.Direction != "out" {
			return nil
		}
		target = stored.MatrixEventID
	} else {
		latest, err := s.DB.SocialEvent.LatestOutboundUpTo(ctx, th.ID, e.Read.Watermark.Time())
		if err != nil {
			return retry(err)
		} else if latest == nil {
			return nil
		}
		target = latest.MatrixEventID
	}
	if target == "" {
		return nil
	}
	if err := s.room.MarkRead(ctx, th.RoomID, th.GhostID, target); err != nil {
		return retry(err)
	}
	return nil
}

var reactionEmoji = map[string]string{
	"love": "❤️", "like": "👍", "dislike": "👎", "smile": "😆", "laugh": "😆", "wow": "😮", "sad": "😢", "angry": "😠",
}

// showReaction puts the person's reaction on the message, or takes it away.
func (s *Social) showReaction(ctx context.Context, th *SocialConversation, e meta.Event, eventID string, again bool) (id.EventID, error) {
	target, err := s.matrixEventOf(ctx, e.Reaction.MID)
	if err != nil || target == "" {
		return "", err
	}
	// The person's current reaction to a message is kept under its own key.
	reactionKey := "reaction:" + th.ID + ":" + e.Reaction.MID
	if e.Reaction.Action == "unreact" {
		prev, err := s.DB.SocialEvent.Get(ctx, reactionKey)
		if err != nil {
			return "", retry(err)
		} else if prev == nil || prev.MatrixEventID == "" {
			return "", nil
		}
		redaction := &event.Content{Parsed: &event.RedactionEventContent{Redacts: prev.MatrixEventID}}
		mx, err := s.send(ctx, th, th.GhostID, socialTxnID(eventID, 0), event.EventRedaction, redaction, again)
		if err == nil {
			err = retry(s.DB.SocialEvent.Finish(ctx, reactionKey, ""))
		}
		return mx, err
	}
	emoji := e.Reaction.Emoji
	if emoji == "" {
		emoji = reactionEmoji[e.Reaction.Reaction]
	}
	if emoji == "" {
		emoji = "❓"
	}
	content := &event.Content{Parsed: &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: target, Key: emoji}}}
	mx, err := s.send(ctx, th, th.GhostID, socialTxnID(eventID, 0), event.EventReaction, content, again)
	if err != nil {
		return "", err
	}
	if _, _, err = s.DB.SocialEvent.Claim(ctx, &scdb.SocialEvent{EventID: reactionKey, SocialID: th.ID, Direction: "in", Kind: "reaction_state", At: e.Time}); err != nil {
		return "", retry(err)
	}
	return mx, retry(s.DB.SocialEvent.Finish(ctx, reactionKey, mx))
}

// isOwnEcho recognises what the bridge itself sent (its outbox entry names
// itself in metadata; Meta echoes it with the app's ID) and records Meta's
// message ID for it, so that the person's reads can be shown on it.
func (s *Social) isOwnEcho(ctx context.Context, th *SocialConversation, e meta.Event, eventID string) bool {
	if socialID, seq, ok := parseOutboxMetadata(e.Message.Metadata); ok && socialID == th.ID {
		s.outboxEchoed(ctx, th, seq, eventID)
		return true
	}
	return string(e.Message.AppID) != "" && string(e.Message.AppID) == s.Config.Meta.AppID
}
