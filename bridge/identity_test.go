package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// identityCrypto decrypts like offCrypto, says the sending device has the
// trust state trust, and records the bot's renewed room keys.
type identityCrypto struct {
	*offCrypto
	mu     sync.Mutex
	trust  id.TrustState
	fail   error
	resets []id.RoomID
}

func (c *identityCrypto) Decrypt(ctx context.Context, evt *event.Event) (*event.Event, error) {
	if c.fail != nil {
		return nil, c.fail
	}
	out, err := c.offCrypto.Decrypt(ctx, evt)
	if out != nil {
		c.mu.Lock()
		out.Mautrix.TrustState = c.trust
		c.mu.Unlock()
	}
	return out, err
}

func (c *identityCrypto) ResetSession(_ context.Context, room id.RoomID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resets = append(c.resets, room)
}

func (c *identityCrypto) renewed() []id.RoomID {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.resets
	c.resets = nil
	return out
}

// identityBridge is the officer side with mautrix's crypto store for the
// cross-signing keys and the identity gate in front of the crypto double.
type identityBridge struct {
	*offBridge
	store  *matrix.SQLCryptoStore
	crypto *identityCrypto
}

const (
	idKey1 = id.Ed25519("K1K1K1K1K1K1K1K1K1K1K1K1K1K1K1K1K1K1K1K1K1K")
	idKey2 = id.Ed25519("K2K2K2K2K2K2K2K2K2K2K2K2K2K2K2K2K2K2K2K2K2K")
	idKey3 = id.Ed25519("K3K3K3K3K3K3K3K3K3K3K3K3K3K3K3K3K3K3K3K3K3K")
)

func newIdentityBridge(t *testing.T, gate bool) *identityBridge {
	ob := newOffBridge(t, nil)
	store := matrix.NewSQLCryptoStore(ob.br.DB.Database, dbutil.NoopLogger, "sikkerchat", offBot, "@sikkerchat_%:example.org", "off-pickle-key")
	ib := &identityBridge{offBridge: ob, store: store, crypto: &identityCrypto{offCrypto: ob.crypto, trust: id.TrustStateCrossSignedTOFU}}
	ob.sc.Identities.keys = store
	ob.mc.Crypto = ib.crypto
	if gate {
		ob.mc.Crypto = &identityGate{Crypto: ib.crypto, ids: ob.sc.Identities}
	}
	// As in production: bridgev2 tells the sender when it drops an event.
	ob.mc.Config.Matrix.MessageErrorNotices = true
	ob.mc.Config.Encryption.VerificationLevels.Send = id.TrustStateCrossSignedTOFU
	require.NoError(t, ob.mc.StateStore.SetMembership(ob.ctx, ob.dm, offOfficer, event.MembershipJoin))
	return ib
}

// pin stores the master key the bridge sees for user now (the first one
// stays the first, as when mautrix fetches keys).
func (ib *identityBridge) pin(user id.UserID, key id.Ed25519) {
	require.NoError(ib.t, ib.store.PutCrossSigningKey(ib.ctx, user, id.XSUsageMaster, key))
}

// write sends an encrypted message from user into room as the homeserver
// hands it to bridgev2, which decrypts it, and returns its event ID.
func (ib *identityBridge) write(user id.UserID, room id.RoomID, body string) id.EventID {
	ib.t.Helper()
	ib.commands++
	eventID := id.EventID(fmt.Sprintf("$offwrite%d", ib.commands))
	content := &event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: body}}
	require.NoError(ib.t, ib.offBridge.crypto.Encrypt(ib.ctx, room, event.EventMessage, content))
	evt := &event.Event{Type: event.EventEncrypted, RoomID: room, ID: eventID, Sender: user, Timestamp: time.Now().UnixMilli(), Content: *content}
	ib.mc.EventProcessor.Dispatch(ib.ctx, evt)
	return eventID
}

// adminNotices are the notices in the admin's management room.
func (ib *identityBridge) adminNotices(admin id.UserID) []offMessage {
	user, err := ib.br.GetExistingUserByMXID(ib.ctx, admin)
	require.NoError(ib.t, err)
	if user == nil || user.ManagementRoom == "" {
		return nil
	}
	return ib.messages(user.ManagementRoom)
}

