package bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/appservice"
)

// MatrixSide is what the guest side needs done in a conversation room. The
// bridge implements it with bridgev2; handler tests use a recording double.
type MatrixSide interface {
	// SendGuestText sends text as the guest ghost, encrypted, with a transaction
	// ID derived from txnID so that a retry never makes a second event.
	SendGuestText(ctx context.Context, conv *Conversation, txnID, text string) (id.EventID, error)
	// SendGuestFile uploads a file as an encrypted attachment and sends it as the guest ghost.
	SendGuestFile(ctx context.Context, conv *Conversation, txnID string, info FileInfo, data []byte) (id.EventID, error)
	// FindSent looks in the room for a guest message that an earlier attempt,
	// whose answer never came, may have sent; "" when it is not there.
	FindSent(ctx context.Context, conv *Conversation, txnID string) (id.EventID, error)
	Notice(ctx context.Context, conv *Conversation, markdown string)
	// CloseRoom takes the guest ghost out of a closed conversation's room, marks
	// the room closed (name and state event) and tells the officers.
	CloseRoom(ctx context.Context, conv *Conversation, state *appservice.ConversationState, notice string)
	// ForgetRoom drops what the bridge holds of a purged room: the portal, its
	// message mappings, Megolm sessions, cached room state and the guest ghost
	// (whose profile on the homeserver is reset first: it may carry the label).
	ForgetRoom(ctx context.Context, conv *Conversation)
	// SendExport uploads an evidence package into the room as the bot, encrypted.
	SendExport(ctx context.Context, conv *Conversation, name string, data []byte) error
	// InviteOfficer brings a permitted colleague into the room at officer power.
	InviteOfficer(ctx context.Context, conv *Conversation, officer id.UserID) error
	UpdateState(ctx context.Context, conv *Conversation, state *appservice.ConversationState)
	GuestTyping(ctx context.Context, conv *Conversation, typing bool, timeout time.Duration)
	GuestRead(ctx context.Context, conv *Conversation, eventID id.EventID) error
	// BridgeMembers are the room's members that are the bridge's own: the bot
	// and the conversation's guest ghost.
	BridgeMembers(conv *Conversation) (bot, guest id.UserID)
	// RemoveMember kicks someone out of the room (or takes back their invite).
	RemoveMember(ctx context.Context, conv *Conversation, user id.UserID, reason string) error
	// GuardRoom brings the room's power levels up to the current policy and
	// returns who is joined or invited.
	GuardRoom(ctx context.Context, conv *Conversation) (map[id.UserID]event.Membership, error)
}

type bridgeMatrixSide struct {
	sc *Connector
}

var _ MatrixSide = (*bridgeMatrixSide)(nil)

func (b *bridgeMatrixSide) SendGuestText(ctx context.Context, conv *Conversation, txnID, text string) (id.EventID, error) {
	return b.sendAsGuest(ctx, conv, txnID, &event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: text}})
}

func (b *bridgeMatrixSide) SendGuestFile(ctx context.Context, conv *Conversation, txnID string, info FileInfo, data []byte) (id.EventID, error) {
	ghost := b.sc.Bridge.Matrix.GhostIntent(ghostIDOf(conv))
	content, err := uploadAttachment(ctx, ghost, conv.RoomID, event.MessageType(matrixMsgType(info.Mime)), info.Name, info.Mime, data)
	if err != nil {
		return "", fmt.Errorf("failed to upload guest file: %w", err)
	}
	return b.sendAsGuest(ctx, conv, txnID, content)
}

// uploadAttachment uploads a file (encrypted in an encrypted room) and returns
// the message that carries it, with `no.sikkerchat.sha256` of the original bytes.
func uploadAttachment(ctx context.Context, intent bridgev2.MatrixAPI, roomID id.RoomID, msgType event.MessageType, name, mimeType string, data []byte) (*event.Content, error) {
	// UploadMedia encrypts in place: keep the caller's bytes intact.
	url, file, err := intent.UploadMedia(ctx, roomID, bytes.Clone(data), name, mimeType)
	if err != nil {
		return nil, err
	}
	msg := &event.MessageEventContent{MsgType: msgType, Body: name, FileName: name,
		Info: &event.FileInfo{MimeType: mimeType, Size: len(data)}}
	if file != nil {
		if url != "" {
			file.URL = url
		}
		msg.File = file
	} else {
		msg.URL = url
	}
	sum := sha256.Sum256(data)
	return &event.Content{Parsed: msg, Raw: map[string]any{"no.sikkerchat.sha256": hex.EncodeToString(sum[:])}}, nil
}

