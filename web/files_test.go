package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// A 1×1 PNG and a minimal PDF, real enough for type detection.
var (
	pngBytes = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
	pdfBytes = []byte("%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
)

func multipartBody(t testing.TB, clientID, name, contentType string, data []byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if clientID != "" {
		require.NoError(t, mw.WriteField("client_id", clientID))
	}
	if data != nil {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, name))
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		part, err := mw.CreatePart(h)
		require.NoError(t, err)
		_, err = part.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, mw.Close())
	return buf.Bytes(), mw.FormDataContentType()
}

func TestFileUploadAndDownload(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	cookie := ts.join(ts.newInvite(time.Hour))
	for i, f := range []struct {
		name, ct string
		data     []byte
	}{{"skjermbilde.png", "image/png", pngBytes}, {"melding.pdf", "application/pdf", pdfBytes}} {
		clientID := fmt.Sprintf("file-client-id-%04d", i)
		body, ct := multipartBody(t, clientID, f.name, f.ct, f.data)
		res := ts.request("POST", "/api/files", body, map[string]string{"Content-Type": ct}, cookie)
		require.Equal(t, http.StatusAccepted, res.Code, res.Body.String())
		// The retry is the same file, not a second one.
		res = ts.request("POST", "/api/files", body, map[string]string{"Content-Type": ct}, cookie)
		require.Equal(t, http.StatusOK, res.Code, res.Body.String())

		sum := sha256.Sum256(f.data)
		require.Eventually(t, func() bool {
			sent, _ := ts.matrix.Snapshot()
			for _, s := range sent {
				if s == "file:"+f.name+":"+hex.EncodeToString(sum[:]) {
					return true
				}
			}
			return false
		}, 5*time.Second, 10*time.Millisecond, "the original bytes (by hash) went to the room")

		// Delivered: the bridge drops its copy of the guest's bytes.
		require.Eventually(t, func() bool {
			var n int
			_ = ts.sc.DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM sikkerchat_file").Scan(&n)
			return n == 0
		}, 5*time.Second, 10*time.Millisecond)
	}
	sent, _ := ts.matrix.Snapshot()
	require.Len(t, sent, 2)
}

// officerFile stores a file as if an officer had sent it in the room.
func (ts *testServer) officerFile(conversationID, name string, data []byte) string {
	ts.t.Helper()
	ctx := context.Background()
	info, err := ts.sc.Officers.StoreFile(ctx, conversationID, name, data)
	require.NoError(ts.t, err)
	entry := &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: id.EventID("$" + info.ID), CreatedAt: time.Now(), Kind: "file", Extra: info.Extras()}
	_, err = ts.sc.Transcript.Append(ctx, conversationID, entry)
	require.NoError(ts.t, err)
	return info.ID
}

func TestOfficerFileDownload(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	for _, f := range []struct {
		name, ct string
		data     []byte
	}{{"svar.png", "image/png", pngBytes}, {"info.pdf", "application/pdf", pdfBytes}, {"notat.txt", "application/octet-stream", []byte("ren tekst")}} {
		fileID := ts.officerFile(inv.conv.ID, f.name, f.data)
		res := ts.request("GET", "/api/files/"+fileID, nil, nil, cookie)
		require.Equal(t, http.StatusOK, res.Code)
		require.Equal(t, f.data, res.Body.Bytes())
		require.Equal(t, f.ct, res.Header().Get("Content-Type"), "unknown types are served as bytes, never sniffed")
		require.True(t, strings.HasPrefix(res.Header().Get("Content-Disposition"), "attachment"))
		require.Equal(t, "nosniff", res.Header().Get("X-Content-Type-Options"))
		res = ts.request("GET", "/api/files/"+fileID, nil, nil)
		require.Equal(t, http.StatusUnauthorized, res.Code, "no session, no file")
	}
}

