package bridge

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/meta"
)

// countingBody records whether the listener read any of a request's body.
type countingBody struct {
	io.Reader
	read atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.Reader.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// A delivery without a well-formed signature header is refused before a
// byte of its body is read: no work for whoever has no app secret.
func TestWebhookWithoutSignatureIsRefusedUnread(t *testing.T) {
	b := newSocBridge(t, nil)
	for _, header := range []string{"", "sha1=" + strings.Repeat("a", 40), "sha256=", "sha256=" + strings.Repeat("g", 64), "sha256=" + strings.Repeat("a", 63), "SHA256=" + strings.Repeat("a", 64)} {
		body := &countingBody{Reader: strings.NewReader(strings.Repeat("x", 4<<20))}
		req := httptest.NewRequest(http.MethodPost, webhookPath, body)
		if header != "" {
			req.Header.Set(meta.SignatureHeader, header)
		}
		rec := httptest.NewRecorder()
		b.hook.ServeHTTP(rec, req)
		require.Equal(t, http.StatusUnauthorized, rec.Code, header)
		require.Zero(t, body.read.Load(), "%q: body read", header)
	}
	require.Zero(t, b.stored())
}

// At most maxConcurrentDeliveries deliveries are read at once; one more
// waits its turn briefly, then gets 503 with Retry-After (Meta sends it
// again), and nothing is kept of it.
func TestWebhookDeliveriesAreBoundedInNumber(t *testing.T) {
	b := newSocBridge(t, nil)
	for range maxConcurrentDeliveries {
		b.s.deliveries <- struct{}{}
	}
	body := messengerText("p1", "m_1", "hei", time.Now().UnixMilli())
	rec := b.postSigned(body)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, "5", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), "NO.SIKKERCHAT.UNAVAILABLE")
	require.Zero(t, b.stored())
	<-b.s.deliveries
	require.Equal(t, http.StatusOK, b.postSigned(body).Code, "a turn came free")
	require.Equal(t, 1, b.stored())
}

// Old events are not taken: a delivery whose events are all older than the
// replay window is refused, and the old events of a mixed batch are left
// out when it is split into lanes.
func TestWebhookEventsOlderThanTheReplayWindow(t *testing.T) {
	b := newSocBridge(t, nil)
	old := time.Now().Add(-40 * time.Hour).UnixMilli()
	rec := b.postSigned(messengerText("p_old", "m_old", "gammel", old))
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Contains(t, rec.Body.String(), "NO.SIKKERCHAT.META_STALE")
	require.Zero(t, b.stored())

	now := time.Now().UnixMilli()
	mixed := fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[
		{"sender":{"id":"p_old"},"recipient":{"id":%[1]q},"timestamp":%[3]d,"message":{"mid":"m_old","text":"gammel"}},
		{"sender":{"id":"p_new"},"recipient":{"id":%[1]q},"timestamp":%[2]d,"message":{"mid":"m_new","text":"ny"}}]}]}`, socPage, now, old)
	require.Equal(t, http.StatusOK, b.postSigned(mixed).Code)
	require.False(t, b.drain())
	all := b.conversations()
	require.Len(t, all, 1, "no room for the old event")
	require.Equal(t, []string{"ny"}, bodies(b.room.sentBy(b.conversationOf("p_new").GhostID)))
}

// The same body twice within the window is kept once (Meta's retry after a
// lost answer, or a replay); a replay of a handled message after its
// conversation was closed opens no new room.
func TestWebhookReplaysOpenNothing(t *testing.T) {
	b := newSocBridge(t, nil)
	now := time.Now().UnixMilli()
	body := messengerText("p1", "m_1", "hei", now)
	require.Equal(t, http.StatusOK, b.postSigned(body).Code)
	require.Equal(t, http.StatusOK, b.postSigned(body).Code)
	require.Equal(t, 1, b.stored())
	require.False(t, b.drain())
	th := b.onlyConversation()
	require.NoError(t, b.s.Close(b.ctx, th, string(socOfficer), "test"))

	// The same message in another batch (another body) after the close.
	again := fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":"p1"},"recipient":{"id":%[1]q},"timestamp":%[3]d,"message":{"mid":"m_1","text":"hei"}}]}]}`,
		socPage, now+60_000, now)
	require.Equal(t, http.StatusOK, b.postSigned(again).Code)
	require.False(t, b.drain())
	rooms, err := b.sc.DB.Social.ListWithRoom(b.ctx)
	require.NoError(t, err)
	require.Len(t, rooms, 1, "no new room for a message handled before")

	// After the window the digest is forgotten; the event's own ID still holds.
	require.NoError(t, b.sc.DB.MetaDelivery.ForgetSeen(b.ctx, time.Now().Add(time.Hour).UnixNano()))
	require.Equal(t, http.StatusOK, b.postSigned(body).Code)
	require.False(t, b.drain())
	rooms, _ = b.sc.DB.Social.ListWithRoom(b.ctx)
	require.Len(t, rooms, 1)
}
