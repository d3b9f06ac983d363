// Package metasim is a simulator of Meta's Messenger Platform and Messenger
// API for Instagram, for sikkerchat's tests and for trying the patrol inbox
// locally. It plays both of Meta's roles: it sends signed webhooks to the
// bridge (and retries them as Meta does), and it answers the Graph API calls
// the bridge makes (Send API, sender actions, profiles, attachment URLs),
// enforcing the messaging windows and answering with Meta's documented error
// bodies.
//
// It is written from Meta's documentation (docs/research/meta-messaging.md
// §14 lists what it reproduces and where each rule comes from), not from
// sikkerchat's meta package: it builds and reads the JSON itself, so a
// misreading of the contract in one does not hide in the other.
package metasim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Account is a Facebook Page, or the Instagram professional account linked
// to one (Messenger API for Instagram: the Page's token sends for both).
type Account struct {
	// ID is the Page ID, or the Instagram account ID.
	ID string
	// Instagram marks an Instagram account (webhooks with object "instagram").
	Instagram bool
	// Token is the Page access token that may send for this account.
	Token string
}

// Person is someone who writes to an account.
type Person struct {
	// ID is the page- or Instagram-scoped ID.
	ID        string
	FirstName string
	LastName  string
	Username  string
	// NoProfile makes the profile API answer 2018218 (a phone-number account).
	NoProfile bool
	// Blocked: the person blocked the page; sends answer 551/1545041.
	Blocked bool
}

// Config is the simulator's setup.
type Config struct {
	AppSecret string
	AppID     string
	// WebhookURL is where webhooks go (the bridge's network.meta.listen).
	WebhookURL string
	// HumanAgent: the app has the Human Agent feature.
	HumanAgent bool
	Accounts   []Account
	// RetryDelays are the waits between webhook attempts; Meta retries
	// "immediately, then … with decreasing frequency". The last delay repeats
	// until GiveUpAfter.
	RetryDelays []time.Duration
	// GiveUpAfter: Meta disables a webhook that keeps failing (1 h in the
	// current Messenger docs, 36 h for generic Graph webhooks).
	GiveUpAfter time.Duration
	// WebhookTimeout: an answer slower than this counts as failed (Meta: 5 s
	// in the current docs, 20 s in older ones).
	WebhookTimeout time.Duration
	// BaseURL is the simulator's own address, for attachment URLs.
	BaseURL string
	// AttachmentTTL: attachment URLs answer 403 "URL signature expired" after it.
	AttachmentTTL time.Duration
}

// SendCall is one Send API call as the simulator received it.
type SendCall struct {
	At            time.Time `json:"at"`
	Account       string    `json:"account"`
	Recipient     string    `json:"recipient"`
	MessagingType string    `json:"messaging_type,omitempty"`
	Tag           string    `json:"tag,omitempty"`
	SenderAction  string    `json:"sender_action,omitempty"`
	Text          string    `json:"text,omitempty"`
	// Metadata is echoed back in message_echoes ("less than 1000 characters").
	Metadata   string          `json:"metadata,omitempty"`
	Attachment *SentAttachment `json:"attachment,omitempty"`
	// MessageID is what the simulator answered ("" for refused calls).
	MessageID string `json:"message_id,omitempty"`
	// Error is the error code answered (0 for success).
	Error   int `json:"error,omitempty"`
	Subcode int `json:"error_subcode,omitempty"`
	Status  int `json:"status"`
}

// SentAttachment is a file sent with multipart filedata.
type SentAttachment struct {
	Type     string `json:"type"`
	Name     string `json:"name"`
	MimeType string `json:"mime_type"`
	Size     int    `json:"size"`
	SHA256   string `json:"sha256"`
}

// Delivery is one webhook body and what became of it.
type Delivery struct {
	ID        int       `json:"id"`
	Body      string    `json:"body"`
	Attempts  int       `json:"attempts"`
	Statuses  []int     `json:"statuses"`
	Delivered bool      `json:"delivered"`
	GaveUp    bool      `json:"gave_up"`
	Queued    time.Time `json:"queued"`
}

