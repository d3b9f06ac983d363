package bridge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

// The sync loop stores response k's token, then processes response k. A
// crash while processing must leave the token of response k-1 stored, so
// that response k comes again.
func TestSyncTokenIsStoredOnlyAfterItsResponseWasProcessed(t *testing.T) {
	ctx := context.Background()
	inner := mautrix.NewMemorySyncStore()
	store := &processedSyncStore{SyncStore: inner}
	const bot = id.UserID("@bot:x")
	stored := func() string {
		token, err := inner.LoadNextBatch(ctx, bot)
		require.NoError(t, err)
		return token
	}
	require.NoError(t, store.SaveNextBatch(ctx, bot, "s1")) // response 1 about to be processed
	require.Equal(t, "", stored(), "a crash now syncs from the start again")
	require.NoError(t, store.SaveNextBatch(ctx, bot, "s2")) // response 1 done, response 2 about to be processed
	require.Equal(t, "s1", stored())
	require.NoError(t, store.SaveNextBatch(ctx, bot, "s3"))
	require.Equal(t, "s2", stored())
	// A clean stop: the loop has ended, the last response it took is processed.
	store.flush(ctx)
	require.Equal(t, "s3", stored())
	store.flush(ctx)
	require.Equal(t, "s3", stored())
}

// fakeToDevice handles to-device messages as mautrix does a room key: first
// the Olm session's new state, then the key, in its own database (a child of
// the bridge's, as the crypto store is). A message from "@crash" dies in
// between, like a bridge killed there.
type fakeToDevice struct {
	t       *testing.T
	db      *dbutil.Database
	outside func() int
	handled []string
	// seenOutside is what another connection saw of the message's first write.
	seenOutside []int
}

func (f *fakeToDevice) HandleDeviceLists(ctx context.Context, dl *mautrix.DeviceLists, since string) {
}

func (f *fakeToDevice) HandleToDeviceEvent(ctx context.Context, evt *event.Event) {
	f.handled = append(f.handled, evt.Sender.String())
	_, err := f.db.Exec(ctx, `INSERT INTO test_to_device (sender, what) VALUES ($1, 'olm state')`, evt.Sender)
	require.NoError(f.t, err)
	if evt.Type == event.ToDeviceEncrypted {
		f.seenOutside = append(f.seenOutside, f.outside())
	}
	if evt.Sender == "@crash:x" {
		panic("killed between the Olm state and the room key")
	}
	_, err = f.db.Exec(ctx, `INSERT INTO test_to_device (sender, what) VALUES ($1, 'room key')`, evt.Sender)
	require.NoError(f.t, err)
}

type recordingSyncer struct {
	mautrix.Syncer
	got *mautrix.RespSync
}

func (r *recordingSyncer) ProcessResponse(ctx context.Context, resp *mautrix.RespSync, since string) error {
	r.got = resp
	return nil
}

// An encrypted to-device message is handled in one transaction with all it
// writes: a message that dies half-way leaves nothing (so that it is
// decrypted again when the homeserver sends it again after the restart),
// nothing of it is visible before it is whole, and the others are whole.
func TestEncryptedToDeviceMessagesAreHandledAtomically(t *testing.T) {
	ctx := context.Background()
	raw, _ := testdb.New(t)
	_, err := raw.Exec(ctx, `CREATE TABLE test_to_device (sender TEXT NOT NULL, what TEXT NOT NULL)`)
	require.NoError(t, err)
	count := func(sender string) int {
		var n int
		require.NoError(t, raw.QueryRow(ctx, `SELECT COUNT(*) FROM test_to_device WHERE sender=$1`, sender).Scan(&n))
		return n
	}
	store := raw.Child("test_crypto_version", dbutil.UpgradeTable{}, nil)
	mach := &fakeToDevice{t: t, db: store}
	var current string
	mach.outside = func() int { return count(current) }
	inner := &recordingSyncer{}
	var gate sync.RWMutex
	syncer := &atomicToDeviceSyncer{Syncer: inner, mach: mach, db: raw, gate: &gate}
	toDevice := func(sender, typ string) *event.Event {
		return &event.Event{Sender: id.UserID(sender), Type: event.Type{Type: typ}, Content: event.Content{VeryRaw: []byte(`{"algorithm":"m.olm.v1.curve25519-aes-sha2","sender_key":"k","ciphertext":{}}`)}}
	}
	resp := &mautrix.RespSync{NextBatch: "s2"}
	resp.ToDevice.Events = []*event.Event{
		toDevice("@before:x", event.ToDeviceEncrypted.Type),
		toDevice("@crash:x", event.ToDeviceEncrypted.Type),
		toDevice("@after:x", event.ToDeviceEncrypted.Type),
	}
	// What the test looks at from outside, per message.
	orig := mach.outside
	mach.outside = func() int {
		current = mach.handled[len(mach.handled)-1]
		return orig()
	}
	require.NoError(t, syncer.ProcessResponse(ctx, resp, "s1"))

	require.Equal(t, []string{"@before:x", "@crash:x", "@after:x"}, mach.handled, "in order, and the loop goes on after the one that died")
	require.Equal(t, []int{0, 0, 0}, mach.seenOutside, "nothing of a message is visible before it is whole")
	require.Equal(t, 2, count("@before:x"))
	require.Zero(t, count("@crash:x"), "the half-handled message left nothing: it will be decrypted again")
	require.Equal(t, 2, count("@after:x"))
	require.NotNil(t, inner.got, "the rest of the response goes to mautrix's syncer")
	require.Empty(t, inner.got.ToDevice.Events, "without the to-device messages it must not handle twice")
	// No transaction is left open (on SQLite it would hold the write lock).
	_, err = raw.Exec(ctx, `INSERT INTO test_to_device (sender, what) VALUES ('@later:x', 'x')`)
	require.NoError(t, err)
}

// A wait for a room key returns only once the transaction that brought it is
// committed, and bridgev2's encryption waits for it too.
func TestWaitsForRoomKeysEndAfterTheKeysTransaction(t *testing.T) {
	c := &durableSyncCrypto{Crypto: announcingCrypto{}}
	c.gate.Lock() // a to-device message's transaction is open
	waited, encrypted := make(chan bool), make(chan error)
	go func() { waited <- c.WaitForSession(context.Background(), "!r:x", "k", "s", time.Second) }()
	go func() { encrypted <- c.Encrypt(context.Background(), "!r:x", event.EventMessage, &event.Content{}) }()
	select {
	case <-waited:
		t.Fatal("the wait ended while the key's transaction was open")
	case <-encrypted:
		t.Fatal("encryption ran while the key's transaction was open")
	case <-time.After(100 * time.Millisecond):
	}
	c.gate.Unlock()
	require.True(t, <-waited)
	require.NoError(t, <-encrypted)
}

// announcingCrypto announces every room key at once and encrypts nothing.
type announcingCrypto struct{ matrix.Crypto }

func (announcingCrypto) WaitForSession(context.Context, id.RoomID, id.SenderKey, id.SessionID, time.Duration) bool {
	return true
}

func (announcingCrypto) Encrypt(context.Context, id.RoomID, event.Type, *event.Content) error {
	return nil
}
