// Package bridge is sikkerchat's bridgev2 network connector. The "remote
// network" is the guest web: a conversation is a portal, a guest is a ghost,
// and every permitted officer has one login that represents them.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/appservice"
	"github.com/sikkerchat/sikkerchat/bridge/scdb"
)

var (
	_ bridgev2.NetworkConnector        = (*Connector)(nil)
	_ bridgev2.ConfigValidatingNetwork = (*Connector)(nil)
	_ bridgev2.StoppableNetwork        = (*Connector)(nil)
	_ bridgev2.MaxFileSizeingNetwork   = (*Connector)(nil)
)

// Connector is the sikkerchat network connector: bridgev2's entry points and
// the start and stop of everything else. The work is done by its parts:
// Guests (the guest page's requests), Officers (officers' messages on the
// guest side), Conversations (a conversation's life), the Outbox and the
// Inbox (both ways, durably), the RoomGuard (who may be in a room) and
// Evidence (exports).
type Connector struct {
	Bridge     *bridgev2.Bridge
	Config     Config
	DB         *scdb.Database
	Transcript *Transcript
	Audit      *AuditTrail

	// Matrix does the guest's side of things in the room (bridgev2 in production).
	Matrix MatrixSide

	// Purger deletes rooms from the homeserver when retention ends (nil: none configured).
	Purger appservice.RoomPurger

	// Hub pushes what happens in a conversation to its open guest pages.
	Hub *Hub

	// Metrics counts and times what the bridge does (served when network.metrics.listen is set).
	Metrics *Metrics

	Guests        *Guests
	Officers      *Officers
	Conversations *Conversations
	Outbox        *Outbox
	Inbox         *Inbox
	Guard         *RoomGuard
	Evidence      *Evidence
	// Identities locks out officers whose cross-signing identity changed until an admin trusts it.
	Identities *Identities
	// Social is the patrol inbox; nil unless network.meta is configured.
	Social      *Social
	officerCmds *officerCommands

	// Services started with the bridge and stopped with it (the guest web listener).
	services []Service
	// startedAt is when this process began to serve (Init, or a standby's
	// takeover: ServingFrom); inbox events and outbox entries older than it
	// are left-overs of an earlier process.
	startedAt time.Time
	// homeserverMaxFile is the homeserver's upload limit (0: not known yet).
	homeserverMaxFile atomic.Int64
	stop              context.CancelFunc
	// StillActive says whether this process still holds the active role
	// (failover on PostgreSQL); nil: always. A former active stops sending
	// at once, before its watchdog has ended the process.
	StillActive func() bool
	// work counts the goroutines spawn started; Stop waits for them.
	work sync.WaitGroup
}

// setup makes the connector's parts over its database; Init (with bridgev2)
// and NewDetached (without) share it.
func (sc *Connector) setup(db *dbutil.Database, log dbutil.DatabaseLogger) error {
	sc.startedAt = time.Now()
	sc.DB = scdb.New(db, log)
	keys, err := NewKeyStore(sc.Config.KeyDir)
	if err != nil {
		return fmt.Errorf("failed to open the conversation key folder: %w", err)
	}
	sc.Transcript = NewTranscript(sc.DB, keys, sc.Config.masterKey)
	sc.Audit = &AuditTrail{db: sc.DB}
	sc.Hub = NewHub()
	sc.Metrics = NewMetrics(sc.DB.Conversation.CountByState)
	sc.Guests = &Guests{Connector: sc, background: newBackgroundSender()}
	sc.Officers = &Officers{Connector: sc}
	sc.Conversations = &Conversations{Connector: sc}
	sc.Outbox = newOutbox(sc)
	sc.Inbox = &Inbox{Connector: sc}
	sc.Guard = &RoomGuard{Connector: sc}
	sc.Evidence = &Evidence{Connector: sc}
	sc.Identities = &Identities{Connector: sc}
	return nil
}

// Service is something the connector runs beside bridgev2.
type Service interface {
	Start(ctx context.Context) error
	Stop()
}

