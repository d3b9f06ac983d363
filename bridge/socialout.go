package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
	"github.com/sikkerchat/sikkerchat/meta"
)

// outboxItem is what an outbox entry carries (sealed with the conversation
// key): text, or a Matrix file to fetch and upload when it is sent.
type outboxItem struct {
	Text string `json:"text,omitempty"`
	// File is the officer's Matrix media (encrypted on the homeserver).
	FileURL  id.ContentURIString      `json:"file_url,omitempty"`
	FileKeys *event.EncryptedFileInfo `json:"file_keys,omitempty"`
	FileName string                   `json:"file_name,omitempty"`
	FileMime string                   `json:"file_mime,omitempty"`
	// Notice: the room is told when it went (the link and code word of a move).
	Notice string `json:"notice,omitempty"`
}

// echoGrace is how long an entry that may have reached Meta (the bridge
// stopped during its call, or the call timed out) waits for Meta's echo
// before it is sent again: the echo names the entry in its metadata, so an
// entry Meta has is never sent twice.
const echoGrace = 90 * time.Second

// outboxMetadata names an entry in the metadata Meta echoes back.
func outboxMetadata(socialID string, seq int64) string {
	return fmt.Sprintf("sikkerchat:%s:%d", socialID, seq)
}

func parseOutboxMetadata(md string) (socialID string, seq int64, ok bool) {
	rest, ok := strings.CutPrefix(md, "sikkerchat:")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil || seq <= 0 {
		return "", 0, false
	}
	return rest[:i], seq, true
}

var (
	errSocialClosed      = bridgev2.WrapErrorInStatus(errors.New("the social conversation is closed")).WithIsCertain(true).WithErrorAsMessage().WithSendNotice(false)
	errSocialWindow      = bridgev2.WrapErrorInStatus(errors.New("outside Meta's messaging window")).WithIsCertain(true).WithErrorAsMessage().WithSendNotice(false)
	errSocialUnsupported = bridgev2.WrapErrorInStatus(errors.New("this kind of message can't be sent to Meta")).WithIsCertain(true).WithErrorAsMessage().WithSendNotice(false)
	errSocialTextTooLong = bridgev2.WrapErrorInStatus(errors.New("the message is longer than Meta takes")).WithIsCertain(true).WithErrorAsMessage().WithSendNotice(false)
)

// refuseOutsideWindow tells the officer why nothing can be sent now; false
// when a reply may go.
func (s *Social) refuseOutsideWindow(ctx context.Context, th *SocialConversation, replyTo id.EventID) bool {
	lang := s.Config.validatedLanguage
	if _, _, _, _, ok := meta.Window(th.LastInboundAt, s.now(), s.Config.Meta.HumanAgent); ok {
		return false
	}
	last := formatTime(th.LastInboundAt, lang)
	text := lang.T(msgSocialWindowClosed, last)
	if !s.Config.Meta.HumanAgent && s.now().Before(th.LastInboundAt.Add(meta.HumanAgentWindow)) {
		text = lang.T(msgSocialNoHumanAgent, last)
	}
	s.noticeReply(ctx, th.RoomID, replyTo, text)
	return true
}

func (s *Social) noticeReply(ctx context.Context, roomID id.RoomID, replyTo id.EventID, text string) {
	content := renderNotice(text)
	if replyTo != "" {
		content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(replyTo)
	}
	if _, err := s.room.SendAs(ctx, roomID, "", "notice-"+randomID(8), event.EventMessage, &event.Content{Parsed: content}); err != nil {
		s.log.Warn().Err(err).Msg("Failed to send a notice to a social conversation room")
	}
}

// HandleOfficerMessage queues an officer's message for the person. It is
// refused at once (and the officer told) when Meta would not take it now.
func (s *Social) HandleOfficerMessage(ctx context.Context, th *SocialConversation, msg *bridgev2.MatrixMessage) error {
	lang := s.Config.validatedLanguage
	if th.Status != scdb.SocialOpen {
		s.noticeReply(ctx, th.RoomID, msg.Event.ID, lang.T(msgSocialNotSent, lang.T(msgSocialWhyClosed)))
		return errSocialClosed
	}
	if s.refuseOutsideWindow(ctx, th, msg.Event.ID) {
		return errSocialWindow
	}
	item := outboxItem{}
	switch msg.Content.MsgType {
	case event.MsgText, event.MsgNotice, event.MsgEmote:
		item.Text = msg.Content.Body
		if !meta.TextFits(meta.Platform(th.Platform), item.Text) {
			s.noticeReply(ctx, th.RoomID, msg.Event.ID, lang.T(msgSocialNotSent, lang.T(msgSocialWhyRefused)))
			return errSocialTextTooLong
		}
	case event.MsgImage, event.MsgFile, event.MsgVideo, event.MsgAudio:
		item.FileURL, item.FileKeys = msg.Content.URL, msg.Content.File
		if item.FileKeys != nil {
			item.FileURL = item.FileKeys.URL
		}
		item.FileName = msg.Content.FileName
		if item.FileName == "" {
			item.FileName = msg.Content.Body
		}
		if msg.Content.Info != nil {
			item.FileMime = msg.Content.Info.MimeType
		}
	default:
		s.noticeReply(ctx, th.RoomID, msg.Event.ID, lang.T(msgSocialCannotSend, platformName(meta.Platform(th.Platform))))
		return errSocialUnsupported
	}
	return s.enqueue(ctx, th, string(msg.Event.ID), item)
}