// identityRows are the audit rows about officers' identities, oldest first.
func (ib *identityBridge) identityRows() [][3]string {
	rows, err := ib.sc.DB.Audit.All(ib.ctx)
	require.NoError(ib.t, err)
	var out [][3]string
	for _, r := range rows {
		if strings.HasPrefix(r.Action, "identity_") {
			require.Empty(ib.t, r.ConversationID)
			out = append(out, [3]string{r.Action, r.Actor, r.Detail})
		}
	}
	require.NoError(ib.t, ib.sc.Audit.Verify(ib.ctx))
	return out
}

// The gate hands bridgev2 a stand-in, with nothing of the original, for
// exactly the events of officers whose identity changed: from a device
// signed by the new identity, or from any device bridgev2 would refuse while
// the change waits for an admin. Everything else is bridgev2's as before.
func TestIdentityGateTakesOutOnlyLockedOutOfficersEvents(t *testing.T) {
	ib := newIdentityBridge(t, true)
	ib.pin(offOfficer, idKey1)
	ib.pin(offColleague, idKey1)
	ib.pin(offColleague, idKey2) // the colleague's identity changed
	gate := ib.mc.Crypto.(*identityGate)
	for _, c := range []struct {
		name     string
		sender   id.UserID
		trust    id.TrustState
		standsIn bool
	}{
		{"trusted on first use", offOfficer, id.TrustStateCrossSignedTOFU, false},
		{"verified by the bridge", offOfficer, id.TrustStateCrossSignedVerified, false},
		{"signed by a new identity", offOfficer, id.TrustStateCrossSignedUntrusted, true},
		{"never cross-signed, identity unchanged: bridgev2's answer", offOfficer, id.TrustStateUnset, false},
		{"an old device after the identity changed", offColleague, id.TrustStateUnset, true},
		{"an unknown device after the identity changed", offColleague, id.TrustStateUnknownDevice, true},
		{"a changed identity's device", offColleague, id.TrustStateCrossSignedUntrusted, true},
		{"changed identity but trusted device (verified by hand)", offColleague, id.TrustStateVerified, false},
		{"blacklisted stays bridgev2's", offColleague, id.TrustStateBlacklisted, false},
		{"not an officer", offCmdsOnly, id.TrustStateCrossSignedUntrusted, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ib.crypto.trust = c.trust
			content := &event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: "hemmelig innhold"}}
			require.NoError(t, ib.offBridge.crypto.Encrypt(ib.ctx, ib.dm, event.EventMessage, content))
			in := &event.Event{Type: event.EventEncrypted, RoomID: ib.dm, ID: "$e", Sender: c.sender, Timestamp: 42, Content: *content}
			out, err := gate.Decrypt(ib.ctx, in)
			require.NoError(t, err)
			if !c.standsIn {
				require.Equal(t, event.EventMessage, out.Type)
				require.Equal(t, c.trust, out.Mautrix.TrustState, "bridgev2 judges the real trust state")
				return
			}
			require.Equal(t, lockedOutEventType, out.Type)
			require.Equal(t, [4]string{"$e", ib.dm.String(), c.sender.String(), "42"},
				[4]string{out.ID.String(), out.RoomID.String(), out.Sender.String(), fmt.Sprint(out.Timestamp)})
			require.Nil(t, out.Content.Parsed)
			require.Empty(t, out.Content.VeryRaw)
			require.Empty(t, out.Content.Raw)
			data, err := json.Marshal(out)
			require.NoError(t, err)
			require.NotContains(t, string(data), "hemmelig")
			require.True(t, out.Mautrix.WasEncrypted)
		})
	}
	ib.crypto.fail = errors.New("no session")
	_, err := gate.Decrypt(ib.ctx, &event.Event{Type: event.EventEncrypted, Sender: offOfficer, Content: event.Content{Parsed: &event.EncryptedEventContent{}}})
	require.ErrorIs(t, err, ib.crypto.fail, "a decryption error stays bridgev2's")
}

