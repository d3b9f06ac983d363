package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
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

// slowBody sends a request on a raw connection that declares a 100-byte body
// and sends 10 bytes of it, then nothing. It returns the answer and how the
// connection ended after it.
func slowBody(t *testing.T, addr, method, path, origin string, cookie *http.Cookie) (*http.Response, []byte, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	// Far longer than the server's deadline: the test waits for the server
	// to act, and fails here only if it never does.
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: chat.example.no\r\nOrigin: %s\r\nX-Sikkerchat: 1\r\n"+
		"Content-Type: application/json\r\nContent-Length: 100\r\n", method, path, origin)
	if cookie != nil {
		head += fmt.Sprintf("Cookie: %s=%s\r\n", cookie.Name, cookie.Value)
	}
	_, err = io.WriteString(conn, head+"\r\n"+`{"text":"h`)
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err, "an answer comes")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	// What follows the answer: the end of the connection (io.EOF), or the
	// test's own deadline when the server keeps waiting for the body.
	_, err = br.ReadByte()
	return resp, body, err
}

// A request body that stops short of its Content-Length is cut off at the
// body deadline: the guest gets a JSON 408 and the connection is closed,
// whether the handler was reading the body or had answered without it (then
// net/http reads the rest before it answers, under the same deadline).
func TestSlowRequestBodiesAreCutOff(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	ts.bodyTimeout = 300 * time.Millisecond
	srv := ts.liveServer()
	addr := srv.Listener.Addr().String()
	cookie := ts.join(ts.newInvite(time.Hour))
	for _, tc := range []struct {
		name, method, path, origin string
		cookie                     *http.Cookie
		status                     int
		errcode                    string
	}{
		{"join", "POST", "/api/join", testOrigin, nil, http.StatusRequestTimeout, errRequestTimeout},
		{"message", "POST", "/api/messages", testOrigin, cookie, http.StatusRequestTimeout, errRequestTimeout},
		{"typing", "POST", "/api/typing", testOrigin, cookie, http.StatusRequestTimeout, errRequestTimeout},
		{"read", "POST", "/api/read", testOrigin, cookie, http.StatusRequestTimeout, errRequestTimeout},
		{"refused before its body is read", "POST", "/api/messages", "https://elsewhere.example", cookie, http.StatusForbidden, errBadOrigin},
		{"leave, which reads no body", "POST", "/api/leave", testOrigin, nil, http.StatusNoContent, ""},
		{"a GET with a body", "GET", "/api/session", "", cookie, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.resetLimits()
			resp, body, after := slowBody(t, addr, tc.method, tc.path, tc.origin, tc.cookie)
			require.Equal(t, tc.status, resp.StatusCode, string(body))
			if tc.errcode != "" {
				var e apiError
				require.NoError(t, json.Unmarshal(body, &e), string(body))
				require.Equal(t, tc.errcode, e.ErrCode)
			}
			require.ErrorIs(t, after, io.EOF, "the server closed the connection")
		})
	}

	// A body that arrives in time is taken.
	req, err := http.NewRequest("POST", srv.URL+"/api/messages", strings.NewReader(`{"client_id":"slow-body-client-0001","text":"hei"}`))
	require.NoError(t, err)
	req.Header.Set("Origin", testOrigin)
	req.Header.Set("X-Sikkerchat", "1")
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
}

// The body deadline comes off when the body has arrived: net/http then
// reads the connection in the background, and a deadline left there would
// cancel a request whose handler is still at work. (net/http takes it off
// itself when that read starts; this keeps it so.)
func TestBodyDeadlineEndsWithTheBody(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	ts.bodyTimeout = 200 * time.Millisecond
	srv := httptest.NewServer(ts.bodyDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			w.WriteHeader(http.StatusRequestTimeout)
			return
		}
		select {
		case <-r.Context().Done():
			w.WriteHeader(http.StatusGone)
		case <-time.After(3 * ts.bodyTimeout):
			w.WriteHeader(http.StatusOK)
		}
	})))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"text":"hei"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the request was not cancelled while its handler worked")
}

// An upload keeps its own rolling deadline: one that takes far longer than
// the body deadline, but keeps coming, is taken whole.
func TestUploadsOutlastTheBodyDeadline(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	ts.bodyTimeout = 200 * time.Millisecond
	srv := ts.liveServer()
	cookie := ts.join(ts.newInvite(time.Hour))
	body, ct := multipartBody(t, "trickle-client-00001", "bilde.png", "image/png", pngBytes)
	pr, pw := io.Pipe()
	go func() {
		// Five pieces, 150 ms apart: 600 ms in all, three times the body deadline.
		step := (len(body) + 4) / 5
		for i := 0; i < len(body); i += step {
			if i > 0 {
				time.Sleep(150 * time.Millisecond)
			}
			if _, err := pw.Write(body[i:min(i+step, len(body))]); err != nil {
				return
			}
		}
		_ = pw.Close()
	}()
	req, err := http.NewRequest("POST", srv.URL+"/api/files", pr)
	require.NoError(t, err)
	req.ContentLength = int64(len(body))
	req.Header.Set("Origin", testOrigin)
	req.Header.Set("X-Sikkerchat", "1")
	req.Header.Set("Content-Type", ct)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode, string(answer))
}
