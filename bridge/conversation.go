package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
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

// Conversations runs a conversation's life: creation, a new link, close,
// legal hold and purge.
type Conversations struct {
	*Connector
	// stateLocks: conversation ID → *sync.Mutex held while its room's state
	// event is sent (publishState).
	stateLocks sync.Map
	ghosts     ghostPool
}

// ghostPool holds guest ghosts registered on the homeserver ahead of need
// (no name, no room), so that a new conversation does not wait for a
// registration. In memory only: a restart leaves at most spareGhosts
// registered users that never get a name or a room.
type ghostPool struct {
	mu      sync.Mutex
	ready   []string
	filling bool
}

const spareGhosts = 2

// takeGhost gives a ghost ID for a new conversation, and whether it is
// registered already; the pool fills up again in the background.
func (cv *Conversations) takeGhost(ctx context.Context) (ghostID string, registered bool) {
	cv.ghosts.mu.Lock()
	if n := len(cv.ghosts.ready); n > 0 {
		ghostID, registered = cv.ghosts.ready[n-1], true
		cv.ghosts.ready = cv.ghosts.ready[:n-1]
	}
	cv.ghosts.mu.Unlock()
	if !registered {
		ghostID = randomID(10)
	}
	cv.fillGhosts(ctx)
	return ghostID, registered
}

// fillGhosts registers spare ghosts in the background, one at a time.
func (cv *Conversations) fillGhosts(ctx context.Context) {
	cv.ghosts.mu.Lock()
	if cv.ghosts.filling || len(cv.ghosts.ready) >= spareGhosts || cv.Bridge == nil {
		cv.ghosts.mu.Unlock()
		return
	}
	cv.ghosts.filling = true
	cv.ghosts.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	cv.spawn(func() {
		defer func() {
			cv.ghosts.mu.Lock()
			cv.ghosts.filling = false
			cv.ghosts.mu.Unlock()
		}()
		for {
			cv.ghosts.mu.Lock()
			full := len(cv.ghosts.ready) >= spareGhosts
			cv.ghosts.mu.Unlock()
			if full {
				return
			}
			ghostID := randomID(10)
			if err := cv.registerGhost(ctx, ghostID); err != nil {
				zerolog.Ctx(ctx).Debug().Err(err).Msg("Failed to register a spare guest ghost; the next conversation registers its own")
				return
			}
			cv.ghosts.mu.Lock()
			cv.ghosts.ready = append(cv.ghosts.ready, ghostID)
			cv.ghosts.mu.Unlock()
		}
	})
}

func (cv *Conversations) registerGhost(ctx context.Context, ghostID string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ghost, err := cv.Bridge.GetGhostByID(ctx, networkid.UserID(ghostID))
	if err != nil {
		return err
	}
	if as, ok := ghost.Intent.(*matrix.ASIntent); ok {
		return as.Matrix.EnsureRegistered(ctx)
	}
	return nil
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomID(bytes int) string {
	b := make([]byte, bytes)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Errorf("crypto/rand failed: %w", err))
	}
	return lowerBase32.EncodeToString(b)
}

func (cv *Conversations) encryptionContent() event.EncryptionEventContent {
	content := event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}
	if mc, ok := cv.Bridge.Matrix.(*matrix.Connector); ok {
		if rot := mc.Config.Encryption.Rotation; rot.EnableCustom {
			content.RotationPeriodMillis = rot.Milliseconds
			content.RotationPeriodMessages = rot.Messages
		}
	}
	return content
}

// StateOf is the integrator-facing state event content for a conversation.
func (cv *Conversations) StateOf(conv *Conversation) *appservice.ConversationState {
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
		Guest:           cv.guestMXID(conv),
		ClosedAt:        ms(conv.ClosedAt),
		PurgeAfter:      ms(conv.PurgeAfter),
		Hold:            conv.Hold,
	}
}

func (cv *Conversations) guestMXID(conv *Conversation) id.UserID {
	if cv.Bridge == nil {
		return ""
	}
	return cv.Bridge.Matrix.GhostIntent(networkid.UserID(conv.GhostID)).GetMXID()
}

// Create starts a conversation for a permitted officer: ghost, room with its
// whole policy, invite.
func (cv *Conversations) Create(ctx context.Context, officer *bridgev2.User, label string) (*CreatedConversation, error) {
	return cv.CreateFrom(ctx, officer, label, "")
}

