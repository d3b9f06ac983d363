package metasim_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/internal/metasim"
	"github.com/sikkerchat/sikkerchat/meta"
)

const (
	page   = "106512345678901"
	ig     = "17841400000000001"
	token  = "page-token"
	secret = "app-secret"
	psid   = "7010000000000001"
	igsid  = "6720000000000001"
)

type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
	status []int // answers to give, in order; 200 after
	got    chan struct{}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	status := http.StatusOK
	if len(rc.status) > 0 {
		status, rc.status = rc.status[0], rc.status[1:]
	}
	if status == http.StatusOK {
		rc.bodies = append(rc.bodies, body)
		rc.sigs = append(rc.sigs, r.Header.Get("X-Hub-Signature-256"))
	}
	rc.mu.Unlock()
	w.WriteHeader(status)
	if status == http.StatusOK {
		rc.got <- struct{}{}
	}
}

func newSim(t *testing.T, rc *receiver, humanAgent bool) (*metasim.Sim, *httptest.Server) {
	t.Helper()
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	sim := metasim.New(metasim.Config{
		AppSecret: secret, AppID: "1517776481860111", WebhookURL: hook.URL, HumanAgent: humanAgent,
		Accounts:    []metasim.Account{{ID: page, Token: token}, {ID: ig, Instagram: true, Token: token}},
		RetryDelays: []time.Duration{0, 10 * time.Millisecond},
	})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	return sim, srv
}

// What the simulator sends is what sikkerchat's reading of the contract
// accepts: signed over Meta's escaped form, parsed into the right event.
func TestWebhooksAreSignedAndEscapedAsMetaSendsThem(t *testing.T) {
	rc := &receiver{got: make(chan struct{}, 10)}
	sim, _ := newSim(t, rc, false)
	mid, err := sim.Message(metasim.Incoming{Account: page, Person: psid, Text: "Hei, jeg heter Æsa 🙂 https://x.no/a"})
	require.NoError(t, err)
	<-rc.got
	body := rc.bodies[0]
	require.Contains(t, string(body), `\u00c6sa`)
	require.Contains(t, string(body), `\ud83d\ude42`)
	require.Contains(t, string(body), `https:\/\/x.no\/a`)
	require.NoError(t, meta.VerifySignature(body, rc.sigs[0], secret))
	evts, err := meta.Parse(body)
	require.NoError(t, err)
	require.Len(t, evts, 1)
	require.Equal(t, meta.KindMessage, evts[0].Kind)
	require.Equal(t, mid, evts[0].ID())
	require.Equal(t, "Hei, jeg heter Æsa 🙂 https://x.no/a", evts[0].Message.Text)
}

// A webhook that is not answered 2xx is sent again, the same bytes, and the
// next one waits until the first is taken.
func TestWebhooksAreRetriedInOrder(t *testing.T) {
	rc := &receiver{got: make(chan struct{}, 10), status: []int{500, 503, 401}}
	sim, _ := newSim(t, rc, false)
	first, _ := sim.Message(metasim.Incoming{Account: page, Person: psid, Text: "en"})
	second, _ := sim.Message(metasim.Incoming{Account: page, Person: psid, Text: "to"})
	<-rc.got
	<-rc.got
	var mids []string
	for _, b := range rc.bodies {
		evts, err := meta.Parse(b)
		require.NoError(t, err)
		mids = append(mids, evts[0].ID())
	}
	require.Equal(t, []string{first, second}, mids)
	require.Eventually(t, func() bool { return sim.Pending() == 0 }, 10*time.Second, 5*time.Millisecond)
	d := sim.Deliveries()
	require.Equal(t, []int{500, 503, 401, 200}, d[0].Statuses)
}

func send(t *testing.T, srv *httptest.Server, account string, req meta.SendRequest) error {
	t.Helper()
	_, err := (&meta.Client{GraphURL: srv.URL, AppSecret: secret}).Send(context.Background(), account, token, req)
	return err
}