func (b *bridgeMatrixSide) sendAsGuest(ctx context.Context, conv *Conversation, txnID string, content *event.Content) (id.EventID, error) {
	withoutMentions(content)
	return b.sendAs(ctx, conv.RoomID, conv.GhostID, txnID, event.EventMessage, content)
}

// withoutMentions gives a message written by a citizen an empty m.mentions
// (intentional mentions, Matrix v1.7): it mentions nobody, so no officer's
// client fires a legacy push rule on a name or a word a stranger typed.
func withoutMentions(content *event.Content) {
	msg, ok := content.Parsed.(*event.MessageEventContent)
	if !ok {
		return
	}
	msg.Mentions = &event.Mentions{}
	if msg.NewContent != nil {
		msg.NewContent.Mentions = &event.Mentions{}
	}
}

// sendAs sends an encrypted event as a ghost ("" for the bot).
func (b *bridgeMatrixSide) sendAs(ctx context.Context, roomID id.RoomID, ghostID, txnID string, evtType event.Type, content *event.Content) (id.EventID, error) {
	mc, ok := b.sc.Bridge.Matrix.(*matrix.Connector)
	if !ok || mc.Crypto == nil {
		return "", ErrEncryptionDisabled
	}
	intent, ok := b.socialIntent(ghostID)
	if !ok {
		return "", ErrEncryptionDisabled
	}
	if err := intent.Matrix.EnsureJoined(ctx, roomID); err != nil {
		return "", fmt.Errorf("failed to ensure the sender is joined: %w", err)
	}
	if err := mc.Crypto.Encrypt(ctx, roomID, evtType, content); err != nil {
		return "", fmt.Errorf("failed to encrypt message: %w", err)
	}
	// The transaction ID rides along outside the ciphertext (it is random and
	// says nothing): after a crash the outbox finds the event by it, because
	// homeservers forget transaction IDs of requests whose client went away.
	content.Raw = map[string]any{txnIDField: txnID}
	resp, err := intent.Matrix.SendMessageEvent(ctx, roomID, event.EventEncrypted, content, mautrix.ReqSendEvent{TransactionID: txnID})
	if err != nil {
		return "", fmt.Errorf("failed to send message: %w", err)
	}
	return resp.EventID, nil
}

// quietContext keeps a request's body out of debug logs: mautrix logs request
// bodies at debug level, and some carry what must never be logged (the
// officer's label, an invite link and code word).
func quietContext(ctx context.Context) context.Context {
	log := zerolog.Ctx(ctx)
	return log.Level(max(zerolog.InfoLevel, log.GetLevel())).WithContext(ctx)
}

// txnIDField carries the outbox's transaction ID in a guest message's event.
const txnIDField = "no.sikkerchat.txn_id"

// findSentPages bounds how far back FindSent looks (100 events a page): the
// message looked for is the conversation's oldest undelivered one, so only
// officers' messages can have come after it.
const findSentPages = 5

func (b *bridgeMatrixSide) FindSent(ctx context.Context, conv *Conversation, txnID string) (id.EventID, error) {
	return b.findSent(ctx, conv.RoomID, ghostIDOf(conv), txnID)
}

func (b *bridgeMatrixSide) findSent(ctx context.Context, roomID id.RoomID, ghostID networkid.UserID, txnID string) (id.EventID, error) {
	ghost, ok := b.socialIntent(string(ghostID))
	if !ok {
		return "", ErrEncryptionDisabled
	}
	from := ""
	for range findSentPages {
		resp, err := ghost.Matrix.Messages(ctx, roomID, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			return "", fmt.Errorf("failed to look for an earlier send: %w", err)
		}
		for _, evt := range resp.Chunk {
			if evt.Sender != ghost.Matrix.UserID {
				continue
			}
			if evt.Unsigned.TransactionID == txnID {
				return evt.ID, nil
			}
			if sent, _ := evt.Content.Raw[txnIDField].(string); sent == txnID {
				return evt.ID, nil
			}
		}
		if resp.End == "" || len(resp.Chunk) == 0 {
			break
		}
		from = resp.End
	}
	return "", nil
}