// CreateFrom is Create for a conversation that starts elsewhere (a Messenger
// or Instagram conversation): origin opens the room's first notice.
func (cv *Conversations) CreateFrom(ctx context.Context, officer *bridgev2.User, label, origin string) (*CreatedConversation, error) {
	return cv.create(ctx, officer, label, origin, officer.MXID.String())
}

// CreateFor is Create at someone else's request (a case system's through the
// provisioning API): the conversation is the officer's, and the audit trail
// names actor as the one who made it.
func (cv *Conversations) CreateFor(ctx context.Context, officer *bridgev2.User, label, actor string) (*CreatedConversation, error) {
	return cv.create(ctx, officer, label, "", actor)
}

func (cv *Conversations) create(ctx context.Context, officer *bridgev2.User, label, origin, actor string) (*CreatedConversation, error) {
	label = strings.Join(strings.Fields(label), " ")
	if utf8.RuneCountInString(label) > MaxLabelLength {
		return nil, ErrLabelTooLong
	}
	if !cv.encryptionEnabled() {
		return nil, ErrEncryptionDisabled
	}
	login, err := cv.ensureOfficerLogin(ctx, officer)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ghostID, ghostRegistered := cv.takeGhost(ctx)
	conv := &Conversation{
		ID:              randomID(10),
		GhostID:         ghostID,
		Label:           label,
		Status:          StatusCreated,
		CreatedBy:       officer.MXID,
		CreatedAt:       now,
		InviteExpiresAt: now.Add(cv.Config.inviteTTL),
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
	if err = cv.Transcript.CreateKey(conv.ID); err != nil {
		return nil, fmt.Errorf("failed to make transcript key: %w", err)
	}
	if conv.SealedLabel, err = cv.Transcript.SealLabel(ctx, conv.ID, label); err != nil {
		_ = cv.Transcript.DestroyKey(conv.ID)
		return nil, fmt.Errorf("failed to seal label: %w", err)
	}
	invite := &Invite{
		TokenHash:      tokenHash,
		ConversationID: conv.ID,
		CodeMAC:        CodeMAC(token, code),
		CreatedAt:      now,
		ExpiresAt:      conv.InviteExpiresAt,
	}
	if err = cv.DB.Conversation.Insert(ctx, conv, invite); err != nil {
		_ = cv.Transcript.DestroyKey(conv.ID)
		return nil, err
	}
	created, err := cv.createConversationRoom(ctx, conv, login, label, origin, ghostRegistered)
	if err != nil {
		// Nothing of a half-made conversation may stay usable: drop the invite with it.
		if delErr := cv.DB.Conversation.Delete(context.WithoutCancel(ctx), conv.ID); delErr != nil {
			log.Err(delErr).Msg("Failed to delete conversation after room creation failed")
		}
		_ = cv.Transcript.DestroyKey(conv.ID)
		return nil, err
	}
	created.URL = cv.Config.InviteURL(token)
	created.Code = code
	if err = cv.Audit.Append(ctx, actor, AuditCreate, conv.ID, ""); err != nil {
		log.Err(err).Msg("Failed to write audit row for create")
	}
	log.Info().Stringer("room_id", conv.RoomID).Stringer("created_by", officer.MXID).Msg("Conversation created")
	return created, nil
}

// createConversationRoom makes the room with its whole policy in the initial
// state and binds the portal. Only what the officer's answer depends on is
// awaited: the ghost's name is set while the room is made; the ghost's join,
// the first notice and bridgev2's bridge-info state follow in the background
// (a ghost's first message joins it anyway).
func (cv *Conversations) createConversationRoom(ctx context.Context, conv *Conversation, login *bridgev2.UserLogin, label, origin string, ghostRegistered bool) (*CreatedConversation, error) {
	ghost, err := cv.Bridge.GetGhostByID(ctx, networkid.UserID(conv.GhostID))
	if err != nil {
		return nil, fmt.Errorf("failed to get guest ghost: %w", err)
	}
	guestName := label
	if guestName == "" {
		n, err := rand.Int(rand.Reader, big.NewInt(9000))
		if err != nil {
			return nil, err
		}
		guestName = cv.Config.guestDisplayname(int(n.Int64()) + 1000)
	}
	// The label may name a person: keep the request bodies that carry it out of debug logs.
	quietCtx := quietContext(ctx)
	isBot := false
	setName := func() { ghost.UpdateInfo(quietCtx, &bridgev2.UserInfo{Name: &guestName, IsBot: &isBot}) }
	named := make(chan struct{})
	if ghostRegistered {
		// Registered ahead: its name can be set while the room is made.
		go func() {
			defer close(named)
			setName()
		}()
	} else {
		// Registered by setting the name, before the room invites it.
		setName()
		close(named)
	}

	lang := cv.Config.validatedLanguage
	roomName := "🔒 " + guestName
	bot := cv.botIntent()
	req := appservice.CreateRoomRequest(appservice.RoomSpec{
		Name:       roomName,
		Topic:      lang.T(msgRoomTopic, cv.Config.UnitName),
		Bot:        bot.GetMXID(),
		Officers:   []id.UserID{conv.CreatedBy},
		Guest:      ghost.Intent.GetMXID(),
		State:      *cv.StateOf(conv),
		Encryption: cv.encryptionContent(),
		Federate:   cv.federateRooms(),
	})
	// The request goes straight to the homeserver client (not bridgev2's
	// CreateRoom) so that the room's whole policy is in its initial state.
	resp, err := bot.Matrix.CreateRoom(quietCtx, req)
	<-named
	if err != nil {
		return nil, fmt.Errorf("failed to create conversation room: %w", err)
	}
	conv.RoomID = resp.RoomID
	if err = cv.DB.Conversation.SetRoom(ctx, conv.ID, conv.RoomID); err != nil {
		return nil, fmt.Errorf("failed to save conversation room: %w", err)
	}
	portal, err := cv.Bridge.GetPortalByKey(ctx, networkid.PortalKey{ID: networkid.PortalID(conv.ID)})
	if err != nil {
		return nil, fmt.Errorf("failed to get portal: %w", err)
	}
	// The room name is set at creation; the portal keeps no copy, so that the
	// label never travels again in bridge info events (and their debug logs).
	portal.RoomType = database.RoomTypeDefault
	err = portal.UpdateMatrixRoomID(quietCtx, conv.RoomID, bridgev2.UpdateMatrixRoomIDParams{FailIfMXIDSet: true})
	if err != nil {
		return nil, fmt.Errorf("failed to bind portal to room: %w", err)
	}
	portal.NameSet = true
	login.MarkInPortal(ctx, portal)

	notice := lang.T(msgCreatedInRoom, conv.CreatedBy.String(), formatTime(conv.InviteExpiresAt, lang))
	if origin != "" {
		notice = origin + " " + notice
	}
	bgCtx := context.WithoutCancel(ctx)
	cv.spawn(func() {
		ctx, cancel := context.WithTimeout(bgCtx, 2*time.Minute)
		defer cancel()
		log := zerolog.Ctx(ctx)
		if err := ghost.Intent.EnsureJoined(ctx, conv.RoomID); err != nil {
			log.Warn().Err(err).Msg("Failed to join guest ghost to room; its first message joins it")
		}
		_, err := cv.Bridge.Bot.SendMessage(ctx, conv.RoomID, event.EventMessage, &event.Content{
			Parsed: &event.MessageEventContent{MsgType: event.MsgNotice, Body: notice},
		}, nil)
		if err != nil {
			log.Warn().Err(err).Msg("Failed to send creation notice to conversation room")
		}
		portal.UpdateCapabilities(quietContext(ctx), login, true)
		portal.UpdateBridgeInfo(quietContext(ctx))
	})
	return &CreatedConversation{
		Conversation: conv,
		GuestMXID:    ghost.Intent.GetMXID(),
		GuestName:    guestName,
	}, nil
}

func (cv *Conversations) federateRooms() bool {
	mc, ok := cv.Bridge.Matrix.(*matrix.Connector)
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
func (cv *Conversations) sendInviteReply(ctx context.Context, roomID id.RoomID, replyTo id.EventID, cc *CreatedConversation) (*mautrix.RespSendEvent, error) {
	if mc, ok := cv.Bridge.Matrix.(*matrix.Connector); ok {
		if encrypted, err := mc.StateStore.IsEncrypted(ctx, roomID); err != nil || !encrypted {
			return nil, fmt.Errorf("refusing to send an invite link into a room that is not encrypted")
		}
	}
	// The link and code word must not reach debug logs with the request body.
	ctx = quietContext(ctx)
	lang := cv.Config.validatedLanguage
	text := lang.T(msgCreated, cc.GuestName, cc.URL, cc.Code, formatTime(cc.Conversation.InviteExpiresAt, lang))
	content := renderNotice(text)
	if replyTo != "" {
		content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(replyTo)
	}
	return cv.Bridge.Bot.SendMessage(ctx, roomID, event.EventMessage, &event.Content{
		Parsed: content,
		Raw:    map[string]any{"no.sikkerchat.invite": cc.InviteField()},
	}, nil)
}

// Reissue revokes every invite and session of a conversation and makes a new
// link and code word.
func (cv *Conversations) Reissue(ctx context.Context, conv *Conversation, actor string) (*CreatedConversation, error) {
	if conv.Status == StatusClosed || conv.Status == StatusExpired {
		return nil, ErrConversationNotOpen
	}
	token, tokenHash, err := NewInviteToken()
	if err != nil {
		return nil, err
	}
	code, err := NewCodeWord()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	expires := now.Add(cv.Config.inviteTTL)
	err = cv.DB.DoTxn(ctx, nil, func(ctx context.Context) error {
		if err := cv.DB.Invite.RevokeUnused(ctx, conv.ID, now); err != nil {
			return err
		}
		if err := cv.DB.Session.RevokeConversation(ctx, conv.ID, now); err != nil {
			return err
		}
		if err := cv.DB.Conversation.SetInviteExpiry(ctx, conv.ID, expires); err != nil {
			return err
		}
		return cv.DB.Invite.Insert(ctx, &Invite{TokenHash: tokenHash, ConversationID: conv.ID, CodeMAC: CodeMAC(token, code), CreatedAt: now, ExpiresAt: expires})
	})
	if err != nil {
		return nil, fmt.Errorf("failed to reissue invite: %w", err)
	}
	conv.InviteExpiresAt = expires
	cv.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventClosed, Reason: "reissued"})
	cv.updateStateEvent(ctx, conv)
	ghostName := ""
	if cv.Bridge != nil {
		if ghost, err := cv.Bridge.GetExistingGhostByID(ctx, ghostIDOf(conv)); err == nil && ghost != nil {
			ghostName = ghost.Name
		}
	}
	zerolog.Ctx(ctx).Info().Str("conversation_id", conv.ID).Msg("Invite reissued")
	if err = cv.Audit.Append(ctx, actor, AuditReissue, conv.ID, ""); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for reissue")
	}
	return &CreatedConversation{Conversation: conv, GuestName: ghostName, URL: cv.Config.InviteURL(token), Code: code}, nil
}