// AddService registers a service to start and stop with the bridge. It must be
// called before Start.
func (sc *Connector) AddService(s Service) {
	sc.services = append(sc.services, s)
}

func (sc *Connector) Init(br *bridgev2.Bridge) {
	sc.Bridge = br
	if br.Config.CommandPrefix != "" {
		sc.Config.commandPrefix = br.Config.CommandPrefix
	}
	if err := sc.setup(br.DB.Database, dbutil.ZeroLogger(br.Log.With().Str("db_section", "sikkerchat").Logger())); err != nil {
		br.Log.WithLevel(zerolog.FatalLevel).Err(err).Msg("Failed to set up sikkerchat")
		os.Exit(15)
	}
	side := &bridgeMatrixSide{sc: sc}
	sc.Matrix = side
	sc.attachSocial(side)
	sc.officerCmds = registerCommands(sc, br.Commands.(*commands.Processor))
	if bot, ok := br.Bot.(*matrix.ASIntent); ok {
		br.Bot = &welcomeBot{ASIntent: bot, sc: sc}
	}
	if mc, ok := br.Matrix.(*matrix.Connector); ok {
		// Before bridgev2's handler: the gate must know what came without the prefix.
		mc.EventProcessor.PrependHandler(event.EventMessage, sc.officerCmds.note)
		if mc.Crypto != nil {
			mc.Crypto = &durableSyncCrypto{Crypto: mc.Crypto, db: br.DB.Database}
		}
		sc.Identities.attach(mc)
		sc.Inbox.intercept(mc)
		instrumentHomeserverClient(mc, sc.Metrics)
		mc.EventProcessor.On(event.StateMember, sc.Guard.onMember)
		mc.EventProcessor.On(event.EventRedaction, sc.Guard.onRedaction)
	}
}

func (sc *Connector) ValidateConfig() error {
	return sc.Config.validate()
}

func (sc *Connector) Start(ctx context.Context) error {
	sc.gateCommands()
	if err := sc.DB.Upgrade(ctx); err != nil {
		return bridgev2.DBUpgradeError{Err: err, Section: "sikkerchat"}
	}
	if err := sc.checkEncryptionConfig(); err != nil {
		return err
	}
	if checked, unreadable, err := sc.Transcript.CheckMasterKey(); err != nil {
		return fmt.Errorf("%w (%d checked)", err, checked)
	} else if unreadable > 0 {
		zerolog.Ctx(ctx).Error().Int("unreadable", unreadable).Int("checked", checked).
			Msg("Some conversation keys do not open with the master key; those conversations cannot be read")
	}
	if err := sc.DB.File.DeleteUnfinished(ctx); err != nil {
		return fmt.Errorf("failed to drop uploads a stop cut off: %w", err)
	}
	for _, s := range sc.services {
		if err := s.Start(ctx); err != nil {
			return fmt.Errorf("failed to start service: %w", err)
		}
	}
	// Messages stored while the bridge or the homeserver was down go out now.
	bgCtx, cancel := context.WithCancel(sc.Bridge.Log.WithContext(context.Background()))
	sc.stop = cancel
	if sc.Config.Metrics.Listen != "" {
		if err := sc.Metrics.Serve(bgCtx, sc.Config.Metrics.Listen, sc.Bridge.Log.With().Str("component", "metrics").Logger()); err != nil {
			return fmt.Errorf("failed to start metrics listener: %w", err)
		}
	}
	sc.Inbox.start(bgCtx)
	go sc.Outbox.Run(bgCtx)
	sc.setupPurger()
	registerProvisioning(sc)
	go sc.Conversations.run(bgCtx)
	go sc.Guard.guardRooms(bgCtx)
	if err := sc.startEphemeralSync(bgCtx); err != nil {
		return err
	}
	return nil
}

