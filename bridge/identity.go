package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

var _ matrix.Crypto = (*identityGate)(nil)

// The device policy (minDeviceTrust) trusts each officer's cross-signing
// identity on first use. mautrix's crypto store keeps every user's master key
// twice, as it is now and as the bridge first saw it
// (crypto_cross_signing_keys.key and first_seen_key: PutCrossSigningKey never
// overwrites the second), and ResolveTrust calls a device signed under a
// master key other than the first cross-signed-untrusted. An officer who
// resets their identity in Element (after losing the recovery key, say) is
// then locked out; so is whoever reset it with the officer's password, which
// is the point. Identities is the way back:
//
//   - An event from such a device reaches bridgev2 as a stand-in that carries
//     nothing of what was written (identityGate), and the officer gets a
//     notice in the officer language that says what to do, in place of
//     bridgev2's English "your device is not trusted"; it is sent
//     unencrypted, because their devices get no room keys from the bridge.
//   - The unit's admins are told in their management rooms, once per new
//     identity, and the audit trail records it.
//   - An admin who has checked with the officer by another channel re-pins
//     the identity with `trust`, naming the master key from that notice.
//     mautrix's ResetMasterKeyTOFU re-pins only the key it is given, so an
//     identity that changed again in between stays locked out, as does any
//     later change. Audited.
//   - Both times the bot's room keys in the officer's rooms are renewed: at
//     the change, a device that held them under the old identity reads no
//     further; at the re-pin, the new identity's devices get keys at once
//     (mautrix marks a device it once withheld a session from, and never
//     shares that session with it later).

// lockedOutEventType is what bridgev2 handles in place of an event from a
// locked-out officer.
var lockedOutEventType = event.Type{Type: "no.sikkerchat.locked_out", Class: event.MessageEventType}

// Audit actions of officers' identities; their rows belong to no conversation.
const (
	// AuditIdentityChanged: the bridge saw an officer's new cross-signing
	// identity and locked them out (actor: the officer; detail: the new master key).
	AuditIdentityChanged = "identity_changed"
	// AuditIdentityTrusted: an admin re-pinned an officer's identity (detail:
	// the officer and the master key).
	AuditIdentityTrusted = "identity_trusted"
)

// ErrIdentityChangedAgain: the master key an admin named is not the officer's
// identity any more.
var ErrIdentityChangedAgain = errors.New("the officer's identity changed again")

// identityKeys is what Identities needs of mautrix's crypto store.
type identityKeys interface {
	GetCrossSigningKeys(ctx context.Context, userID id.UserID) (map[id.CrossSigningUsage]id.CrossSigningKey, error)
	ResetMasterKeyTOFU(ctx context.Context, userID id.UserID, key id.Ed25519) error
}

// Identities locks out officers whose cross-signing identity changed and
// lets an admin trust the new one (see the top of this file).
type Identities struct {
	*Connector
	// keys is mautrix's crypto store; nil: the one of bridgev2's crypto helper.
	keys identityKeys
	// mu makes "were the admins told of this identity" and telling them one
	// step, and keeps a re-pin from crossing it.
	mu sync.Mutex
}

// attach puts the gate in front of bridgev2's crypto helper and handles the
// stand-ins it makes. It runs in Init, after the other wrappers.
func (ids *Identities) attach(mc *matrix.Connector) {
	if mc.Crypto != nil {
		mc.Crypto = &identityGate{Crypto: mc.Crypto, ids: ids}
	}
	mc.EventProcessor.On(lockedOutEventType, ids.onLockedOut)
}

func (ids *Identities) matrixConnector() *matrix.Connector {
	if ids.Bridge == nil {
		return nil
	}
	mc, _ := ids.Bridge.Matrix.(*matrix.Connector)
	return mc
}

// store finds mautrix's crypto store: the sync store of the crypto helper's
// client (under durableSyncCrypto's), looked up each time because a reset of
// the helper makes a new one.
func (ids *Identities) store() identityKeys {
	if ids.keys != nil {
		return ids.keys
	}
	mc := ids.matrixConnector()
	if mc == nil || mc.Crypto == nil {
		return nil
	}
	cli := mc.Crypto.Client()
	if cli == nil {
		return nil
	}
	var store any = cli.Store
	if held, ok := store.(*processedSyncStore); ok {
		store = held.SyncStore
	}
	keys, _ := store.(identityKeys)
	return keys
}

