package web

import (
	"math"
	"sync"
	"time"
)

// limiter is a token bucket per key (IP address or session). Buckets that have
// refilled are dropped, so memory stays bounded by the active keys.
type limiter struct {
	rate  float64 // tokens per second
	burst float64

	lock    sync.Mutex
	buckets map[string]*bucket
	lastGC  time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(perMinute, burst int) *limiter {
	return &limiter{rate: float64(perMinute) / 60, burst: float64(burst), buckets: make(map[string]*bucket)}
}

// allow takes a token for key; when there is none it says how long to wait.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.lock.Lock()
	defer l.lock.Unlock()
	if now.Sub(l.lastGC) > time.Minute {
		l.gc(now)
	}
	b, ok := l.buckets[key]
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
