package meta

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"
)

// DefaultGraphURL and DefaultVersion are Meta's Graph API; tests point the
// client at the simulator instead.
const (
	DefaultGraphURL = "https://graph.facebook.com"
	DefaultVersion  = "v25.0"
)

// Messaging types and the one tag sikkerchat uses.
const (
	TypeResponse   = "RESPONSE"
	TypeMessageTag = "MESSAGE_TAG"
	TagHumanAgent  = "HUMAN_AGENT"
)

// Sender actions.
const (
	ActionTypingOn  = "typing_on"
	ActionTypingOff = "typing_off"
	ActionMarkSeen  = "mark_seen"
)

// Limits Meta documents for what is sent.
const (
	MaxTextMessenger = 2000 // characters, "less than 2000"
	MaxTextInstagram = 1000 // bytes, "1000 bytes or less"
	MaxAttachment    = 25 << 20
	MaxImage         = 8 << 20
)

// MaxText is the longest text one Send API call may carry on the platform,
// in the platform's own unit (checked by TextFits).
func TextFits(p Platform, text string) bool {
	if p == Instagram {
		return len(text) <= MaxTextInstagram
	}
	return len([]rune(text)) < MaxTextMessenger
}

// Client calls the Graph API with a page access token. Every request carries
// appsecret_proof (HMAC-SHA256 of the token with the app secret), which apps
// with "Require App Secret" on must send and all may.
type Client struct {
	HTTP      *http.Client
	GraphURL  string
	Version   string
	AppSecret string
}

// ErrTooLarge: a download was larger than allowed.
var ErrTooLarge = errors.New("attachment too large")

// Recipient of a send.
type Recipient struct {
	ID string `json:"id"`
}

// SendRequest is a Send API body. Exactly one of Message and SenderAction.
type SendRequest struct {
	Recipient     Recipient   `json:"recipient"`
	MessagingType string      `json:"messaging_type,omitempty"`
	Tag           string      `json:"tag,omitempty"`
	Message       *OutMessage `json:"message,omitempty"`
	SenderAction  string      `json:"sender_action,omitempty"`
	ReplyTo       *OutReplyTo `json:"reply_to,omitempty"`
	Notification  string      `json:"notification_type,omitempty"`
	filedata      *fileToUpload
}

// OutMessage is what is sent: text, or one attachment.
type OutMessage struct {
	Text       string         `json:"text,omitempty"`
	Attachment *OutAttachment `json:"attachment,omitempty"`
	Metadata   string         `json:"metadata,omitempty"`
}

type OutAttachment struct {
	Type    string           `json:"type"`
	Payload OutAttachPayload `json:"payload"`
}

type OutAttachPayload struct {
	URL          string `json:"url,omitempty"`
	AttachmentID string `json:"attachment_id,omitempty"`
	IsReusable   bool   `json:"is_reusable,omitempty"`
}

type OutReplyTo struct {
	MID string `json:"mid"`
}

type fileToUpload struct {
	name, mime string
	data       []byte
}

// SendResponse is the Send API's answer.
type SendResponse struct {
	RecipientID string `json:"recipient_id"`
	MessageID   string `json:"message_id"`
}

// AttachmentType is the Send API type for a MIME type.
func AttachmentType(mimeType string) string {
	switch {
	case strings.HasPrefix(mimeType, "image/"):
		return "image"
	case strings.HasPrefix(mimeType, "video/"):
		return "video"
	case strings.HasPrefix(mimeType, "audio/"):
		return "audio"
	}
	return "file"
}

// Text builds a text send.
func Text(recipient, text, messagingType, tag string) SendRequest {
	return SendRequest{Recipient: Recipient{ID: recipient}, MessagingType: messagingType, Tag: tag, Message: &OutMessage{Text: text}}
}

// File builds an upload-and-send of one file (multipart filedata): Matrix
// media is behind authentication, so there is no public URL to give Meta.
func File(recipient, messagingType, tag, name, mimeType string, data []byte) SendRequest {
	return SendRequest{
		Recipient: Recipient{ID: recipient}, MessagingType: messagingType, Tag: tag,
		Message:  &OutMessage{Attachment: &OutAttachment{Type: AttachmentType(mimeType), Payload: OutAttachPayload{IsReusable: false}}},
		filedata: &fileToUpload{name: name, mime: mimeType, data: data},
	}
}