// startEphemeralSync makes officers' typing and read receipts reach the bridge
// when the homeserver does not push ephemeral events to appservices.
func (sc *Connector) startEphemeralSync(ctx context.Context) error {
	mc, ok := sc.Bridge.Matrix.(*matrix.Connector)
	if !ok || mc.Config.AppService.EphemeralEvents {
		return nil
	}
	cli, err := mautrix.NewClient(mc.Config.Homeserver.Address, sc.Bridge.Bot.GetMXID(), mc.Config.AppService.ASToken)
	if err != nil {
		return fmt.Errorf("failed to make ephemeral sync client: %w", err)
	}
	cli.SetAppServiceUserID = true
	cli.Log = sc.Bridge.Log.With().Str("component", "ephemeral_sync").Logger()
	cli.Client = mc.AS.HTTPClient
	es := &appservice.EphemeralSync{Client: cli, Dispatch: mc.EventProcessor.Dispatch}
	go es.Run(ctx)
	return nil
}

func (sc *Connector) Stop() {
	for _, s := range sc.services {
		s.Stop()
	}
	if sc.stop != nil {
		sc.stop()
	}
	sc.WaitBackground(stopWait)
}

// stopWait bounds how long Stop waits for background work (each piece of it
// has its own, shorter timeout on the homeserver).
const stopWait = 30 * time.Second

// spawn runs fn on a goroutine of its own that Stop waits for: work that
// outlives the request that started it (a join's notices, typing marks, a
// conversation's deliveries) still ends before the database closes.
func (sc *Connector) spawn(fn func()) {
	sc.work.Add(1)
	go func() {
		defer sc.work.Done()
		fn()
	}()
}

