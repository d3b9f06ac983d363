package bridge

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrUnknownSeq is a read marker for a message the guest cannot have seen.
var ErrUnknownSeq = errors.New("no such message")

// guestTypingTimeout is how long Matrix shows the guest as typing after the
// last typing call; the page repeats the call while the guest types.
const guestTypingTimeout = 10 * time.Second

// presenceTimeout bounds one typing or read mark's trip to the homeserver.
const presenceTimeout = 20 * time.Second

// inBackground sends a typing or read mark without holding up the guest's
// request: while the homeserver is slow or away, the page's calls must not
// pile up in front of its messages. Per key only the newest mark waits; a
// newer one replaces it.
func (g *Guests) inBackground(ctx context.Context, key string, fn func(ctx context.Context)) {
	bg := g.background
	bg.lock.Lock()
	bg.pending[key] = fn
	if bg.running[key] {
		bg.lock.Unlock()
		return
	}
	bg.running[key] = true
	bg.lock.Unlock()
	base := context.WithoutCancel(ctx)
	g.spawn(func() {
		for {
			bg.lock.Lock()
			next := bg.pending[key]
			delete(bg.pending, key)
			if next == nil {
				delete(bg.running, key)
				bg.lock.Unlock()
				return
			}
			bg.lock.Unlock()
			callCtx, cancel := context.WithTimeout(base, presenceTimeout)
			next(callCtx)
			cancel()
		}
	})
}

type backgroundSender struct {
	lock    sync.Mutex
	pending map[string]func(ctx context.Context)
	running map[string]bool
}

func newBackgroundSender() *backgroundSender {
	return &backgroundSender{pending: map[string]func(ctx context.Context){}, running: map[string]bool{}}
}
