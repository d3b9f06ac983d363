package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/appservice"
)

// MaxLabelLength bounds the officer's label (room name and guest display name).
const MaxLabelLength = 64

var (
	ErrEncryptionDisabled = errors.New("end-to-bridge encryption is disabled")
	ErrLabelTooLong       = fmt.Errorf("label longer than %d characters", MaxLabelLength)
)

// CreatedConversation is what the officer gets back: the only time the token
// and code word exist outside the citizen's hands.
type CreatedConversation struct {
	Conversation *Conversation
	GuestMXID    id.UserID
	GuestName    string
	URL          string
	Code         string
}

// InviteField is the machine-readable `no.sikkerchat.invite` content field.
type InviteField struct {
	ConversationID string    `json:"conversation_id"`
	RoomID         id.RoomID `json:"room_id"`
	URL            string    `json:"url"`
	Code           string    `json:"code"`
	ExpiresAt      int64     `json:"expires_at"`
}

func (cc *CreatedConversation) InviteField() InviteField {
	return InviteField{
		ConversationID: cc.Conversation.ID,
		RoomID:         cc.Conversation.RoomID,
		URL:            cc.URL,
		Code:           cc.Code,
		ExpiresAt:      cc.Conversation.InviteExpiresAt.UnixMilli(),
	}
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomID(bytes int) string {
	b := make([]byte, bytes)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Errorf("crypto/rand failed: %w", err))
	}
	return lowerBase32.EncodeToString(b)
}

func (sc *Connector) botIntent() *matrix.ASIntent {
	return sc.Bridge.Bot.(*matrix.ASIntent)
}

func (sc *Connector) encryptionContent() event.EncryptionEventContent {
	content := event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}
	if mc, ok := sc.Bridge.Matrix.(*matrix.Connector); ok {
		if rot := mc.Config.Encryption.Rotation; rot.EnableCustom {
			content.RotationPeriodMillis = rot.Milliseconds
			content.RotationPeriodMessages = rot.Messages
		}
	}
	return content
}

// StateOf is the integrator-facing state event content for a conversation.
func (sc *Connector) StateOf(conv *Conversation) *appservice.ConversationState {
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	return &appservice.ConversationState{
		ConversationID:  conv.ID,
		Status:          string(conv.Status),
		CreatedBy:       conv.CreatedBy,
		CreatedAt:       ms(conv.CreatedAt),
		InviteExpiresAt: ms(conv.InviteExpiresAt),
		Guest:           sc.guestMXID(conv),
		ClosedAt:        ms(conv.ClosedAt),
		PurgeAfter:      ms(conv.PurgeAfter),
		Hold:            conv.Hold,
	}
}

func (sc *Connector) guestMXID(conv *Conversation) id.UserID {
	if sc.Bridge == nil {
		return ""
	}
	return sc.Bridge.Matrix.GhostIntent(networkid.UserID(conv.GhostID)).GetMXID()
}

// CreateConversation runs DESIGN.md's lifecycle step 1 for a permitted officer.
func (sc *Connector) CreateConversation(ctx context.Context, officer *bridgev2.User, label string) (*CreatedConversation, error) {
	label = strings.Join(strings.Fields(label), " ")
	if utf8.RuneCountInString(label) > MaxLabelLength {
		return nil, ErrLabelTooLong
	}
	if !sc.encryptionEnabled() {
		return nil, ErrEncryptionDisabled
	}
	login, err := sc.ensureOfficerLogin(ctx, officer)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	conv := &Conversation{
		ID:              randomID(10),
		GhostID:         randomID(10),
		Label:           label,
		Status:          StatusCreated,
		CreatedBy:       officer.MXID,
		CreatedAt:       now,
		InviteExpiresAt: now.Add(sc.Config.inviteTTL),
	}
	log := zerolog.Ctx(ctx).With().Str("conversation_id", conv.ID).Logger()
	ctx = log.WithContext(ctx)

	token, tokenHash, err := NewInviteToken()
	if err != nil {
		return nil, fmt.Errorf("failed to make invite token: %w", err)
	}
	code, err := NewCodeWord()
	if err != nil {
		return nil, fmt.Errorf("failed to make code word: %w", err)
	}
	if err = sc.Transcript.CreateKey(conv.ID); err != nil {
		return nil, fmt.Errorf("failed to make transcript key: %w", err)
	}
	if conv.SealedLabel, err = sc.Transcript.SealLabel(ctx, conv.ID, label); err != nil {
		_ = sc.Transcript.DestroyKey(conv.ID)
		return nil, fmt.Errorf("failed to seal label: %w", err)
	}
	invite := &Invite{
		TokenHash:      tokenHash,
		ConversationID: conv.ID,
		CodeMAC:        CodeMAC(token, code),
		CreatedAt:      now,
		ExpiresAt:      conv.InviteExpiresAt,
	}
	if err = sc.DB.Conversation.Insert(ctx, conv, invite); err != nil {
		_ = sc.Transcript.DestroyKey(conv.ID)
		return nil, err
	}
	created, err := sc.createConversationRoom(ctx, conv, login, label)
	if err != nil {
		// Nothing of a half-made conversation may stay usable: drop the invite with it.
		if delErr := sc.DB.Conversation.Delete(context.WithoutCancel(ctx), conv.ID); delErr != nil {
			log.Err(delErr).Msg("Failed to delete conversation after room creation failed")
		}
		_ = sc.Transcript.DestroyKey(conv.ID)
		return nil, err
	}
	created.URL = sc.Config.InviteURL(token)
	created.Code = code
	if err = sc.Audit.Append(ctx, officer.MXID.String(), AuditCreate, conv.ID, ""); err != nil {
		log.Err(err).Msg("Failed to write audit row for create")
	}
	log.Info().Stringer("room_id", conv.RoomID).Stringer("created_by", officer.MXID).Msg("Conversation created")
	return created, nil
}