// Sim is a running simulator.
type Sim struct {
	cfg  Config
	http *http.Client

	mu       sync.Mutex
	accounts map[string]*Account
	people   map[string]*Person
	// lastInbound: account|person → time of the person's last message.
	lastInbound map[string]time.Time
	sends       []SendCall
	deliveries  []*Delivery
	media       map[string]media
	// sendOutage answers every Send API call with this status while set.
	sendOutage int
	// failNext answers the next Send API calls with these error bodies.
	failNext []graphError
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	// webhooksPaused holds deliveries (as a Meta outage would).
	webhooksPaused bool
	// signatures replace the computed one for raw deliveries ("-": none).
	signatures []rawSignature
}

type media struct {
	data     []byte
	mimeType string
	expires  time.Time
}

// New starts the simulator's webhook sender; Close stops it.
func New(cfg Config) *Sim {
	if len(cfg.RetryDelays) == 0 {
		cfg.RetryDelays = []time.Duration{0, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second}
	}
	if cfg.GiveUpAfter == 0 {
		cfg.GiveUpAfter = time.Hour
	}
	if cfg.WebhookTimeout == 0 {
		cfg.WebhookTimeout = 5 * time.Second
	}
	if cfg.AttachmentTTL == 0 {
		cfg.AttachmentTTL = time.Hour
	}
	s := &Sim{
		cfg: cfg, http: &http.Client{Timeout: cfg.WebhookTimeout},
		accounts: map[string]*Account{}, people: map[string]*Person{}, lastInbound: map[string]time.Time{},
		media: map[string]media{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	for i := range cfg.Accounts {
		a := cfg.Accounts[i]
		s.accounts[a.ID] = &a
	}
	go s.deliverLoop()
	return s
}

// Close stops sending webhooks.
func (s *Sim) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// SetWebhookURL points the webhooks somewhere else (a restarted bridge).
func (s *Sim) SetWebhookURL(u string) {
	s.mu.Lock()
	s.cfg.WebhookURL = u
	s.mu.Unlock()
}

// AddPerson registers someone who can write (and be written to).
func (s *Sim) AddPerson(p Person) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := p
	s.people[p.ID] = &cp
}

// Block makes a person unreachable (they blocked the page).
func (s *Sim) Block(personID string, blocked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.people[personID]; p != nil {
		p.Blocked = blocked
	}
}

// SetSendOutage makes the Send API answer every call with status (0 ends it).
func (s *Sim) SetSendOutage(status int) {
	s.mu.Lock()
	s.sendOutage = status
	s.mu.Unlock()
}

// FailNext answers the next n Send API calls with Meta's error code/subcode.
func (s *Sim) FailNext(n, code, subcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failNext = append(s.failNext, graphErrorFor(code, subcode, false))
	}
}

// PauseWebhooks holds webhook deliveries until resumed (Meta keeps them).
func (s *Sim) PauseWebhooks(paused bool) {
	s.mu.Lock()
	s.webhooksPaused = paused
	s.mu.Unlock()
	s.kick()
}

// Sends lists the Send API calls so far.
func (s *Sim) Sends() []SendCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SendCall(nil), s.sends...)
}

// Deliveries lists the webhook deliveries so far.
func (s *Sim) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, len(s.deliveries))
	for i, d := range s.deliveries {
		out[i] = *d
		out[i].Statuses = append([]int(nil), d.Statuses...)
	}
	return out
}

// Pending is how many webhook deliveries are not yet delivered or given up.
func (s *Sim) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, d := range s.deliveries {
		if !d.Delivered && !d.GaveUp {
			n++
		}
	}
	return n
}

func newMID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "m_" + hex.EncodeToString(b)
}

// --- what people do: each becomes a webhook ---

// Incoming is a person's message to an account.
type Incoming struct {
	Account string `json:"account"`
	Person  string `json:"person"`
	Text    string `json:"text,omitempty"`
	// Attachments are served from the simulator's CDN.
	Attachments []IncomingAttachment `json:"attachments,omitempty"`
	ReplyTo     string               `json:"reply_to,omitempty"`
	// Ago backdates the message (to test the windows: Meta's timestamp is
	// when the person wrote).
	Ago time.Duration `json:"-"`
	// MID is set by the simulator unless given (a retry of the same message).
	MID string `json:"mid,omitempty"`
}

// IncomingAttachment is media a person sends.
type IncomingAttachment struct {
	Type     string `json:"type"`
	MimeType string `json:"mime_type"`
	Data     []byte `json:"data"`
}