// Action builds a sender action: recipient and action only, as Meta requires.
func Action(recipient, action string) SendRequest {
	return SendRequest{Recipient: Recipient{ID: recipient}, SenderAction: action}
}

// Send posts to /{account}/messages with the page token.
func (c *Client) Send(ctx context.Context, account, token string, req SendRequest) (*SendResponse, error) {
	var body io.Reader
	contentType := "application/json"
	if req.filedata != nil {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		recipient, _ := json.Marshal(req.Recipient)
		message, _ := json.Marshal(req.Message)
		_ = mw.WriteField("recipient", string(recipient))
		if req.MessagingType != "" {
			_ = mw.WriteField("messaging_type", req.MessagingType)
		}
		if req.Tag != "" {
			_ = mw.WriteField("tag", req.Tag)
		}
		_ = mw.WriteField("message", string(message))
		h := make(textproto.MIMEHeader)
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="filedata"; filename=%q`, req.filedata.name))
		h.Set("Content-Type", req.filedata.mime)
		part, _ := mw.CreatePart(h)
		_, _ = part.Write(req.filedata.data)
		_ = mw.Close()
		body, contentType = &buf, mw.FormDataContentType()
	} else {
		data, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	var resp SendResponse
	if err := c.do(ctx, http.MethodPost, "/"+url.PathEscape(account)+"/messages", token, nil, body, contentType, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Profile is what the profile API tells about a person, where allowed.
type Profile struct {
	Name      string `json:"name"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Username  string `json:"username"`
}

// DisplayName is the best name in the profile ("" when there is none).
func (p *Profile) DisplayName() string {
	if p == nil {
		return ""
	}
	if n := strings.TrimSpace(p.FirstName + " " + p.LastName); n != "" {
		return n
	} else if p.Name != "" {
		return p.Name
	}
	return p.Username
}

// GetProfile reads a person's profile: first and last name on Messenger,
// name and username on Instagram.
func (c *Client) GetProfile(ctx context.Context, platform Platform, person, token string) (*Profile, error) {
	fields := "first_name,last_name"
	if platform == Instagram {
		fields = "name,username"
	}
	var p Profile
	if err := c.do(ctx, http.MethodGet, "/"+url.PathEscape(person), token, url.Values{"fields": {fields}}, nil, "", &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 60 * time.Second}
}

// AppSecretProof is HMAC-SHA256(app secret, token) in hex.
func AppSecretProof(appSecret, token string) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write([]byte(token))
	return hex.EncodeToString(mac.Sum(nil))
}

func (c *Client) do(ctx context.Context, method, path, token string, query url.Values, body io.Reader, contentType string, out any) error {
	base := c.GraphURL
	if base == "" {
		base = DefaultGraphURL
	}
	version := c.Version
	if version == "" {
		version = DefaultVersion
	}
	if query == nil {
		query = url.Values{}
	}
	if c.AppSecret != "" {
		query.Set("appsecret_proof", AppSecretProof(c.AppSecret, token))
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+"/"+version+path+"?"+query.Encode(), body)
	if err != nil {
		return err
	}
	// The token goes in the header, never in the URL: URLs end up in logs.
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return scrub(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return scrub(err)
	}
	var wrapped struct {
		Error *Error `json:"error"`
	}
	if json.Unmarshal(data, &wrapped) == nil && wrapped.Error != nil && (wrapped.Error.Code != 0 || wrapped.Error.Type != "") {
		wrapped.Error.HTTPStatus = resp.StatusCode
		return wrapped.Error
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &HTTPError{Status: resp.StatusCode}
	}
	if out != nil {
		if err = json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("graph api answer is not the expected JSON: %w", err)
		}
	}
	return nil
}

// scrub drops the URL from a transport error: attachment URLs and query
// strings must not reach the logs.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s request failed: %w", ue.Op, ue.Err)
	}
	return err
}
