package web

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// multipartOverhead is room for the form's boundaries and the client_id field.
const multipartOverhead = 64 << 10

// Uploads and downloads stream (a chunk at a time, sealed as it comes in or
// opened as it goes out), so what bounds them is connections, not memory:
// each conversation has a few slots of each, and a guest whose transfer
// stalls keeps their own slot only until the idle timeout, never anyone
// else's.
const (
	uploadsPerConversation   = 2
	downloadsPerConversation = 3
	// transferIdle: a transfer that moves no bytes for this long is cut off.
	transferIdle = 30 * time.Second
	// uploadMax: the longest any upload may take (25 MiB at 400 kbit/s takes 9 minutes).
	uploadMax = 15 * time.Minute
)

// slots counts transfers per conversation.
type slots struct {
	lock sync.Mutex
	max  int
	used map[string]int
}

func newSlots(max int) *slots {
	return &slots{max: max, used: map[string]int{}}
}

// take claims a slot for key; release gives it back.
func (s *slots) take(key string) (release func(), ok bool) {
	s.lock.Lock()
	defer s.lock.Unlock()
	if s.used[key] >= s.max {
		return nil, false
	}
	s.used[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.lock.Lock()
			defer s.lock.Unlock()
			if s.used[key]--; s.used[key] <= 0 {
				delete(s.used, key)
			}
		})
	}, true
}

// deadlineBody moves the connection's read deadline on with every read: an
// upload must keep coming, and must end by a hard limit.
type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	idle  time.Duration
	until time.Time
}

func (d *deadlineBody) Read(p []byte) (int, error) {
	deadline := time.Now().Add(d.idle)
	if deadline.After(d.until) {
		deadline = d.until
	}
	_ = d.rc.SetReadDeadline(deadline) // not every ResponseWriter has a connection (tests)
	return d.ReadCloser.Read(p)
}

func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	conv := conversationOf(r)
	release, ok := s.uploadSlots.take(conv.ID)
	if !ok {
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusTooManyRequests, errRateLimited, "Wait until the files you are sending are done")
		return
	}
	defer release()
	limit := s.Connector.Guests.MaxFileBytes()
	if r.ContentLength > limit+multipartOverhead {
		writeError(w, http.StatusRequestEntityTooLarge, errFileTooLarge, "The file is too large")
		return
	}
	rc := http.NewResponseController(w)
	r.Body = &deadlineBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit+multipartOverhead), rc: rc,
		idle: s.transferIdle, until: time.Now().Add(uploadMax)}
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	// Request.MultipartReader would take multipart/mixed too.
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var reader *multipart.Reader
	if err == nil && mediaType == "multipart/form-data" {
		reader, err = r.MultipartReader()
	}
	if err != nil || reader == nil {
		writeError(w, http.StatusBadRequest, errBadJSON, "Send the file as multipart/form-data")
		return
	}
	ctx := r.Context()
	var clientID string
	var upload *bridge.GuestUpload
	// Whatever ends the request early drops the stored bytes.
	done := false
	defer func() {
		if upload != nil && !done {
			s.Connector.Guests.DiscardFile(ctx, conv, upload)
		}
	}()
	for {
		part, err := reader.NextPart()
		// Only the bare io.EOF is the closing boundary; a wrapped one is a body
		// that ended before it (a wrong boundary, a cut-off upload).
		if err == io.EOF {
			break
		} else if err != nil {
			s.multipartError(w, err)
			return
		}
		switch part.FormName() {
		case "client_id":
			value, err := io.ReadAll(io.LimitReader(part, 128))
			if err != nil {
				s.multipartError(w, err)
				return
			}
			clientID = string(value)
		case "file":
			if upload != nil {
				writeError(w, http.StatusBadRequest, errFileMissing, "Send one file at a time")
				return
			}
			upload, err = s.Connector.Guests.StoreFile(ctx, conv, part.FileName(), part.Header.Get("Content-Type"), part)
			if err != nil {
				s.fileError(w, r, err)
				return
			}
		default:
			writeError(w, http.StatusBadRequest, errBadJSON, "Unexpected form field")
			return
		}
		_ = part.Close()
	}
	if upload == nil {
		writeError(w, http.StatusBadRequest, errFileMissing, "No file in the request")
		return
	}
	done = true
	entry, isNew, err := s.Connector.Guests.QueueStoredFile(ctx, conv, clientID, upload)
	writeQueued(w, r, entry, isNew, err)
}

