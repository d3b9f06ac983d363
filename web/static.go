package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
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

// appScripts are the page's script, in parts (static/js), in the order they
// are joined into the one /app.js the page loads: the model first, the
// wiring last. Joined once at start, like miniflux's bundle: no build step,
// and still one request.
var appScripts = []string{"model", "api", "render", "stream", "outbox", "join", "main"}

// bundleApp joins the page's script parts into one function scope.
func bundleApp() []byte {
	var sb strings.Builder
	sb.WriteString("// sikkerchat's guest page: web/static/js/*.js, joined by the bridge at start.\n(function () {\n'use strict';\n")
	for _, name := range appScripts {
		part, err := staticFS.ReadFile("static/js/" + name + ".js")
		if err != nil {
			panic(fmt.Errorf("the page's script part %s is not embedded: %w", name, err))
		}
		sb.WriteString("\n// ---- " + name + ".js ----\n")
		sb.Write(part)
	}
	sb.WriteString("}());\n")
	return []byte(sb.String())
}

func newStaticFile(name string, body []byte) *staticFile {
	sum := sha256.Sum256(body)
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	if strings.HasPrefix(ct, "text/") && !strings.Contains(ct, "charset") {
		ct += "; charset=utf-8"
	}
	return &staticFile{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// loadStatic reads every embedded file once, with its content-hash ETag; the
// script parts are served only as the one /app.js.
func loadStatic() map[string]*staticFile {
	files := map[string]*staticFile{"/app.js": newStaticFile("app.js", bundleApp())}
	_ = fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(p, "static/js/") {
			return err
		}
		body, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		files["/"+strings.TrimPrefix(p, "static/")] = newStaticFile(p, body)
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