// enqueue stores an entry (once per source) and wakes the sender.
func (s *Social) enqueue(ctx context.Context, th *SocialConversation, sourceID string, item outboxItem) error {
	plain, err := json.Marshal(item)
	if err != nil {
		return err
	}
	sealed, err := s.sealFor(ctx, th.ID, "outbox:"+sourceID, plain)
	if err != nil {
		return err
	}
	if _, _, err = s.DB.SocialOutbox.Enqueue(ctx, &scdb.SocialOutboxEntry{
		SocialID: th.ID, SourceID: sourceID, CreatedAt: s.now(), NextAttemptAt: s.now(), Sealed: sealed,
	}); err != nil {
		return fmt.Errorf("failed to queue the message for Meta: %w", err)
	}
	s.kick(s.sendWake)
	return nil
}

// runOutbox sends what officers wrote, one conversation after another and in
// order within each, retrying what Meta could not take yet.
func (s *Social) runOutbox(ctx context.Context) {
	st := &outboxState{attempted: map[string]time.Time{}, started: s.now()}
	for {
		wait := s.sendWaiting(ctx, st)
		select {
		case <-ctx.Done():
			return
		case <-s.sendWake:
		case <-time.After(wait):
		}
	}
}

type outboxState struct {
	// attempted: entries this process called Meta for whose answer it lost.
	attempted map[string]time.Time
	started   time.Time
	// tokenWarned: pages whose token Meta refused (the officer was told once).
	tokenWarned map[string]bool
}

// sendWaiting sends every entry that is due; it returns how long to wait
// before looking again.
func (s *Social) sendWaiting(ctx context.Context, st *outboxState) time.Duration {
	entries, err := s.DB.SocialOutbox.Waiting(ctx)
	if err != nil {
		s.log.Err(err).Msg("Failed to read the patrol inbox's outbox")
		return 5 * time.Second
	}
	next := time.Minute
	blocked := map[string]bool{}
	for _, e := range entries {
		if ctx.Err() != nil || blocked[e.SocialID] {
			continue
		}
		wait := s.sendEntry(ctx, st, e)
		if wait > 0 {
			// Later entries of the conversation wait for this one: order is kept.
			blocked[e.SocialID] = true
			next = min(next, wait)
		}
	}
	return next
}