func (b *bridgeMatrixSide) Notice(ctx context.Context, conv *Conversation, markdown string) {
	if conv.RoomID == "" {
		return
	}
	_, err := b.sc.Bridge.Bot.SendMessage(ctx, conv.RoomID, event.EventMessage, &event.Content{Parsed: renderNotice(markdown)}, nil)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Str("conversation_id", conv.ID).Msg("Failed to send notice to conversation room")
	}
}

func (b *bridgeMatrixSide) UpdateState(ctx context.Context, conv *Conversation, state *appservice.ConversationState) {
	if conv.RoomID == "" {
		return
	}
	_, err := b.sc.Bridge.Bot.SendState(ctx, conv.RoomID, appservice.StateConversation, "", &event.Content{Parsed: state}, time.Time{})
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Str("conversation_id", conv.ID).Msg("Failed to update conversation state event")
	}
}

func (b *bridgeMatrixSide) GuestTyping(ctx context.Context, conv *Conversation, typing bool, timeout time.Duration) {
	if conv.RoomID == "" {
		return
	}
	ghost := b.sc.Bridge.Matrix.GhostIntent(ghostIDOf(conv))
	if err := ghost.MarkTyping(ctx, conv.RoomID, bridgev2.TypingTypeText, timeout); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to send guest typing")
	}
}

func (b *bridgeMatrixSide) GuestRead(ctx context.Context, conv *Conversation, eventID id.EventID) error {
	ghost := b.sc.Bridge.Matrix.GhostIntent(ghostIDOf(conv))
	return ghost.MarkRead(ctx, conv.RoomID, eventID, time.Now())
}

func (b *bridgeMatrixSide) CloseRoom(ctx context.Context, conv *Conversation, state *appservice.ConversationState, notice string) {
	if conv.RoomID == "" {
		return
	}
	log := zerolog.Ctx(ctx).With().Str("conversation_id", conv.ID).Logger()
	ghost := b.sc.Bridge.Matrix.GhostIntent(ghostIDOf(conv)).(*matrix.ASIntent)
	if _, err := ghost.Matrix.LeaveRoom(ctx, conv.RoomID); err != nil {
		log.Err(err).Msg("Failed to take the guest out of the closed room")
	}
	b.UpdateState(ctx, conv, state)
	bot := b.sc.botIntent()
	var name event.RoomNameEventContent
	if err := bot.Matrix.StateEvent(ctx, conv.RoomID, event.StateRoomName, "", &name); err == nil && !strings.HasPrefix(name.Name, closedMarker) {
		// The name may carry the officer's label: keep the request out of debug logs.
		quiet := quietContext(log.WithContext(ctx))
		_, err = b.sc.Bridge.Bot.SendState(quiet, conv.RoomID, event.StateRoomName, "", &event.Content{
			Parsed: &event.RoomNameEventContent{Name: closedMarker + name.Name},
		}, time.Time{})
		if err != nil {
			log.Err(err).Msg("Failed to mark the room name closed")
		}
	}
	b.Notice(ctx, conv, notice)
}

// closedMarker starts the name of a closed conversation's room.
const closedMarker = "[Avsluttet] "

func (b *bridgeMatrixSide) ForgetRoom(ctx context.Context, conv *Conversation) {
	log := zerolog.Ctx(ctx).With().Str("conversation_id", conv.ID).Logger()
	portal, err := b.sc.Bridge.GetExistingPortalByKey(ctx, networkid.PortalKey{ID: networkid.PortalID(conv.ID)})
	if err == nil && portal != nil {
		if err = portal.Delete(ctx); err != nil {
			log.Err(err).Msg("Failed to delete portal of purged room")
		}
	}
	if err = b.sc.DB.Bridge.ForgetRoom(ctx, conv.RoomID); err != nil {
		log.Err(err).Msg("Failed to drop bridge data of purged room")
	}
	// The guest's display name may be the officer's label: it goes from the
	// homeserver profile and from the bridge's ghost table.
	ghost := b.sc.Bridge.Matrix.GhostIntent(ghostIDOf(conv)).(*matrix.ASIntent)
	if err = ghost.Matrix.SetDisplayName(ctx, forgottenGuestName); err != nil {
		log.Err(err).Msg("Failed to reset the purged guest's profile")
	}
	if err = b.sc.DB.Bridge.DeleteGhost(ctx, string(b.sc.Bridge.ID), conv.GhostID); err != nil {
		log.Err(err).Msg("Failed to drop the purged guest's ghost")
	}
	if err = b.sc.DB.Bridge.Compact(ctx); err != nil {
		log.Warn().Err(err).Msg("Failed to checkpoint the write-ahead log after a purge")
	}
}

