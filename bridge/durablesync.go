package bridge

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// The bridge bot's own /sync brings the to-device messages that carry
// officers' room keys. mautrix stores a sync response's next_batch token
// *before* it processes the response, so a bridge killed in between starts
// again after a batch it never processed: the homeserver has forgotten those
// to-device messages, the room keys in them are gone, and the officers'
// messages they unlock can never reach the guest. (Seen in the kill -9 test:
// one officer message in about six runs.) durableSyncCrypto stores each token
// only once the response it came with has been processed; after a crash the
// bot syncs from the last processed batch and gets the unfinished one again.

// A room key comes in an Olm-encrypted to-device message. mautrix stores
// the Olm session's new ratchet state and the message's hash (its guard
// against replays) as soon as it has decrypted the message, and the room
// key it carries a moment later. A bridge killed between the two gets the
// message again after the restart (the token above), but mautrix refuses it
// as a duplicate, and could not decrypt it anyway: the key is lost for good,
// and with it every officer message of that session. (Seen in the
// PostgreSQL kill -9 test: "Decrypted olm message" as the last line before
// the kill, then "Ignoring duplicate olm message" and "Didn't get session".)
// So each encrypted to-device message is handled in one database
// transaction with everything it carries: a crash leaves either all of it
// or none, and none means the message is decrypted again after the restart.
//
// The transaction is held by the sync loop only while one message is
// handled, and never together with bridgev2's encryption (gate): mautrix
// takes its Olm lock before it writes, and on SQLite the transaction holds
// the write lock from its start, so the two must not wait for each other. A
// wait for a room key returns only once the transaction that brought it has
// committed, so that the key is there when it is looked for.

// durableSyncCrypto is bridgev2's crypto helper with the sync token stored
// after processing and each encrypted to-device message handled atomically.
type durableSyncCrypto struct {
	matrix.Crypto
	store *processedSyncStore
	// db is the bridge database the crypto store lives in (its child shares
	// the transaction); nil: no atomic handling (tests of the token alone).
	db *dbutil.Database
	// gate: the sync loop's transaction (write) against bridgev2's encryption
	// and the waits for room keys (read).
	gate sync.RWMutex
}

var _ matrix.Crypto = (*durableSyncCrypto)(nil)

// toDeviceMachine is what the atomic handling needs of mautrix's OlmMachine
// (the crypto helper's syncer embeds it).
type toDeviceMachine interface {
	HandleDeviceLists(ctx context.Context, dl *mautrix.DeviceLists, since string)
	HandleToDeviceEvent(ctx context.Context, evt *event.Event)
}

// Init sets up the helper, then puts the deferring store in front of its
// client's and the atomic to-device handling in front of its syncer, before
// the sync loop starts (Start).
func (c *durableSyncCrypto) Init(ctx context.Context) error {
	if err := c.Crypto.Init(ctx); err != nil {
		return err
	}
	cli := c.Client()
	c.store = &processedSyncStore{SyncStore: cli.Store}
	cli.Store = c.store
	if mach, ok := cli.Syncer.(toDeviceMachine); ok && c.db != nil {
		cli.Syncer = &atomicToDeviceSyncer{Syncer: cli.Syncer, mach: mach, db: c.db, gate: &c.gate}
	} else {
		zerolog.Ctx(ctx).Warn().Msg("The crypto helper's syncer is not mautrix's: to-device messages are not handled atomically")
	}
	return nil
}

// Stop ends the sync loop; the last response it saw was processed by then,
// so its token is stored (else a clean restart would process it twice).
func (c *durableSyncCrypto) Stop() {
	c.Crypto.Stop()
	if c.store != nil {
		c.store.flush(context.Background())
	}
}

// Encrypt never runs while a to-device message's transaction is open.
func (c *durableSyncCrypto) Encrypt(ctx context.Context, roomID id.RoomID, evtType event.Type, content *event.Content) error {
	c.gate.RLock()
	defer c.gate.RUnlock()
	return c.Crypto.Encrypt(ctx, roomID, evtType, content)
}