// Message makes a person write; it returns the message ID.
func (s *Sim) Message(in Incoming) (string, error) {
	s.mu.Lock()
	acct, person := s.accounts[in.Account], s.people[in.Person]
	if acct == nil {
		s.mu.Unlock()
		return "", fmt.Errorf("unknown account %q", in.Account)
	}
	if person == nil {
		person = &Person{ID: in.Person}
		s.people[in.Person] = person
	}
	at := time.Now().Add(-in.Ago)
	key := acct.ID + "|" + in.Person
	if at.After(s.lastInbound[key]) {
		s.lastInbound[key] = at
	}
	mid := in.MID
	if mid == "" {
		mid = newMID()
	}
	msg := map[string]any{"mid": mid}
	if in.Text != "" {
		msg["text"] = in.Text
	}
	if in.ReplyTo != "" {
		msg["reply_to"] = map[string]any{"mid": in.ReplyTo, "is_self_reply": false}
	}
	var atts []any
	for _, a := range in.Attachments {
		atts = append(atts, map[string]any{"type": a.Type, "payload": map[string]any{"url": s.serveMedia(a.Data, a.MimeType)}})
	}
	if len(atts) > 0 {
		msg["attachments"] = atts
	}
	s.mu.Unlock()
	s.enqueue(acct, map[string]any{
		"sender": map[string]any{"id": in.Person}, "recipient": map[string]any{"id": acct.ID},
		"timestamp": at.UnixMilli(), "message": msg,
	})
	return mid, nil
}

// Event sends any messaging item (read, delivery, postback, reaction,
// message_edit, a deleted message) from the person, as Meta shapes it.
func (s *Sim) Event(account, person string, part string, value map[string]any) error {
	s.mu.Lock()
	acct := s.accounts[account]
	s.mu.Unlock()
	if acct == nil {
		return fmt.Errorf("unknown account %q", account)
	}
	item := map[string]any{
		"sender": map[string]any{"id": person}, "recipient": map[string]any{"id": acct.ID},
		"timestamp": time.Now().UnixMilli(), part: value,
	}
	if part == "delivery" {
		delete(item, "timestamp") // Meta's delivery example has none
	}
	s.enqueue(acct, item)
	return nil
}

// PageReply is a reply someone at the page wrote in Meta Business Suite (or
// another app): it reaches the bridge only as an echo with a foreign app_id.
func (s *Sim) PageReply(account, person, text string) (string, error) {
	s.mu.Lock()
	acct := s.accounts[account]
	s.mu.Unlock()
	if acct == nil {
		return "", fmt.Errorf("unknown account %q", account)
	}
	mid := newMID()
	msg := map[string]any{"mid": mid, "text": text, "is_echo": true}
	if !acct.Instagram {
		msg["app_id"] = 263902037430900 // Meta Business Suite, not us
	}
	s.enqueue(acct, map[string]any{
		"sender": map[string]any{"id": acct.ID}, "recipient": map[string]any{"id": person},
		"timestamp": time.Now().UnixMilli(), "message": msg,
	})
	return mid, nil
}

// Raw queues a body exactly as given, signed unless signature is set.
func (s *Sim) Raw(body []byte, signature string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveries = append(s.deliveries, &Delivery{ID: len(s.deliveries) + 1, Body: string(body), Queued: time.Now()})
	if signature != "" {
		s.signatures = append(s.signatures, rawSignature{len(s.deliveries), signature})
	}
	s.kick()
}

type rawSignature struct {
	delivery  int
	signature string
}

func (s *Sim) enqueue(acct *Account, item map[string]any) {
	object := "page"
	if acct.Instagram {
		object = "instagram"
	}
	body, _ := json.Marshal(map[string]any{
		"object": object,
		"entry":  []any{map[string]any{"id": acct.ID, "time": time.Now().UnixMilli(), "messaging": []any{item}}},
	})
	// Meta's bodies escape non-ASCII and slashes; its signature is over that form.
	body = escapeLikeMeta(body)
	s.mu.Lock()
	s.deliveries = append(s.deliveries, &Delivery{ID: len(s.deliveries) + 1, Body: string(body), Queued: time.Now()})
	s.mu.Unlock()
	s.kick()
}

