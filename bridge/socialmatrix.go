package bridge

import (
	"context"
	"fmt"
	"slices"
	"time"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/rs/zerolog"

	"github.com/sikkerchat/sikkerchat/appservice"
)

// SocialMatrix is what the patrol inbox does on the homeserver. The bridge
// implements it on bridgev2; tests use a recording double.
type SocialMatrix interface {
	// CreateSocialRoom makes the encrypted room of a social conversation, with
	// the person's and the Page's ghosts and the patrol officers in it, and
	// binds it to the conversation's portal.
	CreateSocialRoom(ctx context.Context, spec SocialRoomSpec) (id.RoomID, error)
	// SendAs sends an encrypted event as a ghost ("" for the bridge bot), with
	// the transaction ID outside the ciphertext so that FindSent finds it.
	SendAs(ctx context.Context, roomID id.RoomID, ghostID string, txnID string, evtType event.Type, content *event.Content) (id.EventID, error)
	// Upload uploads a file (encrypted) as a ghost and returns its message.
	Upload(ctx context.Context, roomID id.RoomID, ghostID string, name, mimeType string, data []byte) (*event.Content, error)
	// FindSentAs looks in the room for an earlier send with a transaction ID.
	FindSentAs(ctx context.Context, roomID id.RoomID, ghostID, txnID string) (id.EventID, error)
	// MarkRead sends a read receipt as a ghost.
	MarkRead(ctx context.Context, roomID id.RoomID, ghostID string, eventID id.EventID) error
	// SetSocialState updates the room's no.sikkerchat.social state event.
	SetSocialState(ctx context.Context, roomID id.RoomID, state *appservice.SocialState) error
	// SetStateEvent sets any other state event as the bot.
	SetStateEvent(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) error
	// InviteOfficers invites the patrol officers to a bound room.
	InviteOfficers(ctx context.Context, roomID id.RoomID, officers []id.UserID) error
	// SocialNotice sends a notice from the bot.
	SocialNotice(ctx context.Context, roomID id.RoomID, markdown string)
	// NotifyOfficers sends a notice from the bot to each officer's own room
	// with the bot (bridgev2's management room, made if there is none).
	NotifyOfficers(ctx context.Context, officers []id.UserID, markdown string)
	// Download fetches (and decrypts) an officer's Matrix media.
	Download(ctx context.Context, uri id.ContentURIString, file *event.EncryptedFileInfo) ([]byte, error)
	// GhostMXID is the Matrix user of a ghost.
	GhostMXID(ghostID string) id.UserID
	// ForgetSocialRoom drops what the bridge holds of a purged room and resets
	// the person's ghost.
	ForgetSocialRoom(ctx context.Context, socialID string, roomID id.RoomID, ghostID string)
}

// SocialRoomSpec is what a social conversation room needs at creation.
type SocialRoomSpec struct {
	SocialID   string
	Name       string
	Topic      string
	PersonID   string
	PersonName string
	PageID     string
	PageName   string
	Officers   []id.UserID
	State      *appservice.SocialState
}

var _ SocialMatrix = (*bridgeMatrixSide)(nil)

func (b *bridgeMatrixSide) GhostMXID(ghostID string) id.UserID {
	if ghostID == "" {
		return b.sc.Bridge.Bot.GetMXID()
	}
	return b.sc.Bridge.Matrix.GhostIntent(networkid.UserID(ghostID)).GetMXID()
}

