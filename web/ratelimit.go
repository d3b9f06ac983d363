package web

import (
	"math"
	"sync"
	"time"
)

// limiter is a token bucket per key (IP address or session). Buckets that have
// refilled are dropped, and there are never more than maxKeys of them: when
// that many keys are busy at once (a flood from many addresses), new keys
// share one overflow bucket, so the flood is limited as one and memory stays
// bounded.
type limiter struct {
	rate    float64 // tokens per second
	burst   float64
	maxKeys int

	lock    sync.Mutex
	buckets map[string]*bucket
	lastGC  time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// limiterMaxKeys bounds each limiter's buckets (about 100 bytes each).
const limiterMaxKeys = 100_000

// overflowKey is the bucket that new keys share when the limiter is full.
const overflowKey = "\x00overflow"

func newLimiter(perMinute, burst int) *limiter {
	return &limiter{rate: float64(perMinute) / 60, burst: float64(burst), maxKeys: limiterMaxKeys, buckets: make(map[string]*bucket)}
}

// allow takes a token for key; when there is none it says how long to wait.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.lock.Lock()
	defer l.lock.Unlock()
	if now.Sub(l.lastGC) > time.Minute {
		l.gc(now)
	}
	b, ok := l.buckets[key]
	if !ok && len(l.buckets) >= l.maxKeys {
		l.gc(now)
		if len(l.buckets) >= l.maxKeys {
			key = overflowKey
			b, ok = l.buckets[key]
		}
	}
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

func (l *limiter) gc(now time.Time) {
	l.lastGC = now
	for key, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, key)
		}
	}
}