// WaitBackground waits up to limit for the work spawn started; false if
// some was still running.
func (sc *Connector) WaitBackground(limit time.Duration) bool {
	done := make(chan struct{})
	go func() {
		sc.work.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

// ErrEncryptionRequired stops the bridge when the config would let it create
// conversations that are not end-to-bridge encrypted.
var ErrEncryptionRequired = errors.New("sikkerchat requires end-to-bridge encryption: " +
	"set encryption.allow, encryption.default and encryption.require to true in the config")

// ErrUnverifiedDevices stops the bridge when the config would let devices
// that their owner never vouched for read or write a conversation.
var ErrUnverifiedDevices = errors.New("sikkerchat requires officers' devices to be cross-signed: set " +
	"encryption.verification_levels.receive and encryption.verification_levels.send to cross-signed-tofu (or stricter); " +
	"see the device policy in docs/setup-synapse.md")

// minDeviceTrust is the device policy: the guest's messages are encrypted
// only for devices their officer has cross-signed, with the officer's
// cross-signing identity trusted on first use, and only such devices can
// write to the guest. A device added with a stolen password, or by someone
// with access to the homeserver, gets nothing and can say nothing.
const minDeviceTrust = id.TrustStateCrossSignedTOFU

func (sc *Connector) checkEncryptionConfig() error {
	mc, ok := sc.Bridge.Matrix.(*matrix.Connector)
	if !ok {
		return nil // a test double of the Matrix side
	}
	enc := mc.Config.Encryption
	if !enc.Allow || !enc.Default || !enc.Require {
		return ErrEncryptionRequired
	}
	return checkDevicePolicy(enc.VerificationLevels.Receive, enc.VerificationLevels.Send)
}

func checkDevicePolicy(receive, send id.TrustState) error {
	if receive < minDeviceTrust || send < minDeviceTrust {
		return ErrUnverifiedDevices
	}
	return nil
}

func (sc *Connector) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{
		DisplayName:          "sikkerchat",
		NetworkURL:           "https://github.com/sikkerchat/sikkerchat",
		NetworkID:            "sikkerchat",
		BeeperBridgeType:     "github.com/sikkerchat/sikkerchat",
		DefaultPort:          29345,
		DefaultCommandPrefix: "!sc",
	}
}

func (sc *Connector) GetDBMetaTypes() database.MetaTypes {
	return database.MetaTypes{}
}

func (sc *Connector) GetBridgeInfoVersion() (info, capabilities int) {
	return 1, 1
}

// Officers never log in to anything: their login is created for them the
// first time they use a command (see ensureOfficerLogin).
func (sc *Connector) GetLoginFlows() []bridgev2.LoginFlow {
	return nil
}

func (sc *Connector) CreateLogin(ctx context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	return nil, fmt.Errorf("sikkerchat has no login flows")
}

func (sc *Connector) LoadUserLogin(ctx context.Context, login *bridgev2.UserLogin) error {
	login.Client = &OfficerClient{Connector: sc, Login: login}
	return nil
}

// officerLoginID is the login of an officer: their Matrix ID.
func officerLoginID(user *bridgev2.User) networkid.UserLoginID {
	return networkid.UserLoginID(user.MXID)
}

// NewDetached makes a connector without a bridgev2 bridge: only the guest side,
// over the given database and Matrix side. Handler tests and tools use it.
func NewDetached(ctx context.Context, cfg Config, db *dbutil.Database, m MatrixSide) (*Connector, error) {
	sc := &Connector{Config: cfg}
	if err := sc.Config.validate(); err != nil {
		return nil, err
	}
	if err := sc.setup(db, dbutil.NoopLogger); err != nil {
		return nil, err
	}
	if err := sc.DB.Upgrade(ctx); err != nil {
		return nil, err
	}
	sc.Matrix = m
	if room, ok := m.(SocialMatrix); ok {
		sc.attachSocial(room)
	}
	return sc, nil
}

// attachSocial starts the patrol inbox with the bridge when it is configured.
func (sc *Connector) attachSocial(room SocialMatrix) {
	if !sc.Config.Meta.Enabled() {
		return
	}
	sc.Social = newSocial(sc, room)
	sc.AddService(sc.Social)
}

// SetMaxFileSize learns the homeserver's upload limit: a guest file above it
// is refused at upload instead of failing later in the outbox.
func (sc *Connector) SetMaxFileSize(maxSize int64) {
	sc.homeserverMaxFile.Store(maxSize)
	if maxSize > 0 && maxSize < sc.Config.Guest.MaxFileBytes && sc.Bridge != nil {
		sc.Bridge.Log.Warn().Int64("homeserver_limit", maxSize).Int64("max_file_bytes", sc.Config.Guest.MaxFileBytes).
			Msg("network.guest.max_file_bytes is above the homeserver's upload limit; guests get the lower limit")
	}
}

func (sc *Connector) setupPurger() {
	token := sc.Config.Purge.AdminToken
	if token == "" {
		sc.Bridge.Log.Error().Msg("network.purge.admin_token is empty: closed rooms will not be purged when retention ends")
		return
	}
	mc, ok := sc.Bridge.Matrix.(*matrix.Connector)
	if !ok {
		return
	}
	api := appservice.AdminAPI{BaseURL: mc.Config.Homeserver.Address, Token: token, HTTP: mc.AS.HTTPClient}
	if sc.Config.Purge.Homeserver == "dendrite" {
		sc.Purger = &appservice.DendriteAdmin{AdminAPI: api}
	} else {
		sc.Purger = &appservice.SynapseAdmin{AdminAPI: api}
	}
}

// gateCommands puts commandGate in front of bridgev2's processor. It runs at
// Start, not Init: mxmain adds a command to the processor after Init. No
// officer's event is handled before Start (the inbox holds transactions until
// its replay, which Start begins).
func (sc *Connector) gateCommands() {
	if proc, ok := sc.Bridge.Commands.(*commands.Processor); ok && sc.officerCmds != nil {
		sc.Bridge.Commands = commandGate{Processor: proc, oc: sc.officerCmds}
	}
}

// errNotActive stops a send of a process that has lost the active role.
var errNotActive = errors.New("this process is no longer the active one")

// ServingFrom marks when this process began to serve: a standby that has
// just taken over calls it before bridgev2 starts its listeners, because
// what the former active stored after this process's Init (the inbox's
// officers' events, the guests' messages) is a left-over of that process,
// to be replayed and looked for, not something this one is handling.
func (sc *Connector) ServingFrom(t time.Time) {
	sc.startedAt = t
}

// active says whether this process may still act on the outside world.
func (sc *Connector) active() bool {
	return sc.StillActive == nil || sc.StillActive()
}
