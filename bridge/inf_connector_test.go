package bridge

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/appservice"
)

// infService records its start and stop.
type infService struct {
	started, stopped bool
	fail             error
}

func (s *infService) Start(ctx context.Context) error {
	s.started = true
	return s.fail
}

func (s *infService) Stop() { s.stopped = true }

// infEncryption is the part of bridgev2's encryption config sikkerchat checks.
type infEncryption struct {
	allow, def, require bool
	receive, send       id.TrustState
}

// The bridge does not start when its Matrix config would let a
// conversation be unencrypted, or let devices no officer cross-signed read
// or write it; the guest listener is then never opened.
func TestBridgeRefusesToStartWithoutEncryptionOrTheDevicePolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(enc *infEncryption)
		wantErr error
	}{
		{"encryption not allowed", func(e *infEncryption) { e.allow = false }, ErrEncryptionRequired},
		{"not encrypted by default", func(e *infEncryption) { e.def = false }, ErrEncryptionRequired},
		{"encryption not required", func(e *infEncryption) { e.require = false }, ErrEncryptionRequired},
		{"any device receives", func(e *infEncryption) { e.receive = id.TrustStateUnset }, ErrUnverifiedDevices},
		{"any device sends", func(e *infEncryption) { e.send = id.TrustStateUnknownDevice }, ErrUnverifiedDevices},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := infEncryption{true, true, true, id.TrustStateCrossSignedTOFU, id.TrustStateCrossSignedTOFU}
			tc.setup(&enc)
			sc := infConnector(t)
			mc := infMatrixConnector(t, "")
			mc.Config.Encryption.Allow, mc.Config.Encryption.Default, mc.Config.Encryption.Require = enc.allow, enc.def, enc.require
			mc.Config.Encryption.VerificationLevels.Receive, mc.Config.Encryption.VerificationLevels.Send = enc.receive, enc.send
			sc.Bridge = &bridgev2.Bridge{Matrix: mc, Log: zerolog.Nop()}
			guestListener := &infService{}
			sc.AddService(guestListener)
			require.ErrorIs(t, sc.Start(context.Background()), tc.wantErr)
			require.False(t, guestListener.started)
		})
	}
	// The policy as documented passes the check.
	mc := infMatrixConnector(t, "")
	mc.Config.Encryption.Allow, mc.Config.Encryption.Default, mc.Config.Encryption.Require = true, true, true
	mc.Config.Encryption.VerificationLevels.Receive = id.TrustStateCrossSignedTOFU
	mc.Config.Encryption.VerificationLevels.Send = id.TrustStateCrossSignedVerified
	sc := &Connector{Bridge: &bridgev2.Bridge{Matrix: mc}}
	require.NoError(t, sc.checkEncryptionConfig())
}

// A master key that opens none of the conversation keys stops the bridge:
// running on would fail every open conversation at its next message.
func TestBridgeRefusesToStartWithTheWrongMasterKey(t *testing.T) {
	sc := infConnector(t)
	infConversationIn(t, sc, "!room:example.org")
	sc.Transcript = NewTranscript(sc.DB, sc.Transcript.Keys(), bytes.Repeat([]byte{0x42}, 32))
	sc.Bridge = &bridgev2.Bridge{Log: zerolog.Nop()}
	guestListener := &infService{}
	sc.AddService(guestListener)
	err := sc.Start(context.Background())
	require.ErrorIs(t, err, ErrWrongMasterKey)
	require.Contains(t, err.Error(), "(1 checked)")
	require.False(t, guestListener.started)
}

// At start, an upload a stop cut off is dropped (it was never shown to
// anyone), the services start, and a stop ends them again.
func TestBridgeStartDropsCutOffUploadsAndRunsItsServices(t *testing.T) {
	sc := infConnector(t)
	ctx := context.Background()
	conv := infConversationIn(t, sc, "!room:example.org")
	require.NoError(t, sc.DB.File.Begin(ctx, conv.ID, "cut-off", time.Now()))
	require.NoError(t, sc.DB.File.PutChunk(ctx, conv.ID, "cut-off", 0, []byte("half")))
	sc.Matrix = &infGuardSide{}
	sc.Bridge = &bridgev2.Bridge{Log: zerolog.Nop()}
	guestListener := &infService{}
	sc.AddService(guestListener)

	require.NoError(t, sc.Start(ctx))
	t.Cleanup(sc.Stop)
	require.True(t, guestListener.started)
	var chunks int
	require.NoError(t, sc.DB.QueryRow(ctx, "SELECT COUNT(*) FROM sikkerchat_file_chunk").Scan(&chunks))
	require.Zero(t, chunks)
	require.Nil(t, sc.Purger, "no admin token: nothing is purged (and an error is logged)")
	sc.Stop()
	require.True(t, guestListener.stopped)
}

// infGuardSide answers the room guard's start-up round: nobody unexpected in the room.
type infGuardSide struct{ infSide }

func (s *infGuardSide) GuardRoom(ctx context.Context, conv *Conversation) (map[id.UserID]event.Membership, error) {
	return nil, nil
}