func (b *bridgeMatrixSide) CreateSocialRoom(ctx context.Context, spec SocialRoomSpec) (id.RoomID, error) {
	cv := b.sc.Conversations
	if !cv.encryptionEnabled() {
		return "", ErrEncryptionDisabled
	}
	// The person's name may be real: keep request bodies out of debug logs.
	quietCtx := quietContext(ctx)
	person, err := b.sc.Bridge.GetGhostByID(ctx, networkid.UserID(spec.PersonID))
	if err != nil {
		return "", fmt.Errorf("failed to get the person's ghost: %w", err)
	}
	isBot := false
	person.UpdateInfo(quietCtx, &bridgev2.UserInfo{Name: &spec.PersonName, IsBot: &isBot})
	page, err := b.sc.Bridge.GetGhostByID(ctx, networkid.UserID(spec.PageID))
	if err != nil {
		return "", fmt.Errorf("failed to get the page's ghost: %w", err)
	}
	page.UpdateInfo(quietCtx, &bridgev2.UserInfo{Name: &spec.PageName, IsBot: &isBot})

	logins, err := b.officerLogins(ctx, spec.Officers)
	if err != nil {
		return "", err
	}
	bot := cv.botIntent()
	req := appservice.CreateRoomRequest(appservice.RoomSpec{
		Name:       spec.Name,
		Topic:      spec.Topic,
		Bot:        bot.GetMXID(),
		Officers:   spec.Officers,
		Guest:      person.Intent.GetMXID(),
		Page:       page.Intent.GetMXID(),
		Social:     spec.State,
		Encryption: cv.encryptionContent(),
		Federate:   cv.federateRooms(),
	})
	// The officers are invited once the room is bound to its portal: a message
	// they write before that would reach no portal and be lost.
	req.Invite = slices.DeleteFunc(req.Invite, func(u id.UserID) bool { return slices.Contains(spec.Officers, u) })
	resp, err := bot.Matrix.CreateRoom(quietCtx, req)
	if err != nil {
		return "", fmt.Errorf("failed to create social conversation room: %w", err)
	}
	portal, err := b.sc.Bridge.GetPortalByKey(ctx, networkid.PortalKey{ID: networkid.PortalID(spec.SocialID)})
	if err != nil {
		return resp.RoomID, fmt.Errorf("failed to get portal: %w", err)
	}
	portal.RoomType = database.RoomTypeDefault
	var source *bridgev2.UserLogin
	if len(logins) > 0 {
		source = logins[0]
	}
	if err = portal.UpdateMatrixRoomID(quietCtx, resp.RoomID, bridgev2.UpdateMatrixRoomIDParams{FailIfMXIDSet: true, ChatInfoSource: source}); err != nil {
		return resp.RoomID, fmt.Errorf("failed to bind portal to room: %w", err)
	}
	portal.NameSet = true
	// The officers' logins are marked in the portal by InviteOfficers: marking
	// invites them, and they must not be in the room before the inbox knows it.
	for _, ghost := range []*bridgev2.Ghost{person, page} {
		if err = ghost.Intent.EnsureJoined(ctx, resp.RoomID); err != nil {
			return resp.RoomID, fmt.Errorf("failed to join ghost to room: %w", err)
		}
	}
	return resp.RoomID, nil
}

func (b *bridgeMatrixSide) InviteOfficers(ctx context.Context, roomID id.RoomID, officers []id.UserID) error {
	bot := b.sc.Conversations.botIntent()
	portal, err := b.sc.Bridge.GetPortalByMXID(ctx, roomID)
	if err != nil {
		return fmt.Errorf("failed to get the room's portal: %w", err)
	} else if portal == nil {
		return fmt.Errorf("no portal for room %s", roomID)
	}
	logins, err := b.officerLogins(ctx, officers)
	if err != nil {
		return err
	}
	for i, officer := range officers {
		// An officer already invited or joined (a retried delivery) is fine.
		if err = bot.EnsureInvited(ctx, roomID, officer); err != nil {
			return fmt.Errorf("failed to invite an officer: %w", err)
		}
		logins[i].MarkInPortal(ctx, portal)
	}
	return nil
}

