package meta

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every documented error answer sorts into what sikkerchat does about it,
// whatever HTTP status it came with.
func TestGraphErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		file      string
		status    int
		class     ErrorClass
		retryable bool
	}{
		{"error_window_messenger.json", 400, ClassWindowClosed, false},
		{"error_window_instagram.json", 403, ClassWindowClosed, false},
		{"error_token.json", 400, ClassToken, false},
		{"error_human_agent.json", 400, ClassHumanAgentNotApproved, false},
		{"error_unavailable.json", 400, ClassUnavailable, false},
		{"error_rate.json", 400, ClassRateLimited, true},
		{"error_transient.json", 500, ClassTransient, true},
		{"error_no_profile.json", 400, ClassRefused, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write(fixture(t, "graph/"+tc.file))
			}))
			defer srv.Close()
			c := &Client{GraphURL: srv.URL}
			_, err := c.Send(context.Background(), "106512345678901", "page-token", Text("7010000000000001", "hei", TypeResponse, ""))
			require.Error(t, err)
			var ge *Error
			require.ErrorAs(t, err, &ge)
			require.Equal(t, tc.status, ge.HTTPStatus)
			require.NotEmpty(t, ge.FBTraceID)
			require.Equal(t, tc.class, ClassOf(err))
			require.Equal(t, tc.retryable, ge.Retryable())
			require.NotContains(t, err.Error(), ge.Message, "Meta's message may quote what was sent; it stays out of error strings")
		})
	}
	for status, class := range map[int]ErrorClass{502: ClassTransient, 503: ClassTransient, 429: ClassRateLimited, 401: ClassToken, 404: ClassRefused} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html>proxy error</html>", status)
		}))
		_, err := (&Client{GraphURL: srv.URL}).Send(context.Background(), "1", "t", Text("2", "x", TypeResponse, ""))
		srv.Close()
		require.Equal(t, class, ClassOf(err), "HTTP %d without a Graph body", status)
	}
	_, err := (&Client{GraphURL: "http://127.0.0.1:9"}).Send(context.Background(), "1", "t", Text("2", "x", TypeResponse, ""))
	require.Equal(t, ClassTransient, ClassOf(err), "a refused connection is retried")
}