// An officer whose identity changed writes: bridgev2 passes nothing on (no
// conversation is made), the officer gets a plain notice in bokmål that their
// client can read (not encrypted, since their devices get no room keys) in
// place of bridgev2's encrypted English one, the admin is told once per new
// identity in their management room, the audit trail records it, and the
// bot's room keys in the officer's rooms are renewed.
func TestLockedOutOfficerIsToldInBokmalAndTheAdminsOnce(t *testing.T) {
	ib := newIdentityBridge(t, true)
	ib.pin(offOfficer, idKey1)
	ib.pin(offOfficer, idKey2)
	ib.crypto.trust = id.TrustStateCrossSignedUntrusted

	first := ib.write(offOfficer, ib.dm, "!sc new Ola Nordmann")
	answers := ib.answersTo(ib.dm, first)
	require.Len(t, answers, 1)
	notice := answers[0]
	require.False(t, notice.Encrypted, "the officer's devices get no room keys: the notice is sent unencrypted")
	require.Equal(t, "m.notice", notice.Content["msgtype"])
	require.Contains(t, notice.body(), "Krypteringsidentiteten din er endret")
	require.Contains(t, notice.body(), "Administratorene er varslet")
	require.NotContains(t, notice.body(), "Ola Nordmann")
	n, err := ib.sc.DB.Conversation.CountOpenByOfficer(ib.ctx, offOfficer)
	require.NoError(t, err)
	require.Zero(t, n, "the command did not run")

	toAdmin := ib.adminNotices(offAdmin)
	require.Len(t, toAdmin, 1, "the admin named in bridge.permissions is told in a management room made for them")
	require.True(t, toAdmin[0].Encrypted)
	require.Contains(t, toAdmin[0].body(), "Krypteringsidentiteten til "+offOfficer.String()+" er endret")
	require.Contains(t, toAdmin[0].body(), "!sc trust "+offOfficer.String()+" "+idKey2.String())
	require.Equal(t, [][3]string{{AuditIdentityChanged, offOfficer.String(), "master key " + idKey2.String()}}, ib.identityRows())
	require.Contains(t, ib.crypto.renewed(), ib.dm)

	// Again: told again, the admin not.
	second := ib.write(offOfficer, ib.dm, "!sc list")
	require.Len(t, ib.answersTo(ib.dm, second), 1)
	require.Len(t, ib.adminNotices(offAdmin), 1)
	require.Len(t, ib.identityRows(), 1)
	require.Empty(t, ib.crypto.renewed())

	// bridgev2's English notice (sent in the background) never comes.
	time.Sleep(300 * time.Millisecond)
	for _, m := range ib.messages(ib.dm) {
		require.NotContains(t, m.body(), "not bridged")
		require.NotContains(t, m.body(), "not trusted")
	}
	require.NotContains(t, ib.log.String(), "Ola Nordmann")
}

// What bridgev2 does on its own (the reason for the gate): its refusal is
// English, says nothing of what to do, and nobody else hears of it.
func TestWithoutTheGateBridgev2AnswersInEnglish(t *testing.T) {
	ib := newIdentityBridge(t, false)
	ib.pin(offOfficer, idKey1)
	ib.pin(offOfficer, idKey2)
	ib.crypto.trust = id.TrustStateCrossSignedUntrusted
	eventID := ib.write(offOfficer, ib.dm, "!sc new")
	require.Eventually(t, func() bool { return len(ib.answersTo(ib.dm, eventID)) > 0 }, 5*time.Second, 10*time.Millisecond)
	answer := ib.answersTo(ib.dm, eventID)[0]
	require.Contains(t, answer.body(), "cross-signing keys changed after setting up the bridge")
	require.Empty(t, ib.adminNotices(offAdmin))
}

