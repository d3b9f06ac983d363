package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/internal/matrixtest"
	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

// The guest API on arbitrary request bodies: always a JSON answer below 500.
func FuzzGuestAPIBodies(f *testing.F) {
	for _, seed := range []string{`{"token":"x","code":"y"}`, `{"client_id":"aaaaaaaaaaaaaaaa","text":"hei"}`, `{"typing":true}`, `{"seq":1}`, `[]`, `{`, `null`, "\x00", `{"text":"` + strings.Repeat("å", 100) + `"}`} {
		f.Add(seed, "/api/messages")
		f.Add(seed, "/api/join")
	}
	shared := newFuzzServer(f, 0)
	f.Fuzz(func(t *testing.T, body, path string) {
		if _, err := url.ParseRequestURI(path); err != nil || !strings.HasPrefix(path, "/api/") || strings.ContainsAny(path, " #?%") {
			return // not a request line net/http would read (httptest.NewRequest panics on it)
		}
		srv := shared.forInput(t)
		cookie := srv.join(srv.newInvite(time.Hour))
		res := srv.request(http.MethodPost, path, body, nil, cookie)
		requireGuestAnswer(t, srv, res, "POST "+path)
	})
}

// Last-Event-ID is guest input too.
func FuzzLastEventID(f *testing.F) {
	for _, seed := range []string{"", "0", "1", "-1", "abc", "99999999999999999999", " 3"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, last string) {
		if strings.ContainsAny(last, "\r\n\x00") {
			return
		}
		srv := newTestServer(t, newTestConfig(t))
		cookie := srv.join(srv.newInvite(time.Hour))
		// The stream ends as soon as its answer has begun (a page that went
		// away), not after a fixed time: a deadline would also cut the
		// session check short on a slow machine.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req := httptest.NewRequest(http.MethodGet, "/api/events", nil).WithContext(ctx)
		req.Header.Set("Last-Event-ID", last)
		req.AddCookie(cookie)
		rec := &cancelOnAnswer{ResponseRecorder: httptest.NewRecorder(), cancel: cancel}
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("Last-Event-ID %q answered %d", last, rec.Code)
		}
	})
}

// cancelOnAnswer ends the request's context once the handler has begun its
// answer.
type cancelOnAnswer struct {
	*httptest.ResponseRecorder
	cancel func()
}

func (c *cancelOnAnswer) WriteHeader(code int) {
	c.ResponseRecorder.WriteHeader(code)
	c.cancel()
}

func (c *cancelOnAnswer) Write(b []byte) (int, error) {
	defer c.cancel()
	return c.ResponseRecorder.Write(b)
}

// newFuzzServer makes one guest server for a whole fuzzing process: a fresh
// database per input would spend the run on schema upgrades. Each input still
// gets its own conversation (forInput, then newInvite and join), and the rate
// limits are lifted so that every input reaches the handler. The outbox does
// not run: a file a guest sent stays stored for the checks.
func newFuzzServer(f *testing.F, maxFileBytes int64) *testServer {
	f.Helper()
	var cfg bridge.Config
	require.NoError(f, yaml.Unmarshal([]byte(bridge.ExampleConfig), &cfg))
	cfg.MasterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	cfg.KeyDir = f.TempDir()
	if maxFileBytes > 0 {
		cfg.Guest.MaxFileBytes = maxFileBytes
	}
	raw, _ := testdb.New(f)
	fm := &matrixtest.Fake{}
	sc, err := bridge.NewDetached(context.Background(), cfg, raw, fm)
	require.NoError(f, err)
	// Only errors are kept (a recovered panic is one), and only for one input.
	logs := &lockedBuffer{}
	srv := New(sc, zerolog.New(logs).Level(zerolog.ErrorLevel))
	for _, l := range []*limiter{srv.joinLimit, srv.messageLimit, srv.fileLimit, srv.ipLimit} {
		l.rate, l.burst = 1e12, 1e12
	}
	f.Cleanup(func() { sc.WaitBackground(time.Minute) })
	return &testServer{Server: srv, sc: sc, matrix: fm, logs: logs}
}

// forInput lends the shared fuzz server to one input's test, with what the
// previous inputs left in memory dropped.
func (ts *testServer) forInput(t *testing.T) *testServer {
	ts.matrix.Reset()
	ts.logs.lock.Lock()
	ts.logs.buf.Reset()
	ts.logs.lock.Unlock()
	return &testServer{Server: ts.Server, t: t, sc: ts.sc, matrix: ts.matrix, logs: ts.logs}
}