// officerLogins gives each officer the login their messages are routed through.
func (b *bridgeMatrixSide) officerLogins(ctx context.Context, officers []id.UserID) ([]*bridgev2.UserLogin, error) {
	logins := make([]*bridgev2.UserLogin, 0, len(officers))
	for _, officer := range officers {
		user, err := b.sc.Bridge.GetUserByMXID(ctx, officer)
		if err != nil {
			return nil, fmt.Errorf("failed to get officer: %w", err)
		}
		login, err := b.sc.Conversations.ensureOfficerLogin(ctx, user)
		if err != nil {
			return nil, err
		}
		logins = append(logins, login)
	}
	return logins, nil
}

func (b *bridgeMatrixSide) SendAs(ctx context.Context, roomID id.RoomID, ghostID, txnID string, evtType event.Type, content *event.Content) (id.EventID, error) {
	return b.sendAs(ctx, roomID, ghostID, txnID, evtType, content)
}

func (b *bridgeMatrixSide) Upload(ctx context.Context, roomID id.RoomID, ghostID, name, mimeType string, data []byte) (*event.Content, error) {
	intent := b.sc.Bridge.Bot
	if ghostID != "" {
		intent = b.sc.Bridge.Matrix.GhostIntent(networkid.UserID(ghostID))
	}
	return uploadAttachment(ctx, intent, roomID, event.MessageType(matrixMsgType(mimeType)), name, mimeType, data)
}

func (b *bridgeMatrixSide) FindSentAs(ctx context.Context, roomID id.RoomID, ghostID, txnID string) (id.EventID, error) {
	return b.findSent(ctx, roomID, networkid.UserID(ghostID), txnID)
}

func (b *bridgeMatrixSide) MarkRead(ctx context.Context, roomID id.RoomID, ghostID string, eventID id.EventID) error {
	return b.sc.Bridge.Matrix.GhostIntent(networkid.UserID(ghostID)).MarkRead(ctx, roomID, eventID, time.Now())
}

func (b *bridgeMatrixSide) Download(ctx context.Context, uri id.ContentURIString, file *event.EncryptedFileInfo) ([]byte, error) {
	return b.sc.Bridge.Bot.DownloadMedia(ctx, uri, file)
}

func (b *bridgeMatrixSide) SetSocialState(ctx context.Context, roomID id.RoomID, state *appservice.SocialState) error {
	return b.SetStateEvent(ctx, roomID, appservice.StateSocial, state)
}

func (b *bridgeMatrixSide) SetStateEvent(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) error {
	_, err := b.sc.Bridge.Bot.SendState(ctx, roomID, evtType, "", &event.Content{Parsed: content}, time.Now())
	return err
}

func (b *bridgeMatrixSide) SocialNotice(ctx context.Context, roomID id.RoomID, markdown string) {
	b.Notice(ctx, &Conversation{RoomID: roomID}, markdown)
}

func (b *bridgeMatrixSide) NotifyOfficers(ctx context.Context, officers []id.UserID, markdown string) {
	for _, officer := range officers {
		user, err := b.sc.Bridge.GetUserByMXID(ctx, officer)
		if err != nil || user == nil {
			zerolog.Ctx(ctx).Err(err).Msg("Failed to get an officer to notify")
			continue
		}
		room, err := user.GetManagementRoom(ctx)
		if err != nil {
			zerolog.Ctx(ctx).Err(err).Msg("Failed to get an officer's room with the bot")
			continue
		}
		b.Notice(ctx, &Conversation{RoomID: room}, markdown)
	}
}

func (b *bridgeMatrixSide) ForgetSocialRoom(ctx context.Context, socialID string, roomID id.RoomID, ghostID string) {
	b.ForgetRoom(ctx, &Conversation{ID: socialID, RoomID: roomID, GhostID: ghostID})
}

// socialIntent is the intent of a ghost, or the bot's for "".
func (b *bridgeMatrixSide) socialIntent(ghostID string) (*matrix.ASIntent, bool) {
	if ghostID == "" {
		intent := b.sc.botIntent()
		return intent, intent != nil
	}
	intent, ok := b.sc.Bridge.Matrix.GhostIntent(networkid.UserID(ghostID)).(*matrix.ASIntent)
	return intent, ok
}