// sendEntry sends one entry; a positive duration means it is not done and
// when to look again.
func (s *Social) sendEntry(ctx context.Context, st *outboxState, e *scdb.SocialOutboxEntry) time.Duration {
	now := s.now()
	if e.NextAttemptAt.After(now) {
		return e.NextAttemptAt.Sub(now)
	}
	key := fmt.Sprintf("%s/%d", e.SocialID, e.Seq)
	if e.State == scdb.OutboxSending {
		// An earlier call may have reached Meta: give its echo time to say so.
		since, ok := st.attempted[key]
		if !ok {
			since = st.started
		}
		if wait := since.Add(echoGrace).Sub(now); wait > 0 {
			return wait
		}
	}
	th, err := s.DB.Social.Get(ctx, e.SocialID)
	if err != nil {
		return 5 * time.Second
	}
	lang := s.Config.validatedLanguage
	if th == nil || th.Status != scdb.SocialOpen {
		_ = s.DB.SocialOutbox.MarkFailed(ctx, e.SocialID, e.Seq)
		return 0
	}
	source := id.EventID("")
	if strings.HasPrefix(e.SourceID, "$") {
		source = id.EventID(e.SourceID)
	}
	_, messagingType, tag, _, ok := meta.Window(th.LastInboundAt, now, s.Config.Meta.HumanAgent)
	if !ok {
		_ = s.DB.SocialOutbox.MarkFailed(ctx, e.SocialID, e.Seq)
		s.Metrics.Error(ErrKindMetaNotSent)
		s.refuseOutsideWindow(ctx, th, source)
		return 0
	}
	page, _ := s.Config.Meta.page(th.AccountID)
	person, err := s.person(ctx, th)
	if err != nil {
		s.log.Err(err).Str("social_id", th.ID).Msg("Failed to open the person's ID")
		_ = s.DB.SocialOutbox.MarkFailed(ctx, e.SocialID, e.Seq)
		return 0
	}
	plain, err := s.openFor(ctx, th.ID, "outbox:"+e.SourceID, e.Sealed)
	var item outboxItem
	if err == nil {
		err = json.Unmarshal(plain, &item)
	}
	if err != nil {
		s.log.Err(err).Str("social_id", th.ID).Msg("Failed to open an outbox entry")
		_ = s.DB.SocialOutbox.MarkFailed(ctx, e.SocialID, e.Seq)
		return 0
	}
	req := meta.Text(person, item.Text, messagingType, tag)
	if item.FileURL != "" {
		data, err := s.room.Download(ctx, item.FileURL, item.FileKeys)
		if err != nil {
			s.log.Warn().Err(err).Msg("Failed to fetch an officer's file for Meta; trying again")
			_ = s.DB.SocialOutbox.Retry(ctx, e.SocialID, e.Seq, now.Add(backoffFor(e.Attempts)))
			return backoffFor(e.Attempts)
		}
		mimeType := DetectFileType(data)
		if !FileTypeAllowed(mimeType) {
			mimeType = "application/octet-stream"
		}
		req = meta.File(person, messagingType, tag, SafeFileName(item.FileName, mimeType), mimeType, data)
	}
	req.Message.Metadata = outboxMetadata(e.SocialID, e.Seq)
	if err = s.DB.SocialOutbox.MarkSending(ctx, e.SocialID, e.Seq); err != nil {
		return 5 * time.Second
	}
	if !s.active() {
		return 5 * time.Second
	}
	st.attempted[key] = now
	resp, err := s.graph.Send(ctx, sendAccount(th, page), page.AccessToken, req)
	if err == nil {
		delete(st.attempted, key)
		s.recordSent(ctx, th, e, source, resp.MessageID)
		if item.Notice != "" {
			s.room.SocialNotice(ctx, th.RoomID, item.Notice)
		}
		s.Metrics.Messages.WithLabelValues(DirToSocial, outboxKind(item)).Inc()
		return 0
	}
	class := meta.ClassOf(err)
	log := s.log.With().Str("social_id", th.ID).Str("class", string(class)).Int("attempts", e.Attempts+1).Logger()
	var graphErr *meta.Error
	answered := errors.As(err, &graphErr)
	switch class {
	case meta.ClassTransient, meta.ClassRateLimited:
		s.Metrics.Error(ErrKindMetaSend)
		log.Warn().Err(err).Msg("Meta did not take a message yet; trying again")
		wait := backoffFor(e.Attempts)
		if answered {
			// Meta answered with an error, so it does not have the message: no echo to wait for.
			delete(st.attempted, key)
			_ = s.DB.SocialOutbox.Retry(ctx, e.SocialID, e.Seq, now.Add(wait))
		}
		// Otherwise (no answer) the call may have reached Meta: the entry stays
		// "sending" and waits for an echo before it is sent again.
		return wait
	case meta.ClassToken, meta.ClassPermission:
		// The operator must act; the message waits for a working token.
		s.Metrics.Error(ErrKindMetaToken)
		log.Error().Err(err).Str("page", page.PageID).Msg("Meta refused the page's access token or the app's permissions; messages wait")
		delete(st.attempted, key)
		_ = s.DB.SocialOutbox.Retry(ctx, e.SocialID, e.Seq, now.Add(5*time.Minute))
		if st.tokenWarned == nil {
			st.tokenWarned = map[string]bool{}
		}
		if !st.tokenWarned[th.ID] {
			st.tokenWarned[th.ID] = true
			why := msgSocialWhyToken
			if class == meta.ClassPermission {
				why = msgSocialWhyPermission
			}
			s.noticeReply(ctx, th.RoomID, source, lang.T(msgSocialNotSent, lang.T(why)))
		}
		return 5 * time.Minute
	}
	// Refused for good: the officer is told why, and the next message goes.
	delete(st.attempted, key)
	_ = s.DB.SocialOutbox.MarkFailed(ctx, e.SocialID, e.Seq)
	s.Metrics.Error(ErrKindMetaNotSent)
	log.Warn().Err(err).Msg("Meta refused a message for good; the officer is told")
	why := lang.T(msgSocialWhyRefused)
	switch class {
	case meta.ClassWindowClosed:
		why = lang.T(msgSocialWhyWindow)
	case meta.ClassHumanAgentNotApproved:
		why = lang.T(msgSocialWhyHumanAgent)
		s.log.Error().Msg("Meta refused the HUMAN_AGENT tag: network.meta.human_agent is on, but the app does not have the feature")
	case meta.ClassUnavailable:
		why = lang.T(msgSocialWhyUnavailable, platformName(meta.Platform(th.Platform)))
	}
	s.noticeReply(ctx, th.RoomID, source, lang.T(msgSocialNotSent, why))
	return 0
}

