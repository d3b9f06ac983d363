package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// liveServer serves the guest listener on a real loopback connection, where
// read and write deadlines exist.
func (ts *testServer) liveServer() *httptest.Server {
	srv := httptest.NewServer(ts.Handler())
	ts.t.Cleanup(srv.Close)
	return srv
}

// stalledUpload opens an upload whose body sends a form header and the first
// bytes of a PNG, then nothing. It returns when the request is on its way;
// the result comes on the channel.
func stalledUpload(t *testing.T, url string, cookie *http.Cookie, clientID string) (chan *http.Response, *io.PipeWriter) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	req, err := http.NewRequest("POST", url+"/api/files", pr)
	require.NoError(t, err)
	req.Header.Set("Origin", testOrigin)
	req.Header.Set("X-Sikkerchat", "1")
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.AddCookie(cookie)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- nil
			return
		}
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		done <- resp
	}()
	go func() {
		_ = mw.WriteField("client_id", clientID)
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="treg.png"`)
		h.Set("Content-Type", "image/png")
		part, _ := mw.CreatePart(h)
		_, _ = part.Write(pngBytes[:20]) // and then the guest's phone goes quiet
	}()
	return done, pw
}

func uploadOver(t *testing.T, url string, cookie *http.Cookie, clientID string, data []byte) *http.Response {
	body, ct := multipartBody(t, clientID, "bilde.png", "image/png", data)
	req, err := http.NewRequest("POST", url+"/api/files", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Origin", testOrigin)
	req.Header.Set("X-Sikkerchat", "1")
	req.Header.Set("Content-Type", ct)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp
}

// Uploads that stall hold only their own conversation's slots, and only
// until the idle timeout; nothing of them is kept.
func TestStalledUploadsDoNotStopOtherConversations(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	ts.transferIdle = 2 * time.Second
	for _, l := range []*limiter{ts.joinLimit, ts.messageLimit, ts.fileLimit, ts.ipLimit} {
		l.rate, l.burst = 1e6, 1e6
	}
	srv := ts.liveServer()
	// Four conversations, each with an upload that stalls.
	var stalled []chan *http.Response
	var cookies []*http.Cookie
	for i := range 4 {
		cookie := ts.join(ts.newInvite(time.Hour))
		cookies = append(cookies, cookie)
		done, pw := stalledUpload(t, srv.URL, cookie, fmt.Sprintf("stalled-client-%04d", i))
		defer pw.Close()
		stalled = append(stalled, done)
	}
	require.Eventually(t, func() bool {
		ts.uploadSlots.lock.Lock()
		defer ts.uploadSlots.lock.Unlock()
		return len(ts.uploadSlots.used) == 4
	}, 5*time.Second, 10*time.Millisecond, "the four uploads are under way")

	// Another conversation sends a file at once.
	other := ts.join(ts.newInvite(time.Hour))
	resp := uploadOver(t, srv.URL, other, "fresh-client-00001", pngBytes)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	// A stalled conversation has a second slot; a third upload waits its turn.
	done2, pw2 := stalledUpload(t, srv.URL, cookies[0], "stalled-client-0100")
	defer pw2.Close()
	require.Eventually(t, func() bool {
		ts.uploadSlots.lock.Lock()
		defer ts.uploadSlots.lock.Unlock()
		return ts.uploadSlots.used[ts.conversationOfCookie(cookies[0])] == 2
	}, 5*time.Second, 10*time.Millisecond)
	resp = uploadOver(t, srv.URL, cookies[0], "third-client-00001", pngBytes)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	// The stalled ones are cut off after the idle timeout, and leave nothing.
	for _, done := range append(stalled, done2) {
		select {
		case resp := <-done:
			require.NotNil(t, resp)
			require.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
		case <-time.After(30 * time.Second):
			t.Fatal("a stalled upload was never cut off")
		}
	}
	var files int
	require.NoError(t, ts.sc.DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM sikkerchat_file WHERE chunks < 0").Scan(&files))
	require.Zero(t, files, "no half-stored upload is left")
	require.NoError(t, ts.sc.DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM sikkerchat_file_chunk").Scan(&files))
	require.LessOrEqual(t, files, 1, "only the delivered file's chunk, if the outbox has not dropped it yet")
	ts.uploadSlots.lock.Lock()
	require.Empty(t, ts.uploadSlots.used, "every slot is back")
	ts.uploadSlots.lock.Unlock()
	// And the conversations can send again.
	resp = uploadOver(t, srv.URL, cookies[0], "after-stall-client-01", pngBytes)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
}

func (ts *testServer) conversationOfCookie(cookie *http.Cookie) string {
	_, conv, err := ts.sc.Guests.CheckSession(context.Background(), cookie.Value)
	require.NoError(ts.t, err)
	return conv.ID
}

// A large file goes out a chunk at a time and arrives whole; a reader that
// stops reading is cut off and its slot comes back.
func TestDownloadsStreamAndSlowReadersAreCutOff(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	ts.transferIdle = time.Second
	srv := ts.liveServer()
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	big := append(append([]byte{}, pngBytes...), bytes.Repeat([]byte("sikkerchat"), 1_600_000)...) // 16 MB, 245 chunks
	fileID := ts.officerFile(inv.conv.ID, "stor.png", big)

	get := func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", srv.URL+"/api/files/"+fileID, nil)
		req.AddCookie(cookie)
		return http.DefaultClient.Do(req)
	}
	resp, err := get()
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, sha256.Sum256(big), sha256.Sum256(got))
	require.Equal(t, fmt.Sprint(len(big)), resp.Header.Get("Content-Length"))

	// Three readers that never read: the connection's buffers fill, the
	// writes stall, the deadline ends them.
	var conns []net.Conn
	for range downloadsPerConversation {
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		require.NoError(t, err)
		conns = append(conns, conn)
		_, err = fmt.Fprintf(conn, "GET /api/files/%s HTTP/1.1\r\nHost: x\r\nCookie: %s=%s\r\n\r\n", fileID, cookie.Name, cookie.Value)
		require.NoError(t, err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	require.Eventually(t, func() bool {
		ts.downloadSlots.lock.Lock()
		defer ts.downloadSlots.lock.Unlock()
		return ts.downloadSlots.used[inv.conv.ID] == downloadsPerConversation
	}, 5*time.Second, 5*time.Millisecond)
	resp, err = get()
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the conversation's download slots are taken")
	require.Eventually(t, func() bool {
		ts.downloadSlots.lock.Lock()
		defer ts.downloadSlots.lock.Unlock()
		return len(ts.downloadSlots.used) == 0
	}, 30*time.Second, 20*time.Millisecond, "the stalled downloads are cut off")
	resp, err = get()
	require.NoError(t, err)
	got, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, len(big), len(got))
}