// The Send API gets what Meta documents: JSON with recipient, messaging_type,
// tag only with MESSAGE_TAG, the token in the Authorization header (never in
// the URL, which ends up in logs) and appsecret_proof.
func TestSendRequestsAsMetaDocumentsThem(t *testing.T) {
	type got struct {
		path, query, auth, contentType string
		body                           []byte
	}
	calls := make(chan got, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		calls <- got{r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body}
		_, _ = w.Write(fixture(t, "graph/send_response.json"))
	}))
	defer srv.Close()
	c := &Client{GraphURL: srv.URL, AppSecret: "app-secret"}
	ctx := context.Background()

	resp, err := c.Send(ctx, "106512345678901", "page-token", Text("7010000000000001", "hei på deg", TypeResponse, ""))
	require.NoError(t, err)
	require.Equal(t, "5275811702471834", resp.RecipientID)
	require.True(t, strings.HasPrefix(resp.MessageID, "m_"))
	call := <-calls
	require.Equal(t, "/v25.0/106512345678901/messages", call.path)
	require.Equal(t, "Bearer page-token", call.auth)
	require.NotContains(t, call.query, "page-token")
	require.Equal(t, "appsecret_proof="+AppSecretProof("app-secret", "page-token"), call.query)
	require.Equal(t, "application/json", call.contentType)
	require.JSONEq(t, `{"recipient":{"id":"7010000000000001"},"messaging_type":"RESPONSE","message":{"text":"hei på deg"}}`, string(call.body))

	_, err = c.Send(ctx, "106512345678901", "page-token", Text("7010000000000001", "svar", TypeMessageTag, TagHumanAgent))
	require.NoError(t, err)
	call = <-calls
	require.JSONEq(t, `{"recipient":{"id":"7010000000000001"},"messaging_type":"MESSAGE_TAG","tag":"HUMAN_AGENT","message":{"text":"svar"}}`, string(call.body))

	_, err = c.Send(ctx, "106512345678901", "page-token", Action("7010000000000001", ActionTypingOn))
	require.NoError(t, err)
	call = <-calls
	require.JSONEq(t, `{"recipient":{"id":"7010000000000001"},"sender_action":"typing_on"}`, string(call.body), "a sender action carries nothing else")

	png := []byte("\x89PNG\r\n\x1a\nrest")
	_, err = c.Send(ctx, "106512345678901", "page-token", File("7010000000000001", TypeResponse, "", "bilde.png", "image/png", png))
	require.NoError(t, err)
	call = <-calls
	mediaType, params, err := mime.ParseMediaType(call.contentType)
	require.NoError(t, err)
	require.Equal(t, "multipart/form-data", mediaType)
	form, err := multipart.NewReader(strings.NewReader(string(call.body)), params["boundary"]).ReadForm(1 << 20)
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"7010000000000001"}`, form.Value["recipient"][0])
	require.Equal(t, "RESPONSE", form.Value["messaging_type"][0])
	var msg map[string]any
	require.NoError(t, json.Unmarshal([]byte(form.Value["message"][0]), &msg))
	require.Equal(t, "image", msg["attachment"].(map[string]any)["type"])
	fh := form.File["filedata"][0]
	require.Equal(t, "bilde.png", fh.Filename)
	require.Equal(t, "image/png", fh.Header.Get("Content-Type"))
	f, _ := fh.Open()
	data, _ := io.ReadAll(f)
	require.Equal(t, png, data)
}

func TestProfiles(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("fields") {
		case "first_name,last_name":
			_, _ = w.Write(fixture(t, "graph/profile_messenger.json"))
		case "name,username":
			_, _ = w.Write(fixture(t, "graph/profile_instagram.json"))
		}
	}))
	defer srv.Close()
	c := &Client{GraphURL: srv.URL}
	p, err := c.GetProfile(context.Background(), Messenger, "7010000000000001", "t")
	require.NoError(t, err)
	require.Equal(t, "Peter Chang", p.DisplayName())
	p, err = c.GetProfile(context.Background(), Instagram, "6720000000000001", "t")
	require.NoError(t, err)
	require.Equal(t, "Peter Chang", p.DisplayName())
	require.Equal(t, "peter_chang_live", (&Profile{Username: "peter_chang_live"}).DisplayName())
	require.Empty(t, (*Profile)(nil).DisplayName())
}

func TestWindow(t *testing.T) {
	last := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		after      time.Duration
		humanAgent bool
		state      WindowState
		typ, tag   string
	}{
		{time.Minute, false, WindowOpen, TypeResponse, ""},
		{23*time.Hour + 59*time.Minute, true, WindowOpen, TypeResponse, ""},
		{24 * time.Hour, false, WindowClosed, "", ""},
		{24 * time.Hour, true, WindowHumanAgent, TypeMessageTag, TagHumanAgent},
		{7*24*time.Hour - time.Second, true, WindowHumanAgent, TypeMessageTag, TagHumanAgent},
		{7 * 24 * time.Hour, true, WindowClosed, "", ""},
	} {
		state, typ, tag, _, ok := Window(last, last.Add(tc.after), tc.humanAgent)
		require.Equal(t, tc.state, state, tc.after)
		require.Equal(t, tc.typ, typ)
		require.Equal(t, tc.tag, tag)
		require.Equal(t, tc.state != WindowClosed, ok)
	}
	state, _, _, _, ok := Window(time.Time{}, last, true)
	require.Equal(t, WindowClosed, state, "nobody wrote: nothing may be sent")
	require.False(t, ok)
}

func TestTextLimits(t *testing.T) {
	require.True(t, TextFits(Messenger, strings.Repeat("æ", 1999)))
	require.False(t, TextFits(Messenger, strings.Repeat("æ", 2000)))
	require.True(t, TextFits(Instagram, strings.Repeat("a", 1000)))
	require.False(t, TextFits(Instagram, strings.Repeat("æ", 501)), "Instagram counts bytes")
}
