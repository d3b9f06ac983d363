package web

import (
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/rs/zerolog"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/internal/jsonbody"
)

// Error codes of the guest API (docs/guest-api.md).
const (
	errNotFound           = "NO.SIKKERCHAT.NOT_FOUND"
	errUnknown            = "NO.SIKKERCHAT.UNKNOWN"
	errBadJSON            = "NO.SIKKERCHAT.BAD_JSON"
	errTooLarge           = "NO.SIKKERCHAT.TOO_LARGE"
	errBadOrigin          = "NO.SIKKERCHAT.BAD_ORIGIN"
	errMissingHeader      = "NO.SIKKERCHAT.MISSING_HEADER"
	errRateLimited        = "NO.SIKKERCHAT.RATE_LIMITED"
	errNoSession          = "NO.SIKKERCHAT.NO_SESSION"
	errSessionExpired     = "NO.SIKKERCHAT.SESSION_EXPIRED"
	errConversationClosed = "NO.SIKKERCHAT.CONVERSATION_CLOSED"
	errBadToken           = "NO.SIKKERCHAT.BAD_TOKEN"
	errCodeMissing        = "NO.SIKKERCHAT.CODE_MISSING"
	errInviteUnknown      = "NO.SIKKERCHAT.INVITE_UNKNOWN"
	errInviteUsed         = "NO.SIKKERCHAT.INVITE_USED"
	errInviteExpired      = "NO.SIKKERCHAT.INVITE_EXPIRED"
	errInviteRevoked      = "NO.SIKKERCHAT.INVITE_REVOKED"
	errCodeWrong          = "NO.SIKKERCHAT.CODE_WRONG"
	errBadClientID        = "NO.SIKKERCHAT.BAD_CLIENT_ID"
	errEmptyMessage       = "NO.SIKKERCHAT.EMPTY_MESSAGE"
	errMessageTooLong     = "NO.SIKKERCHAT.MESSAGE_TOO_LONG"
	errClientIDReused     = "NO.SIKKERCHAT.CLIENT_ID_REUSED"
	errBadSeq             = "NO.SIKKERCHAT.BAD_SEQ"
	errFileTooLarge       = "NO.SIKKERCHAT.FILE_TOO_LARGE"
	errFileTypeRefused    = "NO.SIKKERCHAT.FILE_TYPE_NOT_ALLOWED"
	errFileTypeMismatch   = "NO.SIKKERCHAT.FILE_TYPE_MISMATCH"
	errFileMissing        = "NO.SIKKERCHAT.FILE_MISSING"
	errFileNotFound       = "NO.SIKKERCHAT.FILE_NOT_FOUND"
	errUploadTimeout      = "NO.SIKKERCHAT.UPLOAD_TIMEOUT"
	errRequestTimeout     = "NO.SIKKERCHAT.REQUEST_TIMEOUT"
)

// maxJSONBody bounds every JSON request; a message of max_message_length
// characters of 4-byte UTF-8, JSON-escaped, still fits.
const maxJSONBody = 512 << 10

// decodeJSON reads a small JSON body strictly (see internal/jsonbody).
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mediaType, _, err := mime.ParseMediaType(ct); err != nil || mediaType != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, errBadJSON, "Content-Type must be application/json")
			return false
		}
	}
	switch err := jsonbody.Read(w, r, v, jsonbody.Options{MaxBytes: maxJSONBody}); {
	case errors.Is(err, jsonbody.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, errTooLarge, "Request body too large")
		return false
	case errors.Is(err, jsonbody.ErrTimeout):
		writeError(w, http.StatusRequestTimeout, errRequestTimeout, "The request body did not arrive in time; try again")
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, errBadJSON, "Request body must be a JSON object of the documented shape")
		return false
	}
	return true
}

func (s *Server) cookieName() string {
	if s.config().Guest.InsecureCookies {
		return "sikkerchat_session"
	}
	return "__Host-sikkerchat"
}

func (s *Server) setCookie(w http.ResponseWriter, value string) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName(),
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   !s.config().Guest.InsecureCookies,
		SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName(),
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   !s.config().Guest.InsecureCookies,
		SameSite: http.SameSiteStrictMode,
	})
}

type configResponse struct {
	UnitName        string            `json:"unit_name"`
	ExitURL         string            `json:"exit_url"`
	StaffedHours    map[string]string `json:"staffed_hours"`
	Emergency       map[string]string `json:"emergency"`
	MaxMessageChars int               `json:"max_message_chars"`
	MaxFileBytes    int64             `json:"max_file_bytes"`
	Languages       []string          `json:"languages"`
	DefaultLanguage string            `json:"default_language"`
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.pageConfig())
}

type sessionResponse struct {
	UnitName           string `json:"unit_name"`
	SessionIdleSeconds int    `json:"session_idle_seconds"`
}