// fileError answers a file the bridge would not take, or an upload that broke off.
func (s *Server) fileError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, bridge.ErrFileEmpty):
		writeError(w, http.StatusBadRequest, errFileMissing, "The file is empty")
	case errors.Is(err, bridge.ErrFileTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, errFileTooLarge, "The file is too large")
	case errors.Is(err, bridge.ErrFileTypeRefused):
		writeError(w, http.StatusUnsupportedMediaType, errFileTypeRefused, "Only pictures, video, audio and PDF files can be sent")
	case errors.Is(err, bridge.ErrFileTypeClaim):
		writeError(w, http.StatusUnprocessableEntity, errFileTypeMismatch, "The file's contents do not match its type")
	default:
		var readErr *bridge.UploadReadError
		if errors.As(err, &readErr) {
			s.multipartError(w, readErr.Err)
			return
		}
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to store guest file")
		writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func (s *Server) multipartError(w http.ResponseWriter, err error) {
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		writeError(w, http.StatusRequestEntityTooLarge, errFileTooLarge, "The file is too large")
	case isTimeout(err):
		writeError(w, http.StatusRequestTimeout, errUploadTimeout, "The upload stopped; try again")
	default:
		writeError(w, http.StatusBadRequest, errBadJSON, "Malformed multipart/form-data")
	}
}

// handleFileDownload serves a file of the guest's own conversation as an
// attachment; the ID alone is worth nothing without the session. It streams:
// a chunk is opened and written at a time, and a reader that stops taking
// them is cut off.
func (s *Server) handleFileDownload(w http.ResponseWriter, r *http.Request) {
	conv := conversationOf(r)
	fileID := r.PathValue("id")
	if fileID == "" || len(fileID) > 80 {
		writeError(w, http.StatusNotFound, errFileNotFound, "No such file")
		return
	}
	release, ok := s.downloadSlots.take(conv.ID)
	if !ok {
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusTooManyRequests, errRateLimited, "Wait until the files you are fetching are done")
		return
	}
	defer release()
	entries, err := s.Connector.Transcript.Since(r.Context(), conv.ID, 0)
	if err != nil {
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to read transcript for file")
		writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
		return
	}
	var info bridge.FileInfo
	found := false
	for _, e := range entries {
		if fi, ok := bridge.FileInfoOf(e); ok && fi.ID == fileID {
			info, found = fi, true
			break
		}
	}
	if !found {
		writeError(w, http.StatusNotFound, errFileNotFound, "No such file")
		return
	}
	size, err := s.Connector.Transcript.FileSize(r.Context(), conv.ID, fileID)
	if errors.Is(err, bridge.ErrFileNotFound) {
		writeError(w, http.StatusNotFound, errFileNotFound, "No such file")
		return
	} else if err != nil {
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to read file")
		writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
		return
	}
	contentType := "application/octet-stream"
	if bridge.FileTypeAllowed(info.Mime) {
		contentType = info.Mime
	}
	disposition := "attachment"
	if strings.HasPrefix(contentType, "image/") && r.URL.Query().Get("inline") == "1" {
		disposition = "inline" // thumbnails on the page; still same-origin, nosniff and CSP-bound
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", mime.FormatMediaType(disposition, map[string]string{"filename": info.Name}))
	h.Set("Content-Length", itoa(int(size)))
	rc := http.NewResponseController(w)
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	wrote := false
	err = s.Connector.Transcript.StreamFile(r.Context(), conv.ID, fileID, func(chunk []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(s.transferIdle))
		wrote = true
		_, err := w.Write(chunk)
		return err
	})
	if err != nil {
		if !wrote {
			zerolog.Ctx(r.Context()).Err(err).Msg("Failed to read file")
			writeError(w, http.StatusInternalServerError, errUnknown, "Something went wrong")
			return
		}
		// Part of the file is out: end the connection so the browser sees a
		// broken download, never a shorter file that looks whole.
		panic(http.ErrAbortHandler)
	}
}