// PendingMasterKey is the officer's current master key when it is not the
// one the bridge trusts ("" when nothing waits for an admin).
func (ids *Identities) PendingMasterKey(ctx context.Context, officer id.UserID) (id.Ed25519, error) {
	store := ids.store()
	if store == nil {
		return "", errors.New("end-to-bridge encryption is not running")
	}
	keys, err := store.GetCrossSigningKeys(ctx, officer)
	if err != nil {
		return "", fmt.Errorf("failed to read cross-signing keys: %w", err)
	}
	master, ok := keys[id.XSUsageMaster]
	if !ok || master.Key == master.First {
		return "", nil
	}
	return master.Key, nil
}

// lockedOut says whether a decrypted event comes from an officer whose
// identity changed: from a device signed by the new identity
// (cross-signed-untrusted), or from any other device bridgev2 would refuse
// while a change waits for an admin (an old device lost its signature with
// the old identity). Other refusals stay bridgev2's.
func (ids *Identities) lockedOut(ctx context.Context, evt *event.Event) bool {
	trust := evt.Mautrix.TrustState
	if trust >= ids.sendLevel() || trust == id.TrustStateBlacklisted || ids.Bridge == nil ||
		!ids.Bridge.Config.Permissions.Get(evt.Sender).Login {
		return false
	}
	if trust == id.TrustStateCrossSignedUntrusted {
		return true
	}
	pending, err := ids.PendingMasterKey(ctx, evt.Sender)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to check whether an officer's identity changed")
	}
	return pending != ""
}

// sendLevel is the trust bridgev2 wants of a device that writes (never below
// the device policy: the bridge does not start otherwise).
func (ids *Identities) sendLevel() id.TrustState {
	if mc := ids.matrixConnector(); mc != nil {
		return max(mc.Config.Encryption.VerificationLevels.Send, minDeviceTrust)
	}
	return minDeviceTrust
}

// identityGate is bridgev2's crypto helper with locked-out officers' events
// taken out after decryption.
type identityGate struct {
	matrix.Crypto
	ids *Identities
}

// Decrypt hands bridgev2 a stand-in for a locked-out officer's event. Its
// trust state is the highest because the bridge made it, not the device:
// bridgev2 then dispatches it (to onLockedOut) instead of answering in
// English, and nothing of the original goes anywhere, nor to any other
// caller (bridgev2 decrypts fetched events here too).
func (g *identityGate) Decrypt(ctx context.Context, evt *event.Event) (*event.Event, error) {
	decrypted, err := g.Crypto.Decrypt(ctx, evt)
	if err != nil || !g.ids.lockedOut(ctx, decrypted) {
		return decrypted, err
	}
	standIn := &event.Event{
		ID:        decrypted.ID,
		RoomID:    decrypted.RoomID,
		Sender:    decrypted.Sender,
		Timestamp: decrypted.Timestamp,
		Type:      lockedOutEventType,
		Content:   event.Content{Raw: map[string]any{}},
	}
	standIn.Mautrix = event.MautrixInfo{
		EventSource:  decrypted.Mautrix.EventSource,
		TrustState:   id.TrustStateVerified,
		WasEncrypted: true,
		ReceivedAt:   decrypted.Mautrix.ReceivedAt,
	}
	zerolog.Ctx(ctx).Warn().Stringer("user_id", decrypted.Sender).Stringer("device_trust", decrypted.Mautrix.TrustState).
		Msg("Dropped an event from an officer whose cross-signing identity changed and is not trusted yet")
	return standIn, nil
}

// onLockedOut answers a locked-out officer's event: they are told what to do,
// the admins are told of the new identity once, and the event is done with.
func (ids *Identities) onLockedOut(ctx context.Context, evt *event.Event) {
	log := zerolog.Ctx(ctx).With().Stringer("user_id", evt.Sender).Stringer("event_id", evt.ID).Logger()
	ctx = log.WithContext(ctx)
	// Never for the guest: kept events from conversation rooms leave the inbox.
	defer ids.Inbox.finish(ctx, evt.ID, nil)
	if err := ids.sendPlainNotice(ctx, evt.RoomID, evt.ID, ids.Config.validatedLanguage.T(msgIdentityLockedOut)); err != nil {
		log.Err(err).Msg("Failed to tell a locked-out officer why")
	}
	ids.tellAdmins(ctx, evt.Sender, evt.RoomID)
}