// The Send API enforces the windows with Meta's error answers.
func TestSendAPIEnforcesTheWindows(t *testing.T) {
	rc := &receiver{got: make(chan struct{}, 50)}
	sim, srv := newSim(t, rc, true)
	require.Equal(t, meta.ClassUnavailable, meta.ClassOf(send(t, srv, page, meta.Text(psid, "hei", meta.TypeResponse, ""))),
		"nobody to answer before the person wrote")

	_, _ = sim.Message(metasim.Incoming{Account: page, Person: psid, Text: "hjelp"})
	require.NoError(t, send(t, srv, page, meta.Text(psid, "svar", meta.TypeResponse, "")))
	require.NoError(t, send(t, srv, page, meta.Action(psid, meta.ActionTypingOn)))

	_, _ = sim.Message(metasim.Incoming{Account: page, Person: "p2", Text: "gammel", Ago: 30 * time.Hour})
	require.Equal(t, meta.ClassWindowClosed, meta.ClassOf(send(t, srv, page, meta.Text("p2", "svar", meta.TypeResponse, ""))))
	require.NoError(t, send(t, srv, page, meta.Text("p2", "svar", meta.TypeMessageTag, meta.TagHumanAgent)))
	require.Equal(t, meta.ClassRefused, meta.ClassOf(send(t, srv, page, meta.Text("p2", "x", meta.TypeMessageTag, "ACCOUNT_UPDATE"))), "retired tags")

	_, _ = sim.Message(metasim.Incoming{Account: ig, Person: igsid, Text: "eldgammel", Ago: 8 * 24 * time.Hour})
	err := send(t, srv, ig, meta.Text(igsid, "svar", meta.TypeMessageTag, meta.TagHumanAgent))
	var ge *meta.Error
	require.ErrorAs(t, err, &ge)
	require.Equal(t, meta.ClassWindowClosed, ge.Class())
	require.Equal(t, "IGApiException", ge.Type)
	require.Equal(t, 2534022, ge.Subcode)
	require.Equal(t, http.StatusForbidden, ge.HTTPStatus)

	sim.Block(psid, true)
	require.Equal(t, meta.ClassUnavailable, meta.ClassOf(send(t, srv, page, meta.Text(psid, "svar", meta.TypeResponse, ""))))
	sim.Block(psid, false)

	sim.SetSendOutage(http.StatusServiceUnavailable)
	require.Equal(t, meta.ClassTransient, meta.ClassOf(send(t, srv, page, meta.Text(psid, "svar", meta.TypeResponse, ""))))
	sim.SetSendOutage(0)
	sim.FailNext(1, 613, 0)
	require.Equal(t, meta.ClassRateLimited, meta.ClassOf(send(t, srv, page, meta.Text(psid, "svar", meta.TypeResponse, ""))))
	require.NoError(t, send(t, srv, page, meta.Text(psid, "svar", meta.TypeResponse, "")))

	_, err = (&meta.Client{GraphURL: srv.URL}).Send(context.Background(), page, "wrong-token", meta.Text(psid, "x", meta.TypeResponse, ""))
	require.Equal(t, meta.ClassToken, meta.ClassOf(err))
	_, err = (&meta.Client{GraphURL: srv.URL, AppSecret: "not-the-secret"}).Send(context.Background(), page, token, meta.Text(psid, "x", meta.TypeResponse, ""))
	require.Equal(t, meta.ClassToken, meta.ClassOf(err), "a wrong appsecret_proof is refused")
	require.Equal(t, meta.ClassRefused, meta.ClassOf(send(t, srv, page, meta.Text(psid, strings.Repeat("a", 2000), meta.TypeResponse, ""))))

	// Humans without the Human Agent feature cannot use the tag.
	sim2, srv2 := newSim(t, &receiver{got: make(chan struct{}, 10)}, false)
	_, _ = sim2.Message(metasim.Incoming{Account: page, Person: psid, Text: "x", Ago: 30 * time.Hour})
	require.Equal(t, meta.ClassHumanAgentNotApproved, meta.ClassOf(send(t, srv2, page, meta.Text(psid, "svar", meta.TypeMessageTag, meta.TagHumanAgent))))
}

// A message the app sent comes back as an echo whose mid is the Send API's
// message_id and whose app_id is the app's.
func TestSendsComeBackAsEchoes(t *testing.T) {
	rc := &receiver{got: make(chan struct{}, 10)}
	sim, srv := newSim(t, rc, false)
	_, _ = sim.Message(metasim.Incoming{Account: page, Person: psid, Text: "hei"})
	<-rc.got
	resp, err := (&meta.Client{GraphURL: srv.URL}).Send(context.Background(), page, token, meta.File(psid, meta.TypeResponse, "", "a.pdf", "application/pdf", []byte("%PDF-1.4")))
	require.NoError(t, err)
	<-rc.got
	evts, err := meta.Parse(rc.bodies[1])
	require.NoError(t, err)
	require.Equal(t, meta.KindEcho, evts[0].Kind)
	require.Equal(t, resp.MessageID, evts[0].ID())
	require.Equal(t, meta.FlexString("1517776481860111"), evts[0].Message.AppID)
	sends := sim.Sends()
	require.Equal(t, "a.pdf", sends[len(sends)-1].Attachment.Name)
	require.Equal(t, "file", sends[len(sends)-1].Attachment.Type)
}

// Attachment URLs serve the bytes until they expire, then 403 as Meta's CDN.
func TestAttachmentURLsExpire(t *testing.T) {
	rc := &receiver{got: make(chan struct{}, 10)}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	var sim *metasim.Sim
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sim.Handler().ServeHTTP(w, r) }))
	defer srv.Close()
	sim = metasim.New(metasim.Config{AppSecret: secret, WebhookURL: hook.URL, BaseURL: srv.URL, Accounts: []metasim.Account{{ID: page, Token: token}}})
	defer sim.Close()
	_, err := sim.Message(metasim.Incoming{Account: page, Person: psid, Attachments: []metasim.IncomingAttachment{{Type: "image", MimeType: "image/png", Data: []byte("png-bytes")}}})
	require.NoError(t, err)
	<-rc.got
	evts, err := meta.Parse(rc.bodies[0])
	require.NoError(t, err)
	u := evts[0].Message.Attachments[0].MediaURL()
	cdn := &meta.MediaFetcher{Origins: []string{srv.URL}}
	data, mimeType, err := cdn.Fetch(context.Background(), u, 1<<20)
	require.NoError(t, err)
	require.Equal(t, "png-bytes", string(data))
	require.Equal(t, "image/png", mimeType)
	sim.ExpireMedia()
	_, _, err = cdn.Fetch(context.Background(), u, 1<<20)
	var he *meta.HTTPError
	require.ErrorAs(t, err, &he)
	require.Equal(t, http.StatusForbidden, he.Status)
}