func (s *Server) sessionInfo() sessionResponse {
	return sessionResponse{UnitName: s.config().UnitName, SessionIdleSeconds: int(s.config().Guest.SessionIdle.Seconds())}
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.sessionInfo())
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
		Code  string `json:"code"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	sessionToken, _, err := s.Connector.Guests.Join(r.Context(), req.Token, req.Code)
	var wrong *bridge.CodeWrongError
	switch {
	case err == nil:
		s.setCookie(w, sessionToken)
		writeJSON(w, http.StatusOK, s.sessionInfo())
	case errors.Is(err, bridge.ErrBadToken):
		writeError(w, http.StatusBadRequest, errBadToken, "The link is not valid")
	case errors.Is(err, bridge.ErrCodeMissing):
		writeError(w, http.StatusBadRequest, errCodeMissing, "Type the code word")
	case errors.Is(err, bridge.ErrInviteUnknown):
		writeError(w, http.StatusNotFound, errInviteUnknown, "The link is not known")
	case errors.Is(err, bridge.ErrInviteUsed):
		writeError(w, http.StatusGone, errInviteUsed, "The link has already been used")
	case errors.Is(err, bridge.ErrInviteExpired):
		writeError(w, http.StatusGone, errInviteExpired, "The link has expired")
	case errors.Is(err, bridge.ErrInviteRevoked):
		writeError(w, http.StatusGone, errInviteRevoked, "The link no longer works")
	case errors.As(err, &wrong):
		left := wrong.AttemptsLeft
		writeJSON(w, http.StatusForbidden, apiError{ErrCode: errCodeWrong, Error: "Wrong code word", AttemptsLeft: &left})
	default:
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to join conversation")
		writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
	}
}

type messageResponse struct {
	Seq      int64  `json:"seq"`
	ClientID string `json:"client_id"`
	Status   string `json:"status"`
}

func (s *Server) handleMessage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ClientID string `json:"client_id"`
		Text     string `json:"text"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	entry, isNew, err := s.Connector.Guests.QueueText(r.Context(), conversationOf(r), req.ClientID, req.Text)
	switch {
	case errors.Is(err, bridge.ErrEmptyMessage):
		writeError(w, http.StatusBadRequest, errEmptyMessage, "The message is empty")
	case errors.Is(err, bridge.ErrMessageTooLong):
		writeError(w, http.StatusRequestEntityTooLarge, errMessageTooLong,
			fmt.Sprintf("The message is longer than %d characters", s.config().Guest.MaxMessageLength))
	default:
		writeQueued(w, r, entry, isNew, err)
	}
}

// writeQueued answers a guest send (text or file): 202 when stored now, 200
// when the same client_id was already stored, or the shared errors.
func writeQueued(w http.ResponseWriter, r *http.Request, entry *bridge.TranscriptEntry, isNew bool, err error) {
	switch {
	case err == nil:
		status := http.StatusAccepted
		if !isNew {
			status = http.StatusOK
		}
		writeJSON(w, status, messageResponse{Seq: entry.Seq, ClientID: entry.ClientID, Status: string(entry.Status)})
	case errors.Is(err, bridge.ErrBadClientID):
		writeError(w, http.StatusBadRequest, errBadClientID, err.Error())
	case errors.Is(err, bridge.ErrClientIDReused):
		writeError(w, http.StatusConflict, errClientIDReused, "client_id was already used for another message")
	case errors.Is(err, bridge.ErrConversationNotOpen):
		writeError(w, http.StatusGone, errConversationClosed, "The conversation has ended")
	default:
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to store guest message")
		writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
	}
}

func (s *Server) handleTyping(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Typing *bool `json:"typing"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Typing == nil {
		writeError(w, http.StatusBadRequest, errBadJSON, "typing must be true or false")
		return
	}
	s.Connector.Guests.Typing(r.Context(), conversationOf(r), *req.Typing)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRead(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Seq *int64 `json:"seq"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Seq == nil || *req.Seq < 1 {
		writeError(w, http.StatusBadRequest, errBadSeq, "seq must be a positive number")
		return
	}
	if err := s.Connector.Guests.Read(r.Context(), conversationOf(r), *req.Seq); err != nil {
		if errors.Is(err, bridge.ErrUnknownSeq) {
			writeError(w, http.StatusBadRequest, errBadSeq, "No such message")
			return
		}
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to mark read")
		writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request) {
	if cookie, err := r.Cookie(s.cookieName()); err == nil && cookie.Value != "" {
		if err = s.Connector.Guests.EndSession(r.Context(), cookie.Value); err != nil {
			zerolog.Ctx(r.Context()).Err(err).Msg("Failed to end guest session")
		}
	}
	s.clearCookie(w)
	w.WriteHeader(http.StatusNoContent)
}

// sseEvent is one frame of the event stream.
type sseMessage struct {
	Seq       int64    `json:"seq"`
	Direction string   `json:"direction"`
	Kind      string   `json:"kind"`
	Text      string   `json:"text,omitempty"`
	Sender    string   `json:"sender,omitempty"`
	TS        int64    `json:"ts"`
	ClientID  string   `json:"client_id,omitempty"`
	Status    string   `json:"status,omitempty"`
	ReplyTo   int64    `json:"reply_to,omitempty"`
	Edited    bool     `json:"edited,omitempty"`
	Deleted   bool     `json:"deleted,omitempty"`
	File      *sseFile `json:"file,omitempty"`
}

type sseFile struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Mime string `json:"mime"`
	Size int    `json:"size"`
}

func (s *Server) messageFrame(conv *bridge.Conversation, e *bridge.TranscriptEntry) sseMessage {
	msg := sseMessage{Seq: e.Seq, Direction: string(e.Direction), Kind: e.Kind, Text: e.Text, TS: e.CreatedAt.UnixMilli(),
		ReplyTo: e.ReplyTo, Edited: e.Edited, Deleted: e.Deleted}
	if info, ok := bridge.FileInfoOf(e); ok {
		msg.File = &sseFile{ID: info.ID, Name: info.Name, Mime: info.Mime, Size: info.Size}
	}
	if e.Direction == bridge.FromGuest {
		msg.ClientID = e.ClientID
		msg.Status = string(e.Status)
		if e.Status == bridge.EntryRead || (e.Status == bridge.EntryDelivered && e.Seq <= conv.OfficerReadSeq) {
			// Read state comes from the receipts; the row only knows delivered.
			msg.Status = "read"
		}
	} else {
		msg.Sender = s.config().UnitName
		if e.SenderName != "" {
			msg.Sender += " (" + e.SenderName + ")"
		}
	}
	return msg
}