// requireGuestAnswer checks what every guest API answer must be: below 500,
// and on a 4xx a JSON error body with a namespaced errcode.
func requireGuestAnswer(t *testing.T, ts *testServer, res response, what string) {
	t.Helper()
	if res.Code >= 500 {
		t.Fatalf("%s answered %d: %s\nlogs: %s", what, res.Code, res.Body.String(), ts.logs.String())
	}
	if res.Code < 400 {
		return
	}
	var body apiError
	if !strings.HasPrefix(res.Header().Get("Content-Type"), "application/json") || json.Unmarshal(res.Body.Bytes(), &body) != nil {
		t.Fatalf("%s answered %d without a JSON body: %q", what, res.Code, res.Body.String())
	}
	if !strings.HasPrefix(body.ErrCode, "NO.SIKKERCHAT.") || body.Error == "" {
		t.Fatalf("%s answered %d without an errcode: %q", what, res.Code, res.Body.String())
	}
}

// seedBoundary is the boundary of the hand-made multipart seeds.
const seedBoundary = "sikkerchat-fuzz-7f3a"

// formPart is one part of a hand-made multipart/form-data body, so that seeds
// can break the format where multipart.Writer would not.
func formPart(headers, data string) string {
	return "--" + seedBoundary + "\r\n" + headers + "\r\n\r\n" + data + "\r\n"
}

func fileHeaders(name, contentType string) string {
	return `Content-Disposition: form-data; name="file"; filename="` + name + `"` + "\r\nContent-Type: " + contentType
}

// uploadedFiles reads a body as the standard library does, for what the guest
// sent as "file": the reference the stored bytes are held against.
// Request.MultipartReader takes multipart/mixed as well as form-data.
func uploadedFiles(contentType string, body []byte) ([][]byte, error) {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, err
	}
	boundary, ok := params["boundary"]
	if (mediaType != "multipart/form-data" && mediaType != "multipart/mixed") || !ok {
		return nil, errors.New("not multipart")
	}
	reader := multipart.NewReader(bytes.NewReader(body), boundary)
	var files [][]byte
	for {
		part, err := reader.NextPart()
		if errors.Is(err, io.EOF) {
			return files, nil
		} else if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return nil, err
		}
		if part.FormName() == "file" {
			files = append(files, data)
		}
	}
}

// Uploads with arbitrary bodies and Content-Type headers: a JSON answer below
// 500, a stored file only on a 2xx, and then exactly the bytes of the one
// file part, of an allowed type.
func FuzzMultipartUpload(f *testing.F) {
	const maxFile = 4096 // small, so that "too large" is within the fuzzer's reach
	ts := newFuzzServer(f, maxFile)
	ct := "multipart/form-data; boundary=" + seedBoundary
	end := "--" + seedBoundary + "--\r\n"
	clientID := formPart(`Content-Disposition: form-data; name="client_id"`, "fuzz-client-id-0001")
	png := formPart(fileHeaders("skjermbilde.png", "image/png"), string(pngBytes))
	pdf := formPart(fileHeaders("anmeldelse.pdf", "application/pdf"), string(pdfBytes))
	for _, seed := range []struct{ contentType, body string }{
		{ct, clientID + png + end},                                    // a valid PNG
		{ct, clientID + pdf + end},                                    // a valid PDF
		{ct, clientID + end},                                          // no file part
		{ct, clientID + png + pdf + end},                              // two files
		{"multipart/form-data; boundary=other", clientID + png + end}, // the wrong boundary
		{"multipart/form-data", clientID + png + end},                 // no boundary
		{"application/json", `{"client_id":"fuzz-client-id-0001"}`},   // not multipart
		{ct, clientID + formPart(fileHeaders(strings.Repeat("x", 20000)+".png", "image/png"), string(pngBytes)) + end}, // a huge part header
		{ct, (clientID + png + end)[:len(clientID)+len(png)/2]},                                                        // cut off inside the file
		{ct, clientID + png}, // no closing boundary
	} {
		f.Add(seed.contentType, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		if strings.ContainsAny(contentType, "\r\n\x00") {
			return // not a header value net/http would pass on
		}
		ts := ts.forInput(t)
		inv := ts.newInvite(time.Hour)
		cookie := ts.join(inv)
		res := ts.request(http.MethodPost, "/api/files", body, map[string]string{"Content-Type": contentType}, cookie)
		requireGuestAnswer(t, ts, res, "POST /api/files")

		ctx := context.Background()
		entries, err := ts.sc.Transcript.Since(ctx, inv.conv.ID, 0)
		require.NoError(t, err)
		var files []bridge.FileInfo
		for _, e := range entries {
			if info, ok := bridge.FileInfoOf(e); ok {
				files = append(files, info)
			}
		}
		var stored int
		require.NoError(t, ts.sc.DB.QueryRow(ctx, "SELECT COUNT(*) FROM sikkerchat_file WHERE conversation_id=$1", inv.conv.ID).Scan(&stored))
		switch {
		case res.Code >= 400:
			if len(files) != 0 || stored != 0 {
				t.Fatalf("answered %d but stored %d file entries and %d files", res.Code, len(files), stored)
			}
		case res.Code == http.StatusAccepted:
			sent, err := uploadedFiles(contentType, body)
			if err != nil || len(sent) != 1 {
				t.Fatalf("accepted a body the standard library reads as %d files (error %v)", len(sent), err)
			}
			if len(files) != 1 || stored != 1 {
				t.Fatalf("accepted, but %d file entries and %d files are stored", len(files), stored)
			}
			data, err := ts.sc.Transcript.File(ctx, inv.conv.ID, files[0].ID)
			require.NoError(t, err)
			if !bytes.Equal(data, sent[0]) {
				t.Fatalf("stored %d bytes that are not the %d uploaded", len(data), len(sent[0]))
			}
			if !bridge.FileTypeAllowed(files[0].Mime) || bridge.DetectFileType(data[:min(len(data), 512)]) != files[0].Mime {
				t.Fatalf("stored as %q, a type not allowed or not the bytes' own", files[0].Mime)
			}
		default:
			t.Fatalf("answered %d to a first upload", res.Code)
		}
	})
}

