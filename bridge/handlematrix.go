package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/meta"
)

var (
	_ bridgev2.NetworkAPI                    = (*OfficerClient)(nil)
	_ bridgev2.EditHandlingNetworkAPI        = (*OfficerClient)(nil)
	_ bridgev2.RedactionHandlingNetworkAPI   = (*OfficerClient)(nil)
	_ bridgev2.TypingHandlingNetworkAPI      = (*OfficerClient)(nil)
	_ bridgev2.ReadReceiptHandlingNetworkAPI = (*OfficerClient)(nil)
)

// Officers is what officers' messages do on the guest side: kept for the
// page (sealed), revised by edits and deletions, read receipts shown.
type Officers struct {
	*Connector
}

// OfficerClient is an officer's side of the bridge: what they write in a
// conversation room is handed to the guest side here, already decrypted by bridgev2.
type OfficerClient struct {
	Connector *Connector
	Login     *bridgev2.UserLogin
}

func (oc *OfficerClient) Connect(ctx context.Context) {
	oc.Login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnected})
}

func (oc *OfficerClient) Disconnect() {}

func (oc *OfficerClient) IsLoggedIn() bool { return true }

func (oc *OfficerClient) LogoutRemote(ctx context.Context) {}

// IsThisUser: officers are Matrix users, never guests.
func (oc *OfficerClient) IsThisUser(ctx context.Context, userID networkid.UserID) bool {
	return false
}

func (oc *OfficerClient) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	// The room is made by sikkerchat itself with its full policy, so there is
	// nothing for bridgev2 to sync from the "remote" side.
	return &bridgev2.ChatInfo{}, nil
}

func (oc *OfficerClient) GetUserInfo(ctx context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	return nil, nil
}

var errNotConversation = bridgev2.WrapErrorInStatus(errors.New("this room is not an open sikkerchat conversation")).
	WithIsCertain(true).WithErrorAsMessage().WithSendNotice(true)

// keepOfficerFile downloads (and decrypts) an officer's attachment and keeps
// it sealed for the guest to download.
func (oc *OfficerClient) keepOfficerFile(ctx context.Context, conv *Conversation, msg *bridgev2.MatrixMessage, entry *TranscriptEntry) error {
	if existing, err := oc.Connector.Transcript.ByEvent(ctx, conv.ID, msg.Event.ID); err != nil {
		return err
	} else if existing != nil {
		*entry = *existing
		return nil
	}
	data, err := oc.Connector.Bridge.Bot.DownloadMedia(ctx, msg.Content.URL, msg.Content.File)
	if err != nil {
		return fmt.Errorf("failed to download officer file: %w", err)
	}
	name := msg.Content.FileName
	if name == "" {
		name = msg.Content.Body
	}
	info, err := oc.Connector.Officers.StoreFile(ctx, conv.ID, name, data)
	if err != nil {
		return err
	}
	entry.Kind, entry.Text, entry.Extra = "file", "", info.Extras()
	if msg.Content.FileName != "" && msg.Content.Body != msg.Content.FileName {
		entry.Text = msg.Content.Body // a caption
	}
	return nil
}

// senderName is the officer's display name when the unit shows it to guests.
func (oc *OfficerClient) senderName(ctx context.Context, msg *bridgev2.MatrixMessage) string {
	if !oc.Connector.Config.ShowOfficerNames {
		return ""
	}
	member, err := oc.Connector.Bridge.Matrix.GetMemberInfo(ctx, msg.Portal.MXID, msg.Event.Sender)
	if err != nil || member == nil {
		return ""
	}
	return member.Displayname
}

var errUnsupportedMessage = bridgev2.WrapErrorInStatus(errors.New("this kind of message can't be shown to the guest yet")).
	WithIsCertain(true).WithErrorAsMessage().WithSendNotice(true)

