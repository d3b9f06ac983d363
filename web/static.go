package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
)

// The guest page: hand-written files, embedded, no build step.
//
//go:embed static
var staticFS embed.FS

// appScripts are the page's script, in parts (static/js), in the order they
// are joined into one script: the model first, the wiring last. Joined once
// at start, like miniflux's bundle: no build step.
var appScripts = []string{"model", "api", "render", "stream", "outbox", "join", "main"}

// bundleApp joins the page's script parts into one function scope.
func bundleApp() []byte {
	var sb strings.Builder
	sb.WriteString("// sikkerchat's guest page: web/static/js/*.js, joined by the bridge at start.\n(function () {\n'use strict';\n")
	for _, name := range appScripts {
		sb.WriteString("\n// ---- " + name + ".js ----\n")
		sb.Write(mustStatic("static/js/" + name + ".js"))
	}
	sb.WriteString("}());\n")
	return []byte(sb.String())
}

func mustStatic(name string) []byte {
	data, err := staticFS.ReadFile(name)
	if err != nil {
		panic(fmt.Errorf("the page's %s is not embedded: %w", name, err))
	}
	return data
}

// The page is served as one document: style, script and icon inlined, the
// configuration as a data attribute. Every answer is Cache-Control:
// no-store (nothing may stay on the phone), so a separate file is never
// cached: it only costs one more round trip, which is what a slow mobile
// link cannot afford. One answer, then /api/session, and the code form shows.
type pageTemplate struct {
	// before and after surround the value of <body data-config="…">.
	before, after []byte
	// csp is the page's Content-Security-Policy: the inline script and style
	// are allowed by their hashes, nothing else inline is.
	csp string
}

var (
	jsLineComment  = regexp.MustCompile(`(?m)^[ \t]*//.*\n`)
	leadingSpace   = regexp.MustCompile(`(?m)^[ \t]+`)
	emptyLines     = regexp.MustCompile(`\n{2,}`)
	cssBlockNotice = regexp.MustCompile(`(?s)/\*.*?\*/`)
)

// compactJS drops whole-line comments and indentation. It is safe because
// the page's script has no template literals (static_test.go holds it to
// that), so no line can be inside a multi-line string.
func compactJS(src []byte) []byte {
	out := jsLineComment.ReplaceAll(src, nil)
	out = leadingSpace.ReplaceAll(out, nil)
	return emptyLines.ReplaceAll(out, []byte("\n"))
}

// compactCSS drops comments and indentation.
func compactCSS(src []byte) []byte {
	out := cssBlockNotice.ReplaceAll(src, nil)
	out = leadingSpace.ReplaceAll(out, nil)
	return emptyLines.ReplaceAll(out, []byte("\n"))
}