func TestFileUploadErrors(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.Guest.MaxFileBytes = 4096
	ts := newTestServer(t, cfg)
	cookie := ts.join(ts.newInvite(time.Hour))
	big := append(append([]byte{}, pngBytes...), bytes.Repeat([]byte{0}, 5000)...)
	cases := []struct {
		name, clientID, fileName, ct string
		data                         []byte
		status                       int
		errcode                      string
	}{
		{"too large", "file-err-0000000001", "stor.png", "image/png", big, 413, errFileTooLarge},
		{"pdf claiming to be png", "file-err-0000000002", "lur.png", "image/png", pdfBytes, 422, errFileTypeMismatch},
		{"png claiming to be pdf", "file-err-0000000003", "lur.pdf", "application/pdf", pngBytes, 422, errFileTypeMismatch},
		{"text file", "file-err-0000000004", "notat.txt", "text/plain", []byte("hei på deg"), 415, errFileTypeRefused},
		{"html disguised as image", "file-err-0000000005", "x.png", "image/png", []byte("<html><script>alert(1)</script>"), 415, errFileTypeRefused},
		{"executable", "file-err-0000000006", "x.exe", "application/octet-stream", []byte("MZ\x90\x00\x03\x00\x00\x00"), 415, errFileTypeRefused},
		{"empty file", "file-err-0000000007", "tom.png", "image/png", []byte{}, 400, errFileMissing},
		{"no file part", "file-err-0000000008", "", "", nil, 400, errFileMissing},
		{"bad client id", "x", "a.png", "image/png", pngBytes, 400, errBadClientID},
	}
	for _, c := range cases {
		body, ct := multipartBody(t, c.clientID, c.fileName, c.ct, c.data)
		res := ts.request("POST", "/api/files", body, map[string]string{"Content-Type": ct}, cookie)
		require.Equal(t, c.status, res.Code, c.name+": "+res.Body.String())
		require.Equal(t, c.errcode, res.errcode(), c.name)
	}
	res := ts.request("POST", "/api/files", `{"not":"multipart"}`, nil, cookie)
	require.Equal(t, http.StatusBadRequest, res.Code)
	res = ts.request("GET", "/api/files/nope", nil, nil, cookie)
	require.Equal(t, http.StatusNotFound, res.Code)
	require.Equal(t, errFileNotFound, res.errcode())
	sent, _ := ts.matrix.Snapshot()
	require.Empty(t, sent, "nothing bad reached the room")

	// Another conversation's file is not reachable with this session.
	other := ts.newInvite(time.Hour)
	otherCookie := ts.join(other)
	body, ct := multipartBody(t, "file-other-00000001", "a.png", "image/png", pngBytes)
	res = ts.request("POST", "/api/files", body, map[string]string{"Content-Type": ct}, otherCookie)
	require.Equal(t, http.StatusAccepted, res.Code)
	otherFile := ts.officerFile(other.conv.ID, "hemmelig.png", pngBytes)
	res = ts.request("GET", "/api/files/"+otherFile, nil, nil, cookie)
	require.Equal(t, http.StatusNotFound, res.Code)
	res = ts.request("GET", "/api/files/"+otherFile, nil, nil, otherCookie)
	require.Equal(t, http.StatusOK, res.Code)
}

func TestFileNamesAreSafe(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	inv := ts.newInvite(time.Hour)
	cookie := ts.join(inv)
	fileID := ts.officerFile(inv.conv.ID, "../../etc/\"passwd\r\n.png", pngBytes)
	res := ts.request("GET", "/api/files/"+fileID, nil, nil, cookie)
	disp := res.Header().Get("Content-Disposition")
	require.NotContains(t, disp, "..")
	require.NotContains(t, disp, "/")
	require.NotContains(t, disp, "\r")
}

// The name a guest's file reaches the room with carries the extension of
// what its bytes are: a real PNG named .html arrives as .png.
func TestGuestFileNameTakesItsExtensionFromTheBytes(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	cookie := ts.join(ts.newInvite(time.Hour))
	for i, f := range []struct{ name, ct, want string }{
		{"side.html", "", "side.png"},
		{"bilde.exe", "image/png", "bilde.png"},
		{"skjerm.PNG", "image/png", "skjerm.png"},
		{"uten-navn", "", "uten-navn.png"},
	} {
		body, ct := multipartBody(t, fmt.Sprintf("rename-client-id-%04d", i), f.name, f.ct, pngBytes)
		res := ts.request("POST", "/api/files", body, map[string]string{"Content-Type": ct}, cookie)
		require.Equal(t, http.StatusAccepted, res.Code, res.Body.String())
	}
	require.Eventually(t, func() bool {
		ts.matrix.Lock()
		defer ts.matrix.Unlock()
		return len(ts.matrix.Files) == 4
	}, 5*time.Second, 10*time.Millisecond)
	ts.matrix.Lock()
	defer ts.matrix.Unlock()
	var names []string
	for _, f := range ts.matrix.Files {
		require.Equal(t, "image/png", f.Mime)
		names = append(names, f.Name)
	}
	require.Equal(t, []string{"side.png", "bilde.png", "skjerm.png", "uten-navn.png"}, names)
}