func (sc *Connector) createConversationRoom(ctx context.Context, conv *Conversation, login *bridgev2.UserLogin, label string) (*CreatedConversation, error) {
	ghost, err := sc.Bridge.GetGhostByID(ctx, networkid.UserID(conv.GhostID))
	if err != nil {
		return nil, fmt.Errorf("failed to get guest ghost: %w", err)
	}
	guestName := label
	if guestName == "" {
		n, err := rand.Int(rand.Reader, big.NewInt(9000))
		if err != nil {
			return nil, err
		}
		guestName = sc.Config.guestDisplayname(int(n.Int64()) + 1000)
	}
	// The label may name a person: keep the request bodies that carry it out of debug logs.
	quietCtx := zerolog.Ctx(ctx).Level(max(zerolog.InfoLevel, zerolog.Ctx(ctx).GetLevel())).WithContext(ctx)
	isBot := false
	ghost.UpdateInfo(quietCtx, &bridgev2.UserInfo{Name: &guestName, IsBot: &isBot})

	lang := sc.Config.validatedLanguage
	roomName := "🔒 " + guestName
	bot := sc.botIntent()
	req := appservice.CreateRoomRequest(appservice.RoomSpec{
		Name:       roomName,
		Topic:      lang.T(msgRoomTopic, sc.Config.UnitName),
		Bot:        bot.GetMXID(),
		Officers:   []id.UserID{conv.CreatedBy},
		Guest:      ghost.Intent.GetMXID(),
		State:      *sc.StateOf(conv),
		Encryption: sc.encryptionContent(),
		Federate:   sc.federateRooms(),
	})
	// The request goes straight to the homeserver client (not bridgev2's
	// CreateRoom) so that the room's whole policy is in its initial state.
	resp, err := bot.Matrix.CreateRoom(quietCtx, req)
	if err != nil {
		return nil, fmt.Errorf("failed to create conversation room: %w", err)
	}
	conv.RoomID = resp.RoomID
	if err = sc.DB.Conversation.SetRoom(ctx, conv.ID, conv.RoomID); err != nil {
		return nil, fmt.Errorf("failed to save conversation room: %w", err)
	}
	portal, err := sc.Bridge.GetPortalByKey(ctx, networkid.PortalKey{ID: networkid.PortalID(conv.ID)})
	if err != nil {
		return nil, fmt.Errorf("failed to get portal: %w", err)
	}
	// The room name is set at creation; the portal keeps no copy, so that the
	// label never travels again in bridge info events (and their debug logs).
	portal.RoomType = database.RoomTypeDefault
	err = portal.UpdateMatrixRoomID(quietCtx, conv.RoomID, bridgev2.UpdateMatrixRoomIDParams{
		FailIfMXIDSet:  true,
		ChatInfoSource: login,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to bind portal to room: %w", err)
	}
	portal.NameSet = true
	login.MarkInPortal(ctx, portal)
	if err = ghost.Intent.EnsureJoined(ctx, conv.RoomID); err != nil {
		return nil, fmt.Errorf("failed to join guest ghost to room: %w", err)
	}
	officerName := conv.CreatedBy.String()
	_, err = sc.Bridge.Bot.SendMessage(ctx, conv.RoomID, event.EventMessage, &event.Content{
		Parsed: &event.MessageEventContent{
			MsgType: event.MsgNotice,
			Body:    lang.T(msgCreatedInRoom, officerName, formatTime(conv.InviteExpiresAt, lang)),
		},
	}, nil)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to send creation notice to conversation room")
	}
	return &CreatedConversation{
		Conversation: conv,
		GuestMXID:    ghost.Intent.GetMXID(),
		GuestName:    guestName,
	}, nil
}

func (sc *Connector) federateRooms() bool {
	mc, ok := sc.Bridge.Matrix.(*matrix.Connector)
	return ok && mc.Config.Matrix.FederateRooms
}

var oslo = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		return time.UTC
	}
	return loc
}()

func formatTime(t time.Time, lang Language) string {
	t = t.In(oslo)
	if lang == LangEnglish {
		return t.Format("2 Jan 2006 15:04 MST")
	}
	return t.Format("02.01.2006 kl. 15:04")
}

// sendInviteReply answers the officer with the link and code word, as text and
// as the machine-readable `no.sikkerchat.invite` field.
func (sc *Connector) sendInviteReply(ctx context.Context, roomID id.RoomID, replyTo id.EventID, cc *CreatedConversation) (*mautrix.RespSendEvent, error) {
	if mc, ok := sc.Bridge.Matrix.(*matrix.Connector); ok {
		if encrypted, err := mc.StateStore.IsEncrypted(ctx, roomID); err != nil || !encrypted {
			return nil, fmt.Errorf("refusing to send an invite link into a room that is not encrypted")
		}
	}
	// The link and code word must not reach debug logs with the request body.
	ctx = zerolog.Ctx(ctx).Level(max(zerolog.InfoLevel, zerolog.Ctx(ctx).GetLevel())).WithContext(ctx)
	lang := sc.Config.validatedLanguage
	text := lang.T(msgCreated, cc.GuestName, cc.URL, cc.Code, formatTime(cc.Conversation.InviteExpiresAt, lang))
	content := renderNotice(text)
	if replyTo != "" {
		content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(replyTo)
	}
	return sc.Bridge.Bot.SendMessage(ctx, roomID, event.EventMessage, &event.Content{
		Parsed: content,
		Raw:    map[string]any{"no.sikkerchat.invite": cc.InviteField()},
	}, nil)
}