func (cv *Conversations) sendRoomNotice(ctx context.Context, conv *Conversation, text string) {
	cv.Matrix.Notice(ctx, conv, text)
}

func (cv *Conversations) updateStateEvent(ctx context.Context, conv *Conversation) {
	cv.publishState(ctx, conv.ID, func(current *Conversation) {
		cv.Matrix.UpdateState(ctx, current, cv.StateOf(current))
	})
}

// publishState runs send with the conversation as the database has it now.
// Sends for one conversation run one at a time and each reads the row afresh,
// so a late one (the join's runs in the background) never puts an older
// state back over a reissue, hold or close. Nothing is sent for a
// conversation that is gone (purged).
func (cv *Conversations) publishState(ctx context.Context, conversationID string, send func(current *Conversation)) {
	lock, _ := cv.stateLocks.LoadOrStore(conversationID, &sync.Mutex{})
	mu := lock.(*sync.Mutex)
	mu.Lock()
	defer mu.Unlock()
	current, err := cv.DB.Conversation.Get(ctx, conversationID)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Str("conversation_id", conversationID).Msg("Failed to read conversation for its state event")
		return
	} else if current == nil {
		return
	}
	send(current)
}

// ensureOfficerLogin gives a permitted officer the login that bridgev2 routes
// their messages in conversation rooms through.
func (cv *Conversations) ensureOfficerLogin(ctx context.Context, user *bridgev2.User) (*bridgev2.UserLogin, error) {
	if login := user.GetDefaultLogin(); login != nil {
		return login, nil
	}
	login, err := user.NewLogin(ctx, &database.UserLogin{
		ID:         officerLoginID(user),
		RemoteName: user.MXID.String(),
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to create officer login: %w", err)
	}
	login.Client.Connect(ctx)
	return login, nil
}

func (cv *Conversations) encryptionEnabled() bool {
	mc, ok := cv.Bridge.Matrix.(*matrix.Connector)
	return ok && mc.Config.Encryption.Allow && mc.Crypto != nil
}