func (oc *OfficerClient) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (resp *bridgev2.MatrixMessageResponse, err error) {
	defer func() { oc.Connector.Inbox.finish(ctx, msg.Event.ID, err) }()
	log := zerolog.Ctx(ctx)
	conv, err := oc.Connector.DB.Conversation.Get(ctx, string(msg.Portal.ID))
	if err != nil {
		return nil, fmt.Errorf("failed to get conversation: %w", err)
	} else if conv == nil {
		return oc.handleSocialMessage(ctx, msg)
	} else if conv.Status == StatusClosed || conv.Status == StatusExpired {
		return nil, errNotConversation
	}
	entry := &TranscriptEntry{
		Direction:     ToGuest,
		MatrixEventID: msg.Event.ID,
		CreatedAt:     time.UnixMilli(msg.Event.Timestamp),
		Kind:          "text",
		Text:          msg.Content.Body,
		SenderName:    oc.senderName(ctx, msg),
	}
	// Guest messages are not in bridgev2's message table (the outbox sends them),
	// so replies are resolved against the transcript by event ID.
	if replyTo := msg.Content.RelatesTo.GetReplyTo(); replyTo != "" {
		if target, err := oc.Connector.Transcript.ByEvent(ctx, conv.ID, replyTo); err == nil && target != nil {
			entry.ReplyTo = target.Seq
		}
	}
	switch msg.Content.MsgType {
	case event.MsgText, event.MsgNotice, event.MsgEmote:
	case event.MsgImage, event.MsgFile, event.MsgVideo, event.MsgAudio:
		if err = oc.keepOfficerFile(ctx, conv, msg, entry); err != nil {
			return nil, err
		}
	default:
		return nil, errUnsupportedMessage
	}
	isNew, err := oc.Connector.Transcript.Append(ctx, conv.ID, entry)
	if errors.Is(err, ErrConversationNotOpen) {
		return nil, errNotConversation // closed while the message was on its way
	} else if err != nil {
		return nil, fmt.Errorf("failed to keep officer message for the guest: %w", err)
	}
	if isNew {
		kind := "text"
		if entry.Kind == "file" {
			kind = "file"
		}
		oc.Connector.Metrics.Messages.WithLabelValues(DirToGuest, kind).Inc()
		oc.Connector.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventMessage, Entry: entry})
	}
	log.Debug().Str("conversation_id", conv.ID).Int64("seq", entry.Seq).Bool("new", isNew).Msg("Officer message kept for the guest")
	return &bridgev2.MatrixMessageResponse{
		DB: &database.Message{
			ID:        networkid.MessageID(msg.Event.ID),
			SenderID:  networkid.UserID(oc.Login.ID),
			Timestamp: entry.CreatedAt,
		},
	}, nil
}

// HandleMatrixTyping shows the guest that the police are writing.
func (oc *OfficerClient) HandleMatrixTyping(ctx context.Context, msg *bridgev2.MatrixTyping) error {
	if th := oc.socialOf(ctx, msg.Portal); th != nil {
		action := meta.ActionTypingOff
		if msg.IsTyping {
			action = meta.ActionTypingOn
		}
		oc.Connector.spawn(func() { oc.Connector.Social.SenderAction(context.WithoutCancel(ctx), th, action) })
		return nil
	}
	oc.Connector.Hub.Publish(string(msg.Portal.ID), GuestEvent{Kind: GuestEventTyping, Typing: msg.IsTyping})
	return nil
}

// HandleMatrixReadReceipt marks the guest's messages up to the receipt as read.
func (oc *OfficerClient) HandleMatrixReadReceipt(ctx context.Context, msg *bridgev2.MatrixReadReceipt) error {
	if th := oc.socialOf(ctx, msg.Portal); th != nil {
		oc.Connector.spawn(func() { oc.Connector.Social.SenderAction(context.WithoutCancel(ctx), th, meta.ActionMarkSeen) })
		return nil
	}
	return oc.Connector.Officers.Read(ctx, string(msg.Portal.ID), msg.EventID)
}

// HandleMatrixEdit shows the guest the new text in place of the old. Only
// the officer who wrote a message can change it: what a colleague said stays
// as they said it (Matrix clients ignore such edits; the guest page must too).
func (oc *OfficerClient) HandleMatrixEdit(ctx context.Context, msg *bridgev2.MatrixEdit) (err error) {
	defer func() { oc.Connector.Inbox.finish(ctx, msg.Event.ID, err) }()
	if th := oc.socialOf(ctx, msg.Portal); th != nil {
		// Meta's Send API cannot change a sent message.
		lang := oc.Connector.Config.validatedLanguage
		return bridgev2.WrapErrorInStatus(errors.New(lang.T(msgSocialNoEdit, platformName(meta.Platform(th.Platform))))).
			WithIsCertain(true).WithErrorAsMessage().WithSendNotice(true)
	}
	if msg.EditTarget.SenderMXID != msg.Event.Sender {
		zerolog.Ctx(ctx).Warn().Stringer("sender", msg.Event.Sender).Stringer("author", msg.EditTarget.SenderMXID).
			Msg("Refused an edit of another officer's message")
		return bridgev2.WrapErrorInStatus(errors.New(oc.Connector.Config.validatedLanguage.T(msgEditNotOwn))).
			WithIsCertain(true).WithErrorAsMessage().WithSendNotice(true)
	}
	return oc.Connector.Officers.Revise(ctx, string(msg.Portal.ID), msg.EditTarget.MXID, func(e *TranscriptEntry) {
		e.Text = msg.Content.Body
		e.Edited = true
	})
}