// escapeLikeMeta rewrites a JSON body as Meta sends it: every non-ASCII
// character as \uXXXX (lowercase hex, surrogate pairs above the BMP) and
// "/" as "\/".
func escapeLikeMeta(body []byte) []byte {
	var out bytes.Buffer
	inString := false
	escaped := false
	for _, r := range string(body) {
		switch {
		case inString && escaped:
			escaped = false
			out.WriteRune(r)
			continue
		case r == '\\' && inString:
			escaped = true
			out.WriteRune(r)
			continue
		case r == '"':
			inString = !inString
		case inString && r == '/':
			out.WriteString(`\/`)
			continue
		case r > 0x7f && r <= 0xffff:
			fmt.Fprintf(&out, `\u%04x`, r)
			continue
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			continue
		}
		out.WriteRune(r)
	}
	return out.Bytes()
}

func (s *Sim) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Sign is the X-Hub-Signature-256 of body.
func (s *Sim) Sign(body []byte) string {
	mac := hmac.New(sha256.New, []byte(s.cfg.AppSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (s *Sim) signSHA1(body []byte) string {
	mac := hmac.New(sha1.New, []byte(s.cfg.AppSecret))
	mac.Write(body)
	return "sha1=" + hex.EncodeToString(mac.Sum(nil))
}

// deliverLoop sends deliveries one at a time, in order: Meta waits for a 200
// before it sends the next message (older Messenger docs), and retries a
// failed one with growing waits until it gives up.
func (s *Sim) deliverLoop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		var next *Delivery
		if !s.webhooksPaused {
			for _, d := range s.deliveries {
				if !d.Delivered && !d.GaveUp {
					next = d
					break
				}
			}
		}
		s.mu.Unlock()
		if next == nil {
			select {
			case <-s.stop:
				return
			case <-s.wake:
				continue
			}
		}
		if !s.attempt(next) {
			return
		}
	}
}

// attempt delivers one body until it is taken or given up; false when the
// simulator stops.
func (s *Sim) attempt(d *Delivery) bool {
	for {
		s.mu.Lock()
		n := d.Attempts
		url := s.cfg.WebhookURL
		var sig string
		for _, rs := range s.signatures {
			if rs.delivery == d.ID {
				sig = rs.signature
			}
		}
		s.mu.Unlock()
		delay := s.cfg.RetryDelays[min(n, len(s.cfg.RetryDelays)-1)]
		if n > 0 {
			select {
			case <-s.stop:
				return false
			case <-time.After(delay):
			}
		}
		status := s.post(url, []byte(d.Body), sig)
		s.mu.Lock()
		d.Attempts++
		d.Statuses = append(d.Statuses, status)
		if status >= 200 && status <= 299 {
			d.Delivered = true
		} else if time.Since(d.Queued) > s.cfg.GiveUpAfter {
			d.GaveUp = true
		}
		done := d.Delivered || d.GaveUp
		s.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-s.stop:
			return false
		default:
		}
	}
}

