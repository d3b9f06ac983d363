package bridge

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
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