// HandleMatrixMessageRemove takes a deleted message away from the guest's
// page. The room's power levels let officers redact only their own messages;
// a redaction by anyone else (the bot's level) is not shown to the guest as
// the author taking it back.
func (oc *OfficerClient) HandleMatrixMessageRemove(ctx context.Context, msg *bridgev2.MatrixMessageRemove) (err error) {
	defer func() { oc.Connector.Inbox.finish(ctx, msg.Event.ID, err) }()
	if th := oc.socialOf(ctx, msg.Portal); th != nil {
		// Meta's Send API cannot take a message back: the person keeps it.
		lang := oc.Connector.Config.validatedLanguage
		oc.Connector.Social.noticeReply(ctx, th.RoomID, "", lang.T(msgSocialNoUnsend, platformName(meta.Platform(th.Platform))))
		return nil
	}
	if msg.TargetMessage.SenderMXID != msg.Event.Sender {
		zerolog.Ctx(ctx).Warn().Stringer("sender", msg.Event.Sender).Msg("Not showing the guest a redaction of someone else's message")
		return nil
	}
	return oc.Connector.Officers.Revise(ctx, string(msg.Portal.ID), msg.TargetMessage.MXID, func(e *TranscriptEntry) {
		e.Text, e.Extra, e.Deleted = "", nil, true
	})
}

// OfficerRead notes that an officer has read the room up to an event: every
// guest message delivered at or before that event's place shows as read. A
// receipt for an event the transcript does not know (a bot notice) moves nothing.
func (of *Officers) Read(ctx context.Context, conversationID string, eventID id.EventID) error {
	conv, err := of.DB.Conversation.Get(ctx, conversationID)
	if err != nil || conv == nil {
		return err
	}
	upTo, err := of.DB.Transcript.SeqOf(ctx, conv.ID, eventID)
	if err != nil || upTo == 0 {
		return err
	}
	seqs, err := of.DB.Transcript.DeliveredFromGuest(ctx, conv.ID, conv.OfficerReadSeq, upTo)
	if err != nil {
		return fmt.Errorf("failed to find read guest messages: %w", err)
	} else if len(seqs) == 0 {
		return nil
	}
	if err = of.DB.Conversation.SetOfficerRead(ctx, conv.ID, seqs[len(seqs)-1]); err != nil {
		return fmt.Errorf("failed to save officer read position: %w", err)
	}
	for _, seq := range seqs {
		entry, err := of.Transcript.BySeq(ctx, conv.ID, seq)
		if err != nil || entry == nil {
			continue
		}
		entry.Status = EntryRead
		of.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventStatus, Entry: entry})
	}
	return nil
}

// ReviseOfficerMessage changes an officer message the guest has (an edit or a
// deletion) and shows the change on open pages.
func (of *Officers) Revise(ctx context.Context, conversationID string, eventID id.EventID, fn func(*TranscriptEntry)) error {
	var fileID string
	entry, err := of.Transcript.Revise(ctx, conversationID, eventID, func(e *TranscriptEntry) {
		if info, ok := FileInfoOf(e); ok {
			fileID = info.ID
		}
		fn(e)
	})
	if err != nil {
		return err
	} else if entry == nil {
		return nil // not something the guest has
	}
	if entry.Deleted && fileID != "" {
		// A deleted file goes with its message.
		if err = of.DB.File.Delete(ctx, conversationID, fileID); err != nil {
			return fmt.Errorf("failed to delete file of deleted message: %w", err)
		}
	}
	of.Hub.Publish(conversationID, GuestEvent{Kind: GuestEventMessage, Entry: entry, Revision: true})
	return nil
}

// StoreFileForGuest keeps a file an officer sent, sealed, for the guest to download.
func (of *Officers) StoreFile(ctx context.Context, conversationID, name string, data []byte) (FileInfo, error) {
	mimeType := DetectFileType(data[:min(len(data), 512)])
	sum := sha256.Sum256(data)
	info := FileInfo{ID: "o" + randomID(16), Name: SafeFileName(name, mimeType), Mime: mimeType, Size: len(data), SHA256: hex.EncodeToString(sum[:])}
	return info, of.Transcript.storeFile(ctx, conversationID, info.ID, data)
}

// socialOf is the open patrol inbox conversation of a portal (nil for any
// other portal, or without the patrol inbox).
func (oc *OfficerClient) socialOf(ctx context.Context, portal *bridgev2.Portal) *SocialConversation {
	if oc.Connector.Social == nil || portal == nil {
		return nil
	}
	th, err := oc.Connector.DB.Social.Get(ctx, string(portal.ID))
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to look up a social conversation")
		return nil
	}
	return th
}

// handleSocialMessage queues an officer's message in a patrol inbox room for
// the person on Messenger or Instagram.
func (oc *OfficerClient) handleSocialMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	th := oc.socialOf(ctx, msg.Portal)
	if th == nil {
		return nil, errNotConversation
	}
	if err := oc.Connector.Social.HandleOfficerMessage(ctx, th, msg); err != nil {
		return nil, err
	}
	return &bridgev2.MatrixMessageResponse{
		DB: &database.Message{
			ID:        networkid.MessageID(msg.Event.ID),
			SenderID:  networkid.UserID(oc.Login.ID),
			Timestamp: time.UnixMilli(msg.Event.Timestamp),
		},
	}, nil
}
