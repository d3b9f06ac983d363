package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// ErrConversationNotOpen is returned for guest actions on a conversation that
// is closed, expired or unknown.
var ErrConversationNotOpen = errors.New("conversation is not open")

// SendGuestText sends text as the conversation's guest ghost, encrypted by the
// bridge. messageID is the guest message's own ID: the Matrix transaction ID
// is derived from it, so a retry after a crash or a lost answer reaches the
// homeserver as the same transaction and never makes a second event.
func (sc *Connector) SendGuestText(ctx context.Context, conversationID, messageID, text string) (id.EventID, error) {
	conv, err := sc.Store.GetConversation(ctx, conversationID)
	if err != nil {
		return "", fmt.Errorf("failed to get conversation: %w", err)
	} else if conv == nil || conv.RoomID == "" || conv.Status == StatusClosed || conv.Status == StatusExpired {
		return "", ErrConversationNotOpen
	}
	mc, ok := sc.Bridge.Matrix.(*matrix.Connector)
	if !ok || mc.Crypto == nil {
		return "", ErrEncryptionDisabled
	}
	ghost := sc.Bridge.Matrix.GhostIntent(networkid.UserID(conv.GhostID)).(*matrix.ASIntent)
	content := &event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: text}}
	if err = ghost.Matrix.EnsureJoined(ctx, conv.RoomID); err != nil {
		return "", fmt.Errorf("failed to ensure guest is joined: %w", err)
	}
	if err = mc.Crypto.Encrypt(ctx, conv.RoomID, event.EventMessage, content); err != nil {
		return "", fmt.Errorf("failed to encrypt guest message: %w", err)
	}
	resp, err := ghost.Matrix.SendMessageEvent(ctx, conv.RoomID, event.EventEncrypted, content, mautrix.ReqSendEvent{
		TransactionID: "sikkerchat_" + conversationID + "_" + messageID,
	})
	if err != nil {
		return "", fmt.Errorf("failed to send guest message: %w", err)
	}
	_, err = sc.Transcript.Append(ctx, conv.ID, &TranscriptEntry{
		Direction:     FromGuest,
		MatrixEventID: resp.EventID,
		CreatedAt:     time.Now(),
		Kind:          "text",
		Text:          text,
	})
	if err != nil {
		return resp.EventID, fmt.Errorf("failed to keep guest message in transcript: %w", err)
	}
	return resp.EventID, nil
}