// DirToSocial labels messages from officers to a person on Messenger or Instagram.
const DirToSocial = "to_social"

func outboxKind(item outboxItem) string {
	if item.FileURL != "" {
		return "file"
	}
	return "text"
}

// backoffFor is the wait before another try: 2 s doubling to 2 minutes.
func backoffFor(attempts int) time.Duration {
	wait := 2 * time.Second
	for range min(attempts, 6) {
		wait *= 2
	}
	return min(wait, 2*time.Minute)
}

// sendAccount is where a send goes: the Page's Send API, for the Page's
// Instagram account too (Messenger API for Instagram, recipient = IGSID).
func sendAccount(th *SocialConversation, page MetaPage) string {
	return page.PageID
}

// recordSent marks an entry sent and keeps Meta's message ID with the Matrix
// event it came from (the person's reads are shown on it).
func (s *Social) recordSent(ctx context.Context, th *SocialConversation, e *scdb.SocialOutboxEntry, source id.EventID, messageID string) {
	if _, err := s.DB.SocialOutbox.MarkSent(ctx, e.SocialID, e.Seq, messageID); err != nil {
		s.log.Err(err).Msg("Failed to mark an outbox entry sent")
	}
	if messageID == "" {
		return
	}
	if _, _, err := s.DB.SocialEvent.Claim(ctx, &scdb.SocialEvent{
		EventID: messageID, SocialID: th.ID, Direction: "out", Kind: string(meta.KindMessage), MatrixEventID: source, At: s.now(),
	}); err != nil {
		s.log.Err(err).Msg("Failed to record a sent message")
		return
	}
	if err := s.DB.SocialEvent.Finish(ctx, messageID, source); err != nil {
		s.log.Err(err).Msg("Failed to record a sent message")
	}
}

// outboxEchoed handles the echo of an entry: if the bridge lost the Send
// API's answer (a crash, a timeout), the echo is how it learns the entry
// reached Meta.
func (s *Social) outboxEchoed(ctx context.Context, th *SocialConversation, seq int64, messageID string) {
	e, err := s.DB.SocialOutbox.Get(ctx, th.ID, seq)
	if err != nil || e == nil {
		return
	}
	source := id.EventID("")
	if strings.HasPrefix(e.SourceID, "$") {
		source = id.EventID(e.SourceID)
	}
	if e.State != scdb.OutboxSent {
		s.log.Info().Str("social_id", th.ID).Int64("seq", seq).Msg("Meta's echo confirmed a message whose answer was lost")
		if _, err = s.DB.SocialOutbox.MarkSent(ctx, th.ID, seq, messageID); err != nil {
			s.log.Err(err).Msg("Failed to mark an echoed outbox entry sent")
		}
	}
	if err = s.DB.SocialEvent.Finish(ctx, messageID, source); err != nil {
		s.log.Err(err).Msg("Failed to record an echoed message")
	}
}

// SenderAction shows the person that the police are writing, or that they
// have seen the messages; best effort, and only while Meta allows replies.
func (s *Social) SenderAction(ctx context.Context, th *SocialConversation, action string) {
	// A former active (paused, or resumed from a frozen VM) sends nothing.
	if !s.active() || th.Status != scdb.SocialOpen {
		return
	}
	if _, _, _, _, ok := meta.Window(th.LastInboundAt, s.now(), s.Config.Meta.HumanAgent); !ok {
		return
	}
	person, err := s.person(ctx, th)
	if err != nil {
		return
	}
	page, _ := s.Config.Meta.page(th.AccountID)
	if _, err = s.graph.Send(ctx, sendAccount(th, page), page.AccessToken, meta.Action(person, action)); err != nil {
		s.log.Debug().Str("class", string(meta.ClassOf(err))).Str("action", action).Msg("Meta did not take a sender action")
	}
}
