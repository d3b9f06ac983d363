package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// The guest page: hand-written files, embedded, no build step.
//
//go:embed static
var staticFS embed.FS

type staticFile struct {
	body        []byte
	contentType string
	etag        string
}

// loadStatic reads every embedded file once, with its content-hash ETag.
func loadStatic() map[string]*staticFile {
	files := map[string]*staticFile{}
	_ = fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		if strings.HasPrefix(ct, "text/") && !strings.Contains(ct, "charset") {
			ct += "; charset=utf-8"
		}
		files["/"+strings.TrimPrefix(p, "static/")] = &staticFile{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	return files
}

func (s *Server) registerStatic() {
	files := loadStatic()
	serve := func(f *staticFile) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", f.contentType)
			w.Header().Set("ETag", f.etag)
			if r.Header.Get("If-None-Match") == f.etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			_, _ = w.Write(f.body)
		}
	}
	for name, f := range files {
		if name == "/index.html" {
			// The page itself, whatever the fragment: a GET never consumes anything,
			// so link-preview crawlers fetching the link change nothing.
			s.mux.HandleFunc("GET /{$}", serve(f))
			continue
		}
		s.mux.HandleFunc("GET "+name, serve(f))
	}
	s.mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, errNotFound, "Not found")
	})
}