// `trust`: only an admin, never for themselves, only for an officer, only
// the key that waits (named in full); then the officer is trusted again,
// told so, the trail says who trusted what, and the room keys are renewed. A
// later change locks the officer out again and the admin is told again.
func TestTrustCommandRepinsOnlyWhatAnAdminChecked(t *testing.T) {
	ib := newIdentityBridge(t, true)
	officerDM := id.RoomID("!officerdm:example.org")
	ib.inviteBot(offOfficer, officerDM)
	require.Eventually(t, func() bool {
		u, _ := ib.br.GetExistingUserByMXID(ib.ctx, offOfficer)
		return u != nil && u.ManagementRoom == officerDM
	}, 5*time.Second, 5*time.Millisecond)
	ib.pin(offOfficer, idKey1)
	ib.pin(offOfficer, idKey2)
	target := offOfficer.String()

	for _, c := range []struct {
		user id.UserID
		cmd  string
		want string
	}{
		{offColleague, "trust " + target + " " + idKey2.String(), "Bare en administrator kan godkjenne"},
		{offCmdsOnly, "trust " + target + " " + idKey2.String(), "du har ikke tilgang til sikkerchat"},
		{offAdmin, "trust", "Bruk: `!sc trust @betjent:domene NØKKEL`"},
		{offAdmin, "trust ikke-en-bruker", "Bruk: `!sc trust"},
		{offAdmin, "trust " + target + " " + idKey2.String() + " mer", "Bruk: `!sc trust"},
		{offAdmin, "trust " + offAdmin.String() + " " + idKey2.String(), "Du kan ikke godkjenne din egen identitet"},
		{offAdmin, "trust " + offCitizen.String() + " " + idKey2.String(), offCitizen.String() + " har ikke tilgang til sikkerchat"},
		{offAdmin, "trust " + offColleague.String(), offColleague.String() + " har ingen ny krypteringsidentitet"},
		{offAdmin, "trust " + target, "`!sc trust " + target + " " + idKey2.String() + "`"},
		{offAdmin, "trust " + target + " " + idKey1.String(), "Nøkkelen stemmer ikke"},
		{offAdmin, "trust " + target + " " + idKey2.String()[:20], "Nøkkelen stemmer ikke"},
	} {
		require.Contains(t, ib.reply(c.user, ib.dm, c.cmd).body(), c.want, "%s: %s", c.user, c.cmd)
		pending, err := ib.sc.Identities.PendingMasterKey(ib.ctx, offOfficer)
		require.NoError(t, err)
		require.Equal(t, idKey2, pending, "still waiting after %s: %s", c.user, c.cmd)
	}
	require.Empty(t, ib.identityRows())
	ib.crypto.renewed()

	require.Contains(t, ib.reply(offAdmin, ib.dm, "trust "+target+" "+idKey2.String()).body(), "er godkjent og ført i revisjonsloggen")
	keys, err := ib.store.GetCrossSigningKeys(ib.ctx, offOfficer)
	require.NoError(t, err)
	require.Equal(t, id.CrossSigningKey{Key: idKey2, First: idKey2}, keys[id.XSUsageMaster], "the new master key is the pinned one")
	require.Equal(t, [][3]string{{AuditIdentityTrusted, offAdmin.String(), target + " master key " + idKey2.String()}}, ib.identityRows())
	require.Contains(t, ib.crypto.renewed(), officerDM, "the officer's rooms get new room keys, shared with the new identity's devices")
	told := ib.messages(officerDM)
	require.Contains(t, told[len(told)-1].body(), "godkjent av "+offAdmin.String())
	require.True(t, told[len(told)-1].Encrypted)
	require.Contains(t, ib.reply(offAdmin, ib.dm, "trust "+target).body(), "har ingen ny krypteringsidentitet")

	// Trusted again: the officer's command runs.
	ib.crypto.trust = id.TrustStateCrossSignedTOFU
	require.False(t, ib.sc.Identities.lockedOut(ib.ctx, &event.Event{Sender: offOfficer, Mautrix: event.MautrixInfo{TrustState: id.TrustStateCrossSignedTOFU}}))

	// A new change locks them out again, and the admin hears of it again.
	ib.pin(offOfficer, idKey3)
	ib.crypto.trust = id.TrustStateCrossSignedUntrusted
	eventID := ib.write(offOfficer, ib.dm, "!sc help")
	require.Contains(t, ib.answersTo(ib.dm, eventID)[0].body(), "Krypteringsidentiteten din er endret")
	toAdmin := ib.adminNotices(offAdmin)
	require.Contains(t, toAdmin[len(toAdmin)-1].body(), idKey3.String())
	require.Equal(t, [3]string{AuditIdentityChanged, target, "master key " + idKey3.String()}, ib.identityRows()[1])
	require.Contains(t, ib.reply(offAdmin, ib.dm, "trust "+target+" "+idKey2.String()).body(), "Nøkkelen stemmer ikke",
		"the key trusted before is not the identity now")
}

