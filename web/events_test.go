package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// An open, idle event stream is what a guest page costs while nobody
// writes, and a national service holds thousands of them. Over real TCP,
// with raw clients (a socket each, no goroutine, no buffers), the bridge's
// heap and goroutine stacks per stream stay under 30 KiB.
func TestIdleStreamMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of streams")
	}
	const streams = 300
	cfg := newTestConfig(t)
	cfg.Guest.RateLimits.PerAddressPerMinute = 1 << 20 // every client is 127.0.0.1
	ts := newTestServer(t, cfg)
	cookies := make([]string, streams)
	for i := range cookies {
		ts.resetLimits()
		c := ts.join(ts.newInvite(time.Hour))
		cookies[i] = c.Name + "=" + c.Value
	}
	srv := httptest.NewServer(ts.Handler())
	defer srv.Close()

	measure := func() (heap, stack uint64, goroutines int) {
		for range 3 {
			runtime.GC()
		}
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine()
	}
	open := func(cookie string) net.Conn {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		_, err = fmt.Fprintf(conn, "GET /api/events HTTP/1.1\r\nHost: guest\r\nCookie: %s\r\n\r\n", cookie)
		require.NoError(t, err)
		// The answer's head and the (empty) history's flush: the stream is open.
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
		status, err := bufio.NewReader(conn).ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(status, "HTTP/1.1 200"), status)
		return conn
	}
	// One stream first, so that what every stream shares (pools, the
	// handler's first use) is in the baseline.
	warm := open(cookies[0])
	defer warm.Close()
	streamsOpen := func() int { return int(metricValue(t, ts.sc.Metrics, "sikkerchat_guest_streams")) }
	require.Eventually(t, func() bool { return streamsOpen() == 1 }, 10*time.Second, 5*time.Millisecond)
	heap0, stack0, g0 := measure()
	conns := make([]net.Conn, 0, streams-1)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, c := range cookies[1:] {
		conns = append(conns, open(c))
	}
	require.Eventually(t, func() bool { return streamsOpen() == streams }, 30*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	heap1, stack1, g1 := measure()
	n := float64(len(conns))
	heapPer := (float64(heap1) - float64(heap0)) / n
	stackPer := (float64(stack1) - float64(stack0)) / n
	t.Logf("per idle stream: heap %.1f KiB, stacks %.1f KiB, total %.1f KiB, goroutines %.2f",
		heapPer/1024, stackPer/1024, (heapPer+stackPer)/1024, float64(g1-g0)/n)
	require.Less(t, heapPer+stackPer, 30*1024.0, "an idle stream costs under 30 KiB")
}

// openRawStream opens GET /api/events on a real connection and reads the
// answer's head.
func openRawStream(t *testing.T, addr, cookie string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest("GET", "http://guest/api/events", nil)
	req.Header.Set("Cookie", cookie)
	require.NoError(t, req.Write(conn))
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	require.NoError(t, err)
	return conn, br, resp
}

// On a real connection the stream leaves net/http: its answer still has
// every security header, a body that runs until the connection closes, and
// it still ends when the bridge stops, when the conversation closes, and
// as soon as the page has gone.
func TestTakenOverStreamKeepsTheContract(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	c := ts.join(inv)
	cookie := c.Name + "=" + c.Value
	srv := httptest.NewServer(ts.Handler())
	defer srv.Close()
	streamsOpen := func() int { return int(metricValue(t, ts.sc.Metrics, "sikkerchat_guest_streams")) }

	_, _, resp := openRawStream(t, srv.Listener.Addr().String(), cookie)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream; charset=utf-8", resp.Header.Get("Content-Type"))
	require.True(t, resp.Close, "the body runs until the connection closes")
	require.Empty(t, resp.TransferEncoding)
	for name, ok := range securityHeaderChecks {
		require.True(t, ok(resp.Header.Get(name)), "%s: %q", name, resp.Header.Get(name))
	}
	require.Equal(t, 1, streamsOpen())

	// Live events arrive; a closed conversation ends the stream.
	ctx := context.Background()
	entry := &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: "$o1", CreatedAt: time.Now(), Kind: "text", Text: "Hei fra politiet"}
	_, err := ts.sc.Transcript.Append(ctx, inv.conv.ID, entry)
	require.NoError(t, err)
	ts.sc.Hub.Publish(inv.conv.ID, bridge.GuestEvent{Kind: bridge.GuestEventMessage, Entry: entry})
	ts.sc.Hub.Publish(inv.conv.ID, bridge.GuestEvent{Kind: bridge.GuestEventClosed, Reason: "closed"})
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the stream ends with the connection")
	require.Contains(t, string(body), `"text":"Hei fra politiet"`)
	require.True(t, strings.HasSuffix(string(body), "event: closed\ndata: {\"reason\":\"closed\"}\n\n"), string(body))
	require.Eventually(t, func() bool { return streamsOpen() == 0 }, 5*time.Second, 5*time.Millisecond)

	// A page that went is let go at once, with nothing written to it.
	inv2 := ts.newInvite(time.Hour)
	ts.resetLimits()
	c2 := ts.join(inv2)
	conn, _, _ := openRawStream(t, srv.Listener.Addr().String(), c2.Name+"="+c2.Value)
	require.Equal(t, 1, streamsOpen())
	require.NoError(t, conn.Close())
	require.Eventually(t, func() bool {
		return streamsOpen() == 0 && ts.sc.Hub.Subscribers(inv2.conv.ID) == 0
	}, 10*time.Second, 5*time.Millisecond)

	// The bridge stopping ends every stream at once.
	inv3 := ts.newInvite(time.Hour)
	ts.resetLimits()
	c3 := ts.join(inv3)
	_, _, resp3 := openRawStream(t, srv.Listener.Addr().String(), c3.Name+"="+c3.Value)
	ts.Stop()
	_, err = io.ReadAll(resp3.Body)
	require.NoError(t, err, "ended, not hung")
	require.Equal(t, 0, streamsOpen())
}

// Only a verdict about the session ends a page's conversation; a database
// that cannot answer for a moment ends the stream without one, and the page
// asks again.
func TestHeartbeatWithoutVerdictSendsNoClosed(t *testing.T) {
	require.Equal(t, "session_expired", endReason(fmt.Errorf("x: %w", bridge.ErrSessionIdle)))
	require.Equal(t, "session_ended", endReason(bridge.ErrNoSession))
	require.Equal(t, "closed", endReason(bridge.ErrConversationNotOpen))
	require.Empty(t, endReason(errors.New("sql: database is closed")))
}