func cspHash(body []byte) string {
	sum := sha256.Sum256(body)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// replaceOnce replaces the one occurrence of old; the page's source must
// hold it exactly once, or the bridge does not start.
func replaceOnce(doc []byte, old, repl string) []byte {
	if n := bytes.Count(doc, []byte(old)); n != 1 {
		panic(fmt.Errorf("index.html holds %q %d times, expected once", old, n))
	}
	return bytes.Replace(doc, []byte(old), []byte(repl), 1)
}

// buildPage inlines the style, the scripts and the icon into index.html.
// The source keeps them as separate files, the way they are edited.
func buildPage() *pageTemplate {
	style := compactCSS(mustStatic("static/style.css"))
	script := append(compactJS(mustStatic("static/i18n.js")), compactJS(bundleApp())...)
	if bytes.Contains(bytes.ToLower(script), []byte("</script")) || bytes.Contains(script, []byte("<!--")) || bytes.Contains(bytes.ToLower(style), []byte("</style")) {
		panic("the page's script or style would end its own element early")
	}
	icon := "data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString(mustStatic("static/icon.svg"))

	doc := mustStatic("static/index.html")
	doc = replaceOnce(doc, `<link rel="icon" href="/icon.svg" type="image/svg+xml">`, `<link rel="icon" href="`+icon+`" type="image/svg+xml">`)
	doc = replaceOnce(doc, `<link rel="stylesheet" href="/style.css">`, "<style>"+string(style)+"</style>")
	doc = replaceOnce(doc, `<script src="/i18n.js" defer></script>`+"\n", "")
	doc = replaceOnce(doc, `<script src="/app.js" defer></script>`+"\n", "")
	// At the end of the body the script runs once the document is parsed,
	// as the deferred file did.
	doc = replaceOnce(doc, "</body>", "<script>"+string(script)+"</script>\n</body>")
	before, after, _ := bytes.Cut(replaceOnce(doc, "<body>", `<body data-config="`+"\x00"+`">`), []byte("\x00"))
	csp := "default-src 'self'; script-src " + cspHash(script) + "; style-src " + cspHash(style) + "; img-src 'self' blob: data:; " +
		"media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
	return &pageTemplate{before: before, after: after, csp: csp}
}

// A encodedPage is the page for one configuration, in every encoding,
// compressed once.
type encodedPage struct {
	config   []byte
	variants map[string]*pageVariant
}

type pageVariant struct {
	body     []byte
	etag     string
	encoding string
}

func (pt *pageTemplate) encode(config []byte) *encodedPage {
	var doc bytes.Buffer
	doc.Write(pt.before)
	doc.WriteString(html.EscapeString(string(config)))
	doc.Write(pt.after)
	plain := doc.Bytes()
	sum := sha256.Sum256(plain)
	tag := hex.EncodeToString(sum[:8])

	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write(plain)
	_ = zw.Close()
	var br bytes.Buffer
	bw := brotli.NewWriterLevel(&br, brotli.BestCompression)
	_, _ = bw.Write(plain)
	_ = bw.Close()

	// Each encoding has its own ETag: the bytes differ.
	return &encodedPage{config: config, variants: map[string]*pageVariant{
		"":     {body: plain, etag: `"` + tag + `"`},
		"gzip": {body: gz.Bytes(), etag: `"` + tag + `-gz"`, encoding: "gzip"},
		"br":   {body: br.Bytes(), etag: `"` + tag + `-br"`, encoding: "br"},
	}}
}

// pageTmpl is the page without its configuration, built once.
var pageTmpl = sync.OnceValue(buildPage)

// pages keeps the page for the last configuration, in every encoding: the
// configuration changes once, when the homeserver's upload limit is learnt.
// Shared by every server in the process (tests make many).
var pages struct {
	sync.Mutex
	last *encodedPage
}

func pageFor(config []byte) *encodedPage {
	pages.Lock()
	defer pages.Unlock()
	if pages.last == nil || !bytes.Equal(pages.last.config, config) {
		pages.last = pageTmpl().encode(config)
	}
	return pages.last
}

// negotiateEncoding picks brotli, then gzip, then none, as Accept-Encoding
// allows (RFC 9110 §12.5.3: q=0 refuses; "*" stands for the rest).
func negotiateEncoding(accept string) string {
	q := map[string]float64{}
	for _, part := range strings.Split(accept, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		weight := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
					weight = f
				} else {
					weight = 0 // a weight we cannot read accepts nothing
				}
			}
		}
		q[name] = weight
	}
	for _, enc := range []string{"br", "gzip"} {
		if w, ok := q[enc]; ok {
			if w > 0 {
				return enc
			}
			continue
		}
		if w, ok := q["*"]; ok && w > 0 {
			return enc
		}
	}
	return ""
}

// etagMatches reads If-None-Match: a list of tags, or "*".
func etagMatches(header, etag string) bool {
	for _, tag := range strings.Split(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == etag {
			return true
		}
	}
	return false
}

// pageConfig is what the page needs before its first view, the same as
// GET /api/config answers.
func (s *Server) pageConfig() configResponse {
	cfg := s.config()
	return configResponse{
		UnitName:        cfg.UnitName,
		ExitURL:         cfg.Guest.ExitURL,
		StaffedHours:    cfg.Guest.StaffedHours,
		Emergency:       map[string]string{"police": "112", "non_emergency": "02800"},
		MaxMessageChars: cfg.Guest.MaxMessageLength,
		MaxFileBytes:    s.Connector.Guests.MaxFileBytes(),
		Languages:       []string{"nb", "nn", "en"},
		DefaultLanguage: "nb",
	}
}

// handlePage serves the page, whatever the fragment: a GET never consumes
// anything, so link-preview crawlers fetching the link change nothing.
func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	config, _ := json.Marshal(s.pageConfig()) // strings, ints and maps of strings: cannot fail
	v := pageFor(config).variants[negotiateEncoding(r.Header.Get("Accept-Encoding"))]
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Vary", "Accept-Encoding")
	h.Set("ETag", v.etag)
	if etagMatches(r.Header.Get("If-None-Match"), v.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if v.encoding != "" {
		h.Set("Content-Encoding", v.encoding)
	}
	h.Set("Content-Length", strconv.Itoa(len(v.body)))
	_, _ = w.Write(v.body)
}

func (s *Server) registerStatic() {
	s.mux.HandleFunc("GET /{$}", s.handlePage)
	s.mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("/", notFound)
}
