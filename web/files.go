package web

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/rs/zerolog"
	"github.com/sikkerchat/sikkerchat/bridge"
)

// multipartOverhead is room for the form's boundaries and the client_id field.
const multipartOverhead = 64 << 10

// maxConcurrentUploads bounds the memory uploads can hold at once (each is
// read whole, to check its type and seal it).
const maxConcurrentUploads = 4

func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	select {
	case s.uploads <- struct{}{}:
		defer func() { <-s.uploads }()
	default:
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusTooManyRequests, errRateLimited, "Many files are being sent right now, try again in a moment")
		return
	}
	limit := s.Connector.MaxGuestFileBytes()
	if r.ContentLength > limit+multipartOverhead {
		writeError(w, http.StatusRequestEntityTooLarge, errFileTooLarge, "The file is too large")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit+multipartOverhead)
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
	var clientID, name, claimed string
	var data []byte
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
			if data != nil {
				writeError(w, http.StatusBadRequest, errFileMissing, "Send one file at a time")
				return
			}
			name, claimed = part.FileName(), part.Header.Get("Content-Type")
			data, err = io.ReadAll(io.LimitReader(part, limit+1))
			if err != nil {
				s.multipartError(w, err)
				return
			}
			if int64(len(data)) > limit {
				writeError(w, http.StatusRequestEntityTooLarge, errFileTooLarge, "The file is too large")
				return
			}
		default:
			writeError(w, http.StatusBadRequest, errBadJSON, "Unexpected form field")
			return
		}
		_ = part.Close()
	}
	if data == nil {
		writeError(w, http.StatusBadRequest, errFileMissing, "No file in the request")
		return
	}
	entry, isNew, err := s.Connector.QueueGuestFile(r.Context(), conversationOf(r), clientID, name, claimed, data)
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
		writeQueued(w, r, entry, isNew, err)
	}
}

func (s *Server) multipartError(w http.ResponseWriter, err error) {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		writeError(w, http.StatusRequestEntityTooLarge, errFileTooLarge, "The file is too large")
		return
	}
	writeError(w, http.StatusBadRequest, errBadJSON, "Malformed multipart/form-data")
}

// handleFileDownload serves a file of the guest's own conversation as an
// attachment; the ID alone is worth nothing without the session.
func (s *Server) handleFileDownload(w http.ResponseWriter, r *http.Request) {
	conv := conversationOf(r)
	fileID := r.PathValue("id")
	if fileID == "" || len(fileID) > 80 {
		writeError(w, http.StatusNotFound, errFileNotFound, "No such file")
		return
	}
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
	data, err := s.Connector.Transcript.File(r.Context(), conv.ID, fileID)
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
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Disposition", mime.FormatMediaType(disposition, map[string]string{"filename": info.Name}))
	w.Header().Set("Content-Length", itoa(len(data)))
	_, _ = w.Write(data)
}