// Joining with fuzzed token and code word against a real invite ("{token}"
// and "{code}" stand for its own): only its token with its code word, in any
// spelling NormalizeCode accepts, opens a session, and a failed attempt never
// uses the link up while attempts are left.
func FuzzJoin(f *testing.F) {
	ts := newFuzzServer(f, 0)
	for _, seed := range [][2]string{
		{"{token}", "{code}"}, {"{token}", " {code}\t"}, {"{token}", "feil 12"}, {"{token}", ""}, {"{token}", " -. "},
		{"{token}=", "{code}"}, {"{token}\n", "{code}"}, {"x{token}", "{code}"}, {"", "{code}"}, {"{token}", "{code}{code}"},
		{strings.Repeat("A", 43), "{code}"}, {"%2F{token}", "{code}"}, {"{token}", "\x00{code}\xff"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, token, code string) {
		ts := ts.forInput(t)
		inv := ts.newInvite(time.Hour)
		body, err := json.Marshal(map[string]string{
			"token": strings.ReplaceAll(token, "{token}", inv.token),
			"code":  strings.ReplaceAll(code, "{code}", inv.code),
		})
		require.NoError(t, err)
		var sent struct{ Token, Code string } // as the server reads it: JSON has made the UTF-8 valid
		require.NoError(t, json.Unmarshal(body, &sent))
		res := ts.request(http.MethodPost, "/api/join", body, nil)
		requireGuestAnswer(t, ts, res, "POST /api/join")

		var session *http.Cookie
		for _, c := range res.Result().Cookies() {
			if c.Value != "" {
				session = c
			}
		}
		ownToken := sent.Token == inv.token
		ownCode := bridge.NormalizeCode(sent.Code) == bridge.NormalizeCode(inv.code)
		want, wantCode := http.StatusBadRequest, errBadToken
		switch {
		case ownToken && ownCode:
			want, wantCode = http.StatusOK, ""
		case ownToken && bridge.NormalizeCode(sent.Code) == "":
			wantCode = errCodeMissing
		case ownToken:
			want, wantCode = http.StatusForbidden, errCodeWrong
		case bridge.ParseInviteToken(sent.Token) == nil && bridge.NormalizeCode(sent.Code) == "":
			wantCode = errCodeMissing
		case bridge.ParseInviteToken(sent.Token) == nil:
			want, wantCode = http.StatusNotFound, errInviteUnknown
		}
		if res.Code != want || (wantCode != "" && res.errcode() != wantCode) || (session != nil) != (want == http.StatusOK) {
			t.Fatalf("token %q, code %q: answered %d %s (session %v), want %d %s",
				sent.Token, sent.Code, res.Code, res.Body.String(), session != nil, want, wantCode)
		}
		if session != nil {
			require.Equal(t, http.StatusOK, ts.request(http.MethodGet, "/api/session", nil, nil, session).Code, "the new session works")
		}
		if res.Code == http.StatusForbidden {
			left, _ := res.json()["attempts_left"].(float64)
			require.Equal(t, float64(ts.sc.Config.MaxCodeAttempts-1), left, "one wrong code word costs one attempt")
		}

		// The guest who has the link and the code word still gets in, once.
		again := ts.request(http.MethodPost, "/api/join", map[string]string{"token": inv.token, "code": inv.code}, nil)
		switch {
		case res.Code == http.StatusOK:
			require.Equal(t, http.StatusGone, again.Code, "a link opens one session")
			require.Equal(t, errInviteUsed, again.errcode())
		case res.Code == http.StatusForbidden && ts.sc.Config.MaxCodeAttempts == 1:
			require.Equal(t, http.StatusGone, again.Code, "the last attempt burns the link")
		default:
			require.Equal(t, http.StatusOK, again.Code, "a failed attempt must not use the link up: %s", again.Body.String())
		}
	})
}