// forgottenGuestName is a purged guest's display name on the homeserver.
const forgottenGuestName = "Gjest"

func (b *bridgeMatrixSide) InviteOfficer(ctx context.Context, conv *Conversation, officer id.UserID) error {
	bot := b.sc.botIntent()
	var pl event.PowerLevelsEventContent
	if err := bot.Matrix.StateEvent(ctx, conv.RoomID, event.StatePowerLevels, "", &pl); err != nil {
		return fmt.Errorf("failed to read power levels: %w", err)
	}
	if pl.GetUserLevel(officer) < appservice.PowerOfficer {
		pl.SetUserLevel(officer, appservice.PowerOfficer)
		if _, err := bot.Matrix.SetPowerLevels(ctx, conv.RoomID, &pl); err != nil {
			return fmt.Errorf("failed to raise officer power level: %w", err)
		}
	}
	if err := b.sc.Bridge.Bot.EnsureInvited(ctx, conv.RoomID, officer); err != nil {
		return fmt.Errorf("failed to invite officer: %w", err)
	}
	return nil
}

func (b *bridgeMatrixSide) BridgeMembers(conv *Conversation) (bot, guest id.UserID) {
	return b.sc.Bridge.Bot.GetMXID(), b.sc.Bridge.Matrix.GhostIntent(ghostIDOf(conv)).GetMXID()
}

func (b *bridgeMatrixSide) RemoveMember(ctx context.Context, conv *Conversation, user id.UserID, reason string) error {
	bot := b.sc.botIntent()
	_, err := bot.Matrix.KickUser(ctx, conv.RoomID, &mautrix.ReqKickUser{UserID: user, Reason: reason})
	return err
}

func (b *bridgeMatrixSide) GuardRoom(ctx context.Context, conv *Conversation) (map[id.UserID]event.Membership, error) {
	bot := b.sc.botIntent()
	var pl event.PowerLevelsEventContent
	if err := bot.Matrix.StateEvent(ctx, conv.RoomID, event.StatePowerLevels, "", &pl); err != nil {
		return nil, fmt.Errorf("failed to read power levels: %w", err)
	}
	if appservice.HardenPowerLevels(&pl) {
		if _, err := bot.Matrix.SetPowerLevels(ctx, conv.RoomID, &pl); err != nil {
			return nil, fmt.Errorf("failed to update power levels: %w", err)
		}
		zerolog.Ctx(ctx).Info().Str("conversation_id", conv.ID).Msg("Brought an older room's power levels up to the current policy")
	}
	resp, err := bot.Matrix.Members(ctx, conv.RoomID)
	if err != nil {
		return nil, fmt.Errorf("failed to read room members: %w", err)
	}
	members := map[id.UserID]event.Membership{}
	for _, evt := range resp.Chunk {
		if evt.StateKey == nil {
			continue
		}
		_ = evt.Content.ParseRaw(evt.Type)
		if m := evt.Content.AsMember(); m.Membership == event.MembershipJoin || m.Membership == event.MembershipInvite {
			members[id.UserID(*evt.StateKey)] = m.Membership
		}
	}
	return members, nil
}

func (b *bridgeMatrixSide) SendExport(ctx context.Context, conv *Conversation, name string, data []byte) error {
	content, err := uploadAttachment(ctx, b.sc.Bridge.Bot, conv.RoomID, event.MsgFile, name, "application/zip", data)
	if err != nil {
		return fmt.Errorf("failed to upload export: %w", err)
	}
	_, err = b.sc.Bridge.Bot.SendMessage(ctx, conv.RoomID, event.EventMessage, content, nil)
	return err
}