// A service that cannot start (the guest listener's address is taken)
// stops the bridge's start with a clear error, as does a metrics address
// that cannot be listened on.
func TestBridgeStartReportsServicesThatCannotStart(t *testing.T) {
	sc := infConnector(t)
	sc.Bridge = &bridgev2.Bridge{Log: zerolog.Nop()}
	sc.AddService(&infService{fail: errors.New("address already in use")})
	err := sc.Start(context.Background())
	require.ErrorContains(t, err, "failed to start service: address already in use")

	sc = infConnector(t)
	sc.Bridge = &bridgev2.Bridge{Log: zerolog.Nop()}
	sc.Config.Metrics.Listen = "203.0.113.1:1"
	err = sc.Start(context.Background())
	t.Cleanup(sc.Stop)
	require.ErrorContains(t, err, "failed to start metrics listener")
}

// Closed rooms are purged through the admin API of the configured
// homeserver, at the homeserver's address, with the admin token.
func TestPurgerUsesTheConfiguredHomeserversAdminAPI(t *testing.T) {
	mc := infMatrixConnector(t, "https://matrix.politiet.example")
	sc := &Connector{Bridge: &bridgev2.Bridge{Matrix: mc, Log: zerolog.Nop()}}

	sc.setupPurger()
	require.Nil(t, sc.Purger, "no token, no purge")

	sc.Config.Purge = PurgeConfig{Homeserver: "synapse", AdminToken: "syt_admin"}
	sc.setupPurger()
	synapse, ok := sc.Purger.(*appservice.SynapseAdmin)
	require.True(t, ok)
	require.Equal(t, "https://matrix.politiet.example", synapse.BaseURL)
	require.Equal(t, "syt_admin", synapse.Token)
	require.Same(t, mc.AS.HTTPClient, synapse.HTTP)

	sc.Config.Purge.Homeserver = "dendrite"
	sc.setupPurger()
	dendrite, ok := sc.Purger.(*appservice.DendriteAdmin)
	require.True(t, ok)
	require.Equal(t, "https://matrix.politiet.example", dendrite.BaseURL)
}

// A guest is refused a file at upload when it is above the homeserver's
// limit, instead of it failing later on its way to the room.
func TestGuestFileLimitFollowsTheHomeserversUploadLimit(t *testing.T) {
	sc := infConnector(t)
	var logs bytes.Buffer
	sc.Bridge = &bridgev2.Bridge{Log: zerolog.New(&logs)}
	configured := sc.Config.Guest.MaxFileBytes
	require.Equal(t, configured, sc.Guests.MaxFileBytes(), "limit not known yet")

	sc.SetMaxFileSize(configured * 2)
	require.Equal(t, configured, sc.Guests.MaxFileBytes())
	require.Empty(t, logs.String())

	sc.SetMaxFileSize(10 << 20)
	require.Equal(t, int64(10<<20), sc.Guests.MaxFileBytes())
	require.Contains(t, logs.String(), "network.guest.max_file_bytes is above the homeserver's upload limit")
}

// The bridge's name and defaults as bridgev2 shows them to officers.
func TestBridgeNameAndCommandPrefix(t *testing.T) {
	name := (&Connector{}).GetName()
	require.Equal(t, "!sc", name.DefaultCommandPrefix)
	require.Equal(t, "sikkerchat", name.NetworkID)
	require.Equal(t, uint16(29345), name.DefaultPort)
}

// infSyncCrypto is bridgev2's crypto helper as far as its sync goes.
type infSyncCrypto struct {
	matrix.Crypto
	client   *mautrix.Client
	initErr  error
	stopped  bool
	syncInit bool
}

func (c *infSyncCrypto) Init(ctx context.Context) error {
	c.syncInit = true
	return c.initErr
}
func (c *infSyncCrypto) Client() *mautrix.Client { return c.client }
func (c *infSyncCrypto) Stop()                   { c.stopped = true }

// Wrapped around bridgev2's crypto helper, the bot's sync token is stored
// only once the response it came with was processed, and the last one when
// the bridge stops; a helper that fails to start is left as it was.
func TestDurableSyncWrapsTheBotsSyncStore(t *testing.T) {
	ctx := context.Background()
	inner := mautrix.NewMemorySyncStore()
	cli := &mautrix.Client{Store: inner}
	helper := &infSyncCrypto{client: cli}
	durable := &durableSyncCrypto{Crypto: helper}
	const bot = id.UserID("@sikkerchatbot:example.org")
	stored := func() string {
		token, err := inner.LoadNextBatch(ctx, bot)
		require.NoError(t, err)
		return token
	}

	require.NoError(t, durable.Init(ctx))
	require.True(t, helper.syncInit)
	require.NoError(t, cli.Store.SaveNextBatch(ctx, bot, "s1"))
	require.Equal(t, "", stored(), "a crash while processing s1's response syncs it again")
	require.NoError(t, cli.Store.SaveNextBatch(ctx, bot, "s2"))
	require.Equal(t, "s1", stored())
	durable.Stop()
	require.True(t, helper.stopped)
	require.Equal(t, "s2", stored())

	failing := &infSyncCrypto{client: &mautrix.Client{Store: inner}, initErr: errors.New("olm account missing")}
	durable = &durableSyncCrypto{Crypto: failing}
	require.ErrorContains(t, durable.Init(ctx), "olm account missing")
	require.Same(t, inner, failing.client.Store)
	durable.Stop() // never started: nothing to store, no panic
	require.True(t, failing.stopped)
}