// sendPlainNotice replies to an event with an unencrypted notice: the
// locked-out officer's devices get no room keys, so an encrypted one would be
// unreadable to them. It says nothing of any conversation.
func (ids *Identities) sendPlainNotice(ctx context.Context, roomID id.RoomID, replyTo id.EventID, markdown string) error {
	bot := ids.botIntent()
	if bot == nil {
		return errors.New("no bridge bot")
	}
	content := renderNotice(markdown)
	content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(replyTo)
	// The same event handled again (an inbox replay) is answered once.
	txnSum := sha256.Sum256([]byte(replyTo))
	_, err := bot.Matrix.SendMessageEvent(ctx, roomID, event.EventMessage, content,
		mautrix.ReqSendEvent{DontEncrypt: true, TransactionID: "sikkerchat_locked_out_" + hex.EncodeToString(txnSum[:16])})
	return err
}

// auditMasterKey is the audit detail naming a master key.
func auditMasterKey(key id.Ed25519) string {
	return "master key " + key.String()
}

// tellAdmins tells the admins of the officer's new identity, once per
// identity: the audit row that records it is also the memory of it, across
// restarts. A change nobody could be told of is tried again with the
// officer's next event.
func (ids *Identities) tellAdmins(ctx context.Context, officer id.UserID, room id.RoomID) {
	log := zerolog.Ctx(ctx)
	ids.mu.Lock()
	defer ids.mu.Unlock()
	key, err := ids.PendingMasterKey(ctx, officer)
	if err != nil {
		log.Err(err).Msg("Failed to read a locked-out officer's identity")
		return
	} else if key == "" {
		return // an old device, while the new identity was trusted in between
	}
	detail := auditMasterKey(key)
	if told, err := ids.DB.Audit.Has(ctx, "", AuditIdentityChanged, officer.String(), detail); err != nil {
		log.Err(err).Msg("Failed to look up whether the admins were told of an identity")
		return
	} else if told {
		return
	}
	log.Warn().Stringer("master_key", key).Msg("An officer's cross-signing identity changed; telling the admins")
	ids.renewRoomKeys(ctx, officer, room)
	admins := ids.admins(ctx, officer)
	text := ids.Config.validatedLanguage.T(msgIdentityChangedAdmin, officer, key, ids.Config.commandPrefix)
	reached := 0
	for _, admin := range admins {
		if err = ids.tellUser(ctx, admin, text, true); err != nil {
			log.Err(err).Stringer("admin", admin).Msg("Failed to tell an admin that an officer's identity changed")
		} else {
			reached++
		}
	}
	if len(admins) == 0 {
		log.Error().Msg("No admin to tell that an officer's identity changed: give someone the admin level in bridge.permissions")
	} else if reached == 0 {
		return
	}
	if err = ids.Audit.Append(ctx, officer.String(), AuditIdentityChanged, "", detail); err != nil {
		log.Err(err).Msg("Failed to write audit row for a changed identity")
	}
}

// admins are the users with the admin level whom the bridge can name: those
// named one by one in bridge.permissions, and every officer with a login
// whose level is admin (an admin level for a whole domain names nobody).
func (ids *Identities) admins(ctx context.Context, except id.UserID) []id.UserID {
	perms := ids.Bridge.Config.Permissions
	var admins []id.UserID
	for key, level := range perms {
		if strings.HasPrefix(key, "@") && level != nil && level.Admin {
			admins = append(admins, id.UserID(key))
		}
	}
	known, err := ids.Bridge.DB.UserLogin.GetAllUserIDsWithLogins(ctx)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to list officers with logins")
	}
	for _, user := range known {
		if perms.Get(user).Admin {
			admins = append(admins, user)
		}
	}
	slices.Sort(admins)
	admins = slices.Compact(admins)
	return slices.DeleteFunc(admins, func(u id.UserID) bool { return u == except })
}

// tellUser sends a notice to a user's management room (their direct chat with
// the bot); create makes one for a user who has none.
func (ids *Identities) tellUser(ctx context.Context, userID id.UserID, markdown string, create bool) error {
	user, err := ids.Bridge.GetUserByMXID(ctx, userID)
	if err != nil {
		return fmt.Errorf("failed to get user: %w", err)
	}
	room := user.ManagementRoom
	if room == "" && create {
		if room, err = user.GetManagementRoom(ctx); err != nil {
			return err
		}
	} else if room == "" {
		return nil
	}
	_, err = ids.Bridge.Bot.SendMessage(ctx, room, event.EventMessage, &event.Content{Parsed: renderNotice(markdown)}, nil)
	return err
}