func (s *Sim) post(url string, body []byte, signature string) int {
	if url == "" {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	if signature == "" {
		signature = s.Sign(body)
	}
	if signature != "-" {
		req.Header.Set("X-Hub-Signature-256", signature)
	}
	req.Header.Set("X-Hub-Signature", s.signSHA1(body))
	resp, err := s.http.Do(req)
	if err != nil {
		return 0 // a timeout or a refused connection: failed
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp.StatusCode
}

// --- the Graph API ---

type graphError struct {
	status  int
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    int    `json:"code"`
	Subcode int    `json:"error_subcode,omitempty"`
	Trace   string `json:"fbtrace_id"`
}

// graphErrorFor is Meta's error body for a code (docs/research/meta-messaging.md §8).
func graphErrorFor(code, subcode int, instagram bool) graphError {
	e := graphError{status: http.StatusBadRequest, Type: "OAuthException", Code: code, Subcode: subcode, Trace: "Sim" + strconv.Itoa(code) + newMID()[2:12]}
	switch {
	case code == 10 && instagram:
		e.status, e.Type, e.Subcode, e.Message = http.StatusForbidden, "IGApiException", 2534022, "This message is sent outside of allowed window."
	case code == 10:
		e.Subcode = 2018278
		e.Message = "(#10) This message is sent outside of allowed window. Learn more about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview"
	case code == 100 && subcode == 2018276:
		e.Message = "(#100) Cannot tag messages with 'HUMAN_AGENT' without prior approval."
	case code == 100 && subcode == 2018001:
		e.Message = "(#100) No matching user found"
	case code == 100 && subcode == 2018218:
		e.Message = "(#100) No profile available for this user."
	case code == 100 && subcode == 2018109:
		e.Message = "(#100) Attachment size exceeds allowable limit"
	case code == 100:
		e.Message = "(#100) Invalid parameter"
	case code == 551:
		e.Subcode, e.Message = 1545041, "(#551) This person isn't available right now."
	case code == 190:
		e.Message = "Error validating access token: Session has expired."
		if e.Subcode == 0 {
			e.Subcode = 463
		}
	case code == 613:
		e.Message = "(#613) Calls to this API have exceeded the rate limit."
	case code == 1200:
		e.status, e.Message = http.StatusInternalServerError, "(#1200) Temporary send message failure. Please try again later"
	case code == 2:
		e.status, e.Message = http.StatusInternalServerError, "An unexpected error has occurred. Please retry your request later."
	default:
		e.Message = "(#" + strconv.Itoa(code) + ") Error"
	}
	if instagram {
		e.Type = "IGApiException"
	}
	return e
}

func writeGraphError(w http.ResponseWriter, e graphError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

// Handler serves the Graph API (/{version}/…), the attachment CDN (/cdn/…)
// and the control API for tests and people trying it (/_sim/…).
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{version}/{account}/messages", s.handleSend)
	mux.HandleFunc("GET /{version}/{person}", s.handleProfile)
	mux.HandleFunc("GET /cdn/{id}", s.handleMedia)
	s.control(mux)
	return mux
}

func (s *Sim) tokenOf(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return t
	}
	return r.URL.Query().Get("access_token")
}

func (s *Sim) appSecretProofOK(r *http.Request, token string) bool {
	proof := r.URL.Query().Get("appsecret_proof")
	if proof == "" {
		return true // only apps with "Require App Secret" must send it
	}
	mac := hmac.New(sha256.New, []byte(s.cfg.AppSecret))
	mac.Write([]byte(token))
	return hmac.Equal([]byte(proof), []byte(hex.EncodeToString(mac.Sum(nil))))
}

// handleSend is the Send API: POST /{version}/{PAGE_ID|IG_ID|me}/messages.
func (s *Sim) handleSend(w http.ResponseWriter, r *http.Request) {
	token := s.tokenOf(r)
	call := SendCall{At: time.Now(), Account: r.PathValue("account")}
	s.mu.Lock()
	// The Page's token sends for the Page and its Instagram account (Messenger
	// API for Instagram: POST /{PAGE_ID}/messages with the IGSID as recipient).
	var tokenAccounts []*Account
	for _, a := range s.accounts {
		if a.Token == token {
			tokenAccounts = append(tokenAccounts, a)
		}
	}
	outage := s.sendOutage
	s.mu.Unlock()
	fail := func(e graphError) {
		call.Error, call.Subcode, call.Status = e.Code, e.Subcode, e.status
		s.record(call)
		writeGraphError(w, e)
	}
	if outage != 0 {
		call.Status = outage
		s.record(call)
		http.Error(w, "Service Unavailable", outage)
		return
	}
	if len(tokenAccounts) == 0 || !s.appSecretProofOK(r, token) {
		fail(graphErrorFor(190, 467, false))
		return
	}
	acct := tokenAccounts[0]
	for _, a := range tokenAccounts {
		if a.ID == call.Account && !a.Instagram {
			acct = a
		}
	}
	instagram := false
	var recipient struct {
		ID string `json:"id"`
	}
	var message struct {
		Text       string `json:"text"`
		Metadata   string `json:"metadata"`
		Attachment *struct {
			Type    string `json:"type"`
			Payload struct {
				URL          string `json:"url"`
				AttachmentID string `json:"attachment_id"`
			} `json:"payload"`
		} `json:"attachment"`
	}
	var hasMessage bool
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
		var body struct {
			Recipient     json.RawMessage `json:"recipient"`
			MessagingType string          `json:"messaging_type"`
			Tag           string          `json:"tag"`
			Message       json.RawMessage `json:"message"`
			SenderAction  string          `json:"sender_action"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
			fail(graphErrorFor(100, 0, instagram))
			return
		}
		_ = json.Unmarshal(body.Recipient, &recipient)
		call.MessagingType, call.Tag, call.SenderAction = body.MessagingType, body.Tag, body.SenderAction
		if len(body.Message) > 0 && string(body.Message) != "null" {
			hasMessage = true
			if err := json.Unmarshal(body.Message, &message); err != nil {
				fail(graphErrorFor(100, 0, instagram))
				return
			}
		}
	case "multipart/form-data":
		mr := multipart.NewReader(io.LimitReader(r.Body, 30<<20), params["boundary"])
		form, err := mr.ReadForm(30 << 20)
		if err != nil {
			fail(graphErrorFor(100, 0, instagram))
			return
		}
		_ = json.Unmarshal([]byte(first(form.Value["recipient"])), &recipient)
		call.MessagingType, call.Tag = first(form.Value["messaging_type"]), first(form.Value["tag"])
		hasMessage = true
		if err := json.Unmarshal([]byte(first(form.Value["message"])), &message); err != nil || message.Attachment == nil || len(form.File["filedata"]) != 1 {
			fail(graphErrorFor(100, 0, instagram))
			return
		}
		fh := form.File["filedata"][0]
		f, err := fh.Open()
		if err != nil {
			fail(graphErrorFor(100, 0, instagram))
			return
		}
		data, _ := io.ReadAll(f)
		f.Close()
		sum := sha256.Sum256(data)
		call.Attachment = &SentAttachment{Type: message.Attachment.Type, Name: fh.Filename, MimeType: fh.Header.Get("Content-Type"), Size: len(data), SHA256: hex.EncodeToString(sum[:])}
		limit := 25 << 20
		if message.Attachment.Type == "image" {
			limit = 8 << 20
		}
		if len(data) > limit {
			fail(graphErrorFor(100, 2018109, instagram))
			return
		}
	default:
		fail(graphErrorFor(100, 0, instagram))
		return
	}
	call.Recipient, call.Text, call.Metadata = recipient.ID, message.Text, message.Metadata
	s.mu.Lock()
	for _, a := range tokenAccounts {
		if !s.lastInbound[a.ID+"|"+recipient.ID].IsZero() {
			acct = a
		}
	}
	s.mu.Unlock()
	instagram = acct.Instagram
	if message.Attachment != nil && call.Attachment == nil {
		call.Attachment = &SentAttachment{Type: message.Attachment.Type}
	}

	// "Requests to display sender action should only include the
	// sender_action parameter and the recipient object."
	if call.SenderAction != "" {
		if hasMessage || call.MessagingType != "" || call.Tag != "" {
			fail(graphErrorFor(100, 0, instagram))
			return
		}
		switch call.SenderAction {
		case "typing_on", "typing_off", "mark_seen":
		default:
			fail(graphErrorFor(100, 0, instagram))
			return
		}
	} else if !hasMessage || (message.Text == "" && message.Attachment == nil) {
		fail(graphErrorFor(100, 0, instagram))
		return
	}
	s.mu.Lock()
	person := s.people[recipient.ID]
	last := s.lastInbound[acct.ID+"|"+recipient.ID]
	var injected *graphError
	if len(s.failNext) > 0 && call.SenderAction == "" {
		e := s.failNext[0]
		s.failNext = s.failNext[1:]
		injected = &e
	}
	s.mu.Unlock()
	if injected != nil {
		if instagram {
			*injected = graphErrorFor(injected.Code, injected.Subcode, true)
		}
		fail(*injected)
		return
	}
	if person == nil || last.IsZero() {
		fail(graphErrorFor(100, 2018001, instagram))
		return
	}
	if person.Blocked {
		fail(graphErrorFor(551, 1545041, instagram))
		return
	}
	if call.SenderAction == "" {
		if !s.windowAllows(call, last, instagram, fail) {
			return
		}
		if message.Text != "" {
			if (instagram && len(message.Text) > 1000) || (!instagram && len([]rune(message.Text)) >= 2000) {
				fail(graphErrorFor(100, 0, instagram))
				return
			}
		}
	}
	call.Status = http.StatusOK
	resp := map[string]any{"recipient_id": recipient.ID}
	if call.SenderAction == "" {
		call.MessageID = newMID()
		resp["message_id"] = call.MessageID
	}
	s.record(call)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
	if call.SenderAction == "" {
		s.echo(acct, call)
	}
}

// windowAllows enforces the messaging windows: RESPONSE/UPDATE within 24 h
// of the person's last message; MESSAGE_TAG with HUMAN_AGENT (needs the
// feature) up to 7 days; other tags are retired (error 100 since 2026-04-27).
func (s *Sim) windowAllows(call SendCall, last time.Time, instagram bool, fail func(graphError)) bool {
	age := time.Since(last)
	switch call.MessagingType {
	case "RESPONSE", "UPDATE", "":
		if call.Tag != "" {
			fail(graphErrorFor(100, 0, instagram))
			return false
		}
		if age >= 24*time.Hour {
			fail(graphErrorFor(10, 2018278, instagram))
			return false
		}
	case "MESSAGE_TAG":
		if call.Tag != "HUMAN_AGENT" {
			fail(graphErrorFor(100, 0, instagram))
			return false
		}
		if !s.cfg.HumanAgent {
			fail(graphErrorFor(100, 2018276, instagram))
			return false
		}
		if age >= 7*24*time.Hour {
			fail(graphErrorFor(10, 2018278, instagram))
			return false
		}
	default:
		fail(graphErrorFor(100, 0, instagram))
		return false
	}
	return true
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (s *Sim) record(call SendCall) {
	s.mu.Lock()
	s.sends = append(s.sends, call)
	s.mu.Unlock()
}

// echo sends the message_echoes webhook for a message the app sent, with
// mid = the Send API's message_id and the app's own app_id.
func (s *Sim) echo(acct *Account, call SendCall) {
	msg := map[string]any{"mid": call.MessageID, "is_echo": true}
	if !acct.Instagram {
		id, _ := strconv.ParseInt(s.cfg.AppID, 10, 64)
		msg["app_id"] = id
	}
	if call.Text != "" {
		msg["text"] = call.Text
	}
	if call.Metadata != "" {
		msg["metadata"] = call.Metadata
	}
	if call.Attachment != nil {
		msg["attachments"] = []any{map[string]any{"type": call.Attachment.Type, "payload": map[string]any{"url": s.cfg.BaseURL + "/cdn/echo"}}}
	}
	s.enqueue(acct, map[string]any{
		"sender": map[string]any{"id": acct.ID}, "recipient": map[string]any{"id": call.Recipient},
		"timestamp": call.At.UnixMilli(), "message": msg,
	})
}

// handleProfile is the User Profile API: GET /{version}/{PSID|IGSID}?fields=…
func (s *Sim) handleProfile(w http.ResponseWriter, r *http.Request) {
	token := s.tokenOf(r)
	s.mu.Lock()
	var acct *Account
	for _, a := range s.accounts {
		if a.Token == token {
			acct = a
		}
	}
	person := s.people[r.PathValue("person")]
	s.mu.Unlock()
	if acct == nil {
		writeGraphError(w, graphErrorFor(190, 467, false))
		return
	}
	if person == nil || person.NoProfile {
		writeGraphError(w, graphErrorFor(100, 2018218, false))
		return
	}
	out := map[string]any{"id": person.ID}
	for _, f := range strings.Split(r.URL.Query().Get("fields"), ",") {
		switch f {
		case "first_name":
			out[f] = person.FirstName
		case "last_name":
			out[f] = person.LastName
		case "name":
			out[f] = strings.TrimSpace(person.FirstName + " " + person.LastName)
		case "username":
			out[f] = person.Username
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// serveMedia stores bytes behind a signed, expiring CDN URL. Called with s.mu held.
func (s *Sim) serveMedia(data []byte, mimeType string) string {
	id := newMID()[2:26]
	exp := time.Now().Add(s.cfg.AttachmentTTL)
	s.media[id] = media{data: data, mimeType: mimeType, expires: exp}
	mac := hmac.New(sha256.New, []byte(s.cfg.AppSecret))
	mac.Write([]byte(id))
	return fmt.Sprintf("%s/cdn/%s?oe=%x&oh=%s", s.cfg.BaseURL, id, exp.Unix(), hex.EncodeToString(mac.Sum(nil))[:32])
}

func (s *Sim) handleMedia(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m, ok := s.media[r.PathValue("id")]
	s.mu.Unlock()
	switch {
	case !ok:
		http.Error(w, "Not Found", http.StatusNotFound)
	case time.Now().After(m.expires):
		http.Error(w, "URL signature expired", http.StatusForbidden)
	default:
		// Meta's CDN says how large an attachment is before sending it.
		w.Header().Set("Content-Type", m.mimeType)
		w.Header().Set("Content-Length", strconv.Itoa(len(m.data)))
		_, _ = w.Write(m.data)
	}
}

// ExpireMedia makes every attachment URL answer as expired.
func (s *Sim) ExpireMedia() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, m := range s.media {
		m.expires = time.Now().Add(-time.Second)
		s.media[id] = m
	}
}
