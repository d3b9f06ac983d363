package bridge

import (
	"context"
	"sync"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/matrix"
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

// durableSyncCrypto is bridgev2's crypto helper with the sync token stored
// after processing.
type durableSyncCrypto struct {
	matrix.Crypto
	store *processedSyncStore
}

var _ matrix.Crypto = (*durableSyncCrypto)(nil)

// Init sets up the helper, then puts the deferring store in front of its
// client's, before the sync loop starts (Start).
func (c *durableSyncCrypto) Init(ctx context.Context) error {
	if err := c.Crypto.Init(ctx); err != nil {
		return err
	}
	cli := c.Client()
	c.store = &processedSyncStore{SyncStore: cli.Store}
	cli.Store = c.store
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