// renewRoomKeys ends the bot's outbound Megolm sessions in every encrypted
// room the bridge shares with the user (and in rooms), so that its next
// message in each is keyed for the devices trusted now.
func (ids *Identities) renewRoomKeys(ctx context.Context, userID id.UserID, rooms ...id.RoomID) {
	mc := ids.matrixConnector()
	if mc == nil || mc.Crypto == nil {
		return
	}
	shared, err := mc.StateStore.FindSharedRooms(ctx, userID)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to list the rooms shared with an officer; renewing the keys of the known ones")
	}
	if user, _ := ids.Bridge.GetExistingUserByMXID(ctx, userID); user != nil && user.ManagementRoom != "" {
		rooms = append(rooms, user.ManagementRoom)
	}
	rooms = append(rooms, shared...)
	slices.Sort(rooms)
	for _, room := range slices.Compact(rooms) {
		mc.Crypto.ResetSession(ctx, room)
	}
}

// Trust re-pins the officer's identity to the master key an admin checked
// with them, renews the room keys and records it; ErrIdentityChangedAgain if
// key is not the officer's identity now.
func (ids *Identities) Trust(ctx context.Context, officer id.UserID, key id.Ed25519, admin id.UserID) error {
	store := ids.store()
	if store == nil {
		return errors.New("end-to-bridge encryption is not running")
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if pending, err := ids.PendingMasterKey(ctx, officer); err != nil {
		return err
	} else if pending != key {
		return ErrIdentityChangedAgain
	}
	// Only the named key: one that changed in between is not matched.
	if err := store.ResetMasterKeyTOFU(ctx, officer, key); err != nil {
		if pending, _ := ids.PendingMasterKey(ctx, officer); pending != key {
			return ErrIdentityChangedAgain
		}
		return fmt.Errorf("failed to trust the new master key: %w", err)
	}
	zerolog.Ctx(ctx).Info().Stringer("user_id", officer).Stringer("admin", admin).Stringer("master_key", key).
		Msg("An admin trusted an officer's new cross-signing identity")
	ids.renewRoomKeys(ctx, officer)
	if err := ids.Audit.Append(ctx, admin.String(), AuditIdentityTrusted, "", officer.String()+" "+auditMasterKey(key)); err != nil {
		return fmt.Errorf("failed to write audit row: %w", err)
	}
	if err := ids.tellUser(ctx, officer, ids.Config.validatedLanguage.T(msgIdentityTrustedOfficer, admin), false); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to tell an officer that their identity is trusted")
	}
	return nil
}

// cmdTrust is `trust @officer:domain KEY`: an admin trusts an officer's new
// identity after checking with them by another channel. With the officer
// alone it says what waits and the command to give.
func (oc *officerCommands) cmdTrust(ce *commands.Event) {
	lang := oc.Config.validatedLanguage
	if !ce.User.Permissions.Admin {
		ce.Log.Info().Stringer("user_id", ce.User.MXID).Msg("Refused trust from a user who is not an admin")
		oc.reply(ce, lang.T(msgTrustAdminOnly))
		return
	}
	if len(ce.Args) < 1 || len(ce.Args) > 2 {
		oc.reply(ce, lang.T(msgTrustUsage, oc.Config.commandPrefix))
		return
	}
	officer := id.UserID(ce.Args[0])
	if local, _, err := officer.ParseAndValidateRelaxed(); err != nil || local == "" {
		oc.reply(ce, lang.T(msgTrustUsage, oc.Config.commandPrefix))
		return
	} else if officer == ce.User.MXID {
		oc.reply(ce, lang.T(msgTrustSelf))
		return
	} else if !oc.Bridge.Config.Permissions.Get(officer).Login {
		oc.reply(ce, lang.T(msgTrustNotOfficer, officer))
		return
	}
	pending, err := oc.Identities.PendingMasterKey(ce.Ctx, officer)
	if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to read an officer's identity")
		return
	} else if pending == "" {
		oc.reply(ce, lang.T(msgTrustNothing, officer))
		return
	} else if len(ce.Args) == 1 {
		oc.reply(ce, lang.T(msgTrustPending, officer, pending, oc.Config.commandPrefix))
		return
	}
	err = oc.Identities.Trust(ce.Ctx, officer, id.Ed25519(ce.Args[1]), ce.User.MXID)
	if errors.Is(err, ErrIdentityChangedAgain) {
		oc.reply(ce, lang.T(msgTrustChangedAgain, officer))
	} else if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to trust an officer's identity")
	} else {
		oc.reply(ce, lang.T(msgTrusted, officer))
	}
}