// WaitForSession returns once the room key is committed, not merely announced.
func (c *durableSyncCrypto) WaitForSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, timeout time.Duration) bool {
	got := c.Crypto.WaitForSession(ctx, roomID, senderKey, sessionID, timeout)
	// An open transaction holds the gate until it has committed.
	c.gate.RLock()
	defer c.gate.RUnlock()
	return got
}

// atomicToDeviceSyncer handles a sync response's device lists and to-device
// messages itself, in mautrix's order, each encrypted message in a
// transaction of its own, and hands the rest of the response (one-time key
// counts, streams) to the crypto helper's syncer.
type atomicToDeviceSyncer struct {
	mautrix.Syncer
	mach toDeviceMachine
	db   *dbutil.Database
	gate *sync.RWMutex
}

func (s *atomicToDeviceSyncer) ProcessResponse(ctx context.Context, resp *mautrix.RespSync, since string) error {
	log := zerolog.Ctx(ctx)
	s.mach.HandleDeviceLists(ctx, &resp.DeviceLists, since)
	for _, evt := range resp.ToDevice.Events {
		evt.Type.Class = event.ToDeviceEventType
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			log.Warn().Str("event_type", evt.Type.Type).Err(err).Msg("Failed to parse to-device event")
			continue
		}
		if evt.Type == event.ToDeviceEncrypted {
			s.handleAtomically(ctx, evt)
		} else {
			_ = s.handle(ctx, evt)
		}
	}
	// What is left: the device lists and the to-device messages are done.
	resp.DeviceLists = mautrix.DeviceLists{}
	resp.ToDevice.Events = nil
	return s.Syncer.ProcessResponse(ctx, resp, since)
}

// handleAtomically handles one encrypted to-device message in a transaction:
// all it wrote, or (after a crash or a panic) nothing.
func (s *atomicToDeviceSyncer) handleAtomically(ctx context.Context, evt *event.Event) {
	s.gate.Lock()
	defer s.gate.Unlock()
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		return s.handle(ctx, evt)
	})
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Str("sender", evt.Sender.String()).Msg("Failed to commit an encrypted to-device message")
	}
}

// handle gives mautrix one to-device message; a panic is an error (and rolls
// the transaction back) instead of the end of the sync loop.
func (s *atomicToDeviceSyncer) handle(ctx context.Context, evt *event.Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			zerolog.Ctx(ctx).Error().Any("error", p).Str("stack", string(debug.Stack())).Msg("Handling a to-device message panicked")
			err = fmt.Errorf("handling a to-device message panicked: %v", p)
		}
	}()
	s.mach.HandleToDeviceEvent(ctx, evt)
	return nil
}

// processedSyncStore holds back each next_batch token until the sync loop
// asks to store the following one: the loop processes a response completely
// between the two calls, so the held token's response is done.
type processedSyncStore struct {
	mautrix.SyncStore
	lock        sync.Mutex
	pending     string
	pendingUser id.UserID
}

func (s *processedSyncStore) SaveNextBatch(ctx context.Context, userID id.UserID, token string) error {
	s.lock.Lock()
	done, doneUser := s.pending, s.pendingUser
	s.pending, s.pendingUser = token, userID
	s.lock.Unlock()
	if done == "" {
		return nil
	}
	return s.SyncStore.SaveNextBatch(ctx, doneUser, done)
}

// flush stores the token held back, once its response is known to be processed.
func (s *processedSyncStore) flush(ctx context.Context) {
	s.lock.Lock()
	done, doneUser := s.pending, s.pendingUser
	s.pending = ""
	s.lock.Unlock()
	if done != "" {
		_ = s.SyncStore.SaveNextBatch(ctx, doneUser, done)
	}
}
