package web

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkGuestSendShare times the bridge's share of a guest message on its
// own, with nothing else on the machine: from the page's POST /api/messages
// arriving at the handler (security headers, rate limits, session check,
// sealing, storing with a synced commit, waking the outbox) until the send
// reaches the homeserver double. The full benchmark (scripts/bench.sh) takes
// the same span against Dendrite with its clients on the same cores; the
// difference between the two is what sharing the machine costs.
//
//	go test -tags goolm -run '^$' -bench GuestSendShare -benchtime 2000x ./web/
func BenchmarkGuestSendShare(b *testing.B) {
	cfg := newTestConfig(b)
	rl := &cfg.Guest.RateLimits
	rl.MessagesPerMinute, rl.PerAddressPerMinute, rl.JoinsPerMinute = 1<<20, 1<<20, 1<<20
	ts := newTestServer(b, cfg)
	cookie := ts.join(ts.newInvite(time.Hour))
	arrived := make(chan time.Time, 1)
	ts.matrix.OnSend = func(string) { arrived <- time.Now() }
	times := make([]time.Duration, 0, b.N)
	var gcBefore, gcAfter runtime.MemStats
	runtime.ReadMemStats(&gcBefore)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		res := ts.request("POST", "/api/messages", map[string]string{"client_id": fmt.Sprintf("bench-share-%010d", i), "text": "en kort melding"}, nil, cookie)
		if res.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", res.Code, res.Body.String())
		}
		times = append(times, (<-arrived).Sub(start))
	}
	b.StopTimer()
	runtime.ReadMemStats(&gcAfter)
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(gcAfter.NumGC-gcBefore.NumGC)/float64(b.N)*1000, "GCs/1000msg")
}
