package web

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A flood from more addresses than the limiter keeps buckets for is limited
// as one, and memory stays bounded; known keys keep their own buckets.
func TestLimiterKeysAreCapped(t *testing.T) {
	l := newLimiter(60, 3)
	l.maxKeys = 100
	now := time.Now()
	ok, _ := l.allow("known", now)
	require.True(t, ok)
	allowed := 0
	for i := range 10_000 {
		if ok, _ := l.allow(fmt.Sprintf("203.0.113.%d/%d", i%250, i), now); ok {
			allowed++
		}
	}
	require.LessOrEqual(t, len(l.buckets), 101, "at most maxKeys buckets and the shared one")
	require.Less(t, allowed, 200, "the flood beyond the cap shares one bucket")
	ok, _ = l.allow("known", now)
	require.True(t, ok, "a key with its own bucket keeps it")
	// Once the buckets have refilled they are dropped and new keys get their own again.
	later := now.Add(time.Hour)
	ok, _ = l.allow("newcomer", later)
	require.True(t, ok)
	require.Less(t, len(l.buckets), 5)
}