// The re-pin is mautrix's own trust on first use again: ResolveTrust, as the
// bridge runs it for every officer's event and every room key it shares,
// calls a device of the officer cross-signed-tofu before the change,
// cross-signed-untrusted after it, trusted on first use again after
// Identities.Trust, and untrusted after the next change.
func TestTrustMakesMautrixTrustTheNewIdentity(t *testing.T) {
	ib := newIdentityBridge(t, true)
	cli, err := mautrix.NewClient(ib.hs.srv.URL, offBot, "as-token")
	require.NoError(t, err)
	mach := crypto.NewOlmMachine(cli, nil, ib.store, ib.mc.StateStore)
	device := &id.Device{UserID: offOfficer, DeviceID: "PHONE", SigningKey: "devicekeydevicekeydevicekeydevicekeydevice1"}
	// resetIdentity is what Element's "reset cryptographic identity" uploads:
	// a new master and self-signing key, and this device signed by the latter.
	resetIdentity := func(master, selfSigning id.Ed25519) {
		ib.pin(offOfficer, master)
		require.NoError(t, ib.store.PutCrossSigningKey(ib.ctx, offOfficer, id.XSUsageSelfSigning, selfSigning))
		require.NoError(t, ib.store.PutSignature(ib.ctx, offOfficer, selfSigning, offOfficer, master, "sig"))
		require.NoError(t, ib.store.PutSignature(ib.ctx, offOfficer, device.SigningKey, offOfficer, selfSigning, "sig"))
	}
	trust := func() id.TrustState {
		state, err := mach.ResolveTrustContext(ib.ctx, device)
		require.NoError(t, err)
		return state
	}
	resetIdentity(idKey1, "S1S1S1S1S1S1S1S1S1S1S1S1S1S1S1S1S1S1S1S1S1S")
	require.Equal(t, id.TrustStateCrossSignedTOFU, trust())
	resetIdentity(idKey2, "S2S2S2S2S2S2S2S2S2S2S2S2S2S2S2S2S2S2S2S2S2S")
	require.Equal(t, id.TrustStateCrossSignedUntrusted, trust())
	require.NoError(t, ib.sc.Identities.Trust(ib.ctx, offOfficer, idKey2, offAdmin))
	require.Equal(t, id.TrustStateCrossSignedTOFU, trust())
	resetIdentity(idKey3, "S3S3S3S3S3S3S3S3S3S3S3S3S3S3S3S3S3S3S3S3S3S")
	require.Equal(t, id.TrustStateCrossSignedUntrusted, trust())
	require.ErrorIs(t, ib.sc.Identities.Trust(ib.ctx, offOfficer, idKey2, offAdmin), ErrIdentityChangedAgain)
	require.Equal(t, id.TrustStateCrossSignedUntrusted, trust())
	require.True(t, slices.ContainsFunc(ib.identityRows(), func(r [3]string) bool { return r[0] == AuditIdentityTrusted }))
}

// The admins who are told: those named one by one with the admin level, and
// officers with a login whose admin level comes from their domain; never the
// officer whose identity changed, never a user level.
func TestAdminsToTellAreTheNamedOnesAndAdminsWithLogins(t *testing.T) {
	ib := newIdentityBridge(t, true)
	chief := id.UserID("@sjef:ledelse.example")
	admin := bridgeconfig.PermissionLevelAdmin
	ib.br.Config.Permissions["ledelse.example"] = &admin
	for _, u := range []id.UserID{chief, offOfficer, offAdmin} {
		user, err := ib.br.GetUserByMXID(ib.ctx, u)
		require.NoError(t, err)
		_, err = ib.sc.Conversations.ensureOfficerLogin(ib.ctx, user)
		require.NoError(t, err)
	}
	require.Equal(t, []id.UserID{offAdmin, chief}, ib.sc.Identities.admins(ib.ctx, offOfficer))
	require.Equal(t, []id.UserID{offAdmin}, ib.sc.Identities.admins(ib.ctx, chief), "never the officer themself")
	require.Equal(t, []id.UserID{chief}, ib.sc.Identities.admins(ib.ctx, offAdmin))
}
