package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/stretchr/testify/require"
)

// The page must leave nothing on the phone and load nothing from elsewhere.
func TestStaticPageRules(t *testing.T) {
	forbidden := regexp.MustCompile(`localStorage|sessionStorage|indexedDB|serviceWorker|caches\.open|document\.cookie|eval\(|new Function|innerHTML|outerHTML|insertAdjacentHTML|https?://`)
	allowedURL := regexp.MustCompile(`https://www\.yr\.no/`) // the quick-exit fallback
	total := 0
	err := fs.WalkDir(staticFS, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := staticFS.ReadFile(path)
		require.NoError(t, err)
		total += len(data)
		text := allowedURL.ReplaceAllString(string(data), "")
		if strings.HasSuffix(path, ".svg") {
			text = strings.ReplaceAll(text, "http://www.w3.org/2000/svg", "")
		}
		for _, line := range strings.Split(text, "\n") {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "//") || strings.HasPrefix(trimmed, "*") || strings.HasPrefix(trimmed, "/*") {
				continue // comments may name what the code avoids
			}
			require.False(t, forbidden.MatchString(line), "%s: %s", path, trimmed)
		}
		if strings.HasSuffix(path, ".js") {
			// compactJS drops whole lines that start with //: safe only while no
			// string can span lines.
			require.NotContains(t, string(data), "`", "%s: no template literals", path)
		}
		if strings.HasSuffix(path, ".html") {
			require.NotRegexp(t, `<script>|<script [^>]*>[^<]|style=|<style`, string(data), "no inline script or style (CSP)")
			require.Contains(t, string(data), "<title>Chat</title>", "a neutral title")
		}
		return nil
	})
	require.NoError(t, err)
	// 64 KiB uncompressed, raised from 60 when the script was split into
	// commented parts; what travels is compressed (the slow-link work).
	require.Less(t, total, 64*1024, "everything the first paint needs stays under 64 KiB")
}

// The script parts become one /app.js in one function scope; a function
// defined in two parts would silently replace the other, so none is.
func TestAppScriptIsOneBundle(t *testing.T) {
	bundle := string(bundleApp())
	require.True(t, strings.HasPrefix(bundle, "// sikkerchat's guest page"))
	require.True(t, strings.HasSuffix(bundle, "}());\n"))
	definedIn := map[string]string{}
	funcDef := regexp.MustCompile(`(?m)^function (\w+)\(|^var (\w+) =`)
	for _, name := range appScripts {
		part, err := staticFS.ReadFile("static/js/" + name + ".js")
		require.NoError(t, err)
		require.Contains(t, bundle, string(part), "%s.js is in the bundle", name)
		for _, m := range funcDef.FindAllStringSubmatch(string(part), -1) {
			ident := m[1] + m[2]
			require.Empty(t, definedIn[ident], "%s is defined in %s.js and %s.js", ident, definedIn[ident], name)
			definedIn[ident] = name
		}
	}
	entries, err := fs.ReadDir(staticFS, "static/js")
	require.NoError(t, err)
	require.Len(t, entries, len(appScripts), "every part is in appScripts")
	require.Contains(t, definedIn, "init")
	require.NotContains(t, bundle, "on('read'", "the server sends no read event")
}

// Every text the page shows exists in every language it offers.
func TestEveryLanguageHasEveryKey(t *testing.T) {
	data, err := staticFS.ReadFile("static/i18n.js")
	require.NoError(t, err)
	block := regexp.MustCompile(`(?ms)^  (\w+): \{\n(.*?)^  \}`)
	key := regexp.MustCompile(`(?m)^    (\w+):`)
	keys := map[string][]string{}
	for _, m := range block.FindAllStringSubmatch(string(data), -1) {
		for _, k := range key.FindAllStringSubmatch(m[2], -1) {
			keys[m[1]] = append(keys[m[1]], k[1])
		}
	}
	require.ElementsMatch(t, []string{"nb", "nn", "en"}, mapKeys(keys))
	for _, lang := range []string{"nn", "en"} {
		require.ElementsMatch(t, keys["nb"], keys[lang], "%s has the same keys as nb", lang)
	}
	// And every key the script asks for is there.
	bundle := string(bundleApp())
	used := regexp.MustCompile(`\bt\('(\w+)'|setT\((?:'[\w-]+'|\w+), '(\w+)'|(?:joinError|composerError)\('(\w+)'`)
	n := 0
	for _, m := range used.FindAllStringSubmatch(bundle, -1) {
		require.Contains(t, keys["nb"], m[1]+m[2]+m[3])
		n++
	}
	require.Greater(t, n, 25, "the script's keys were found")
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// servedPage fetches / with the given Accept-Encoding and returns the
// answer and the decoded document.
func servedPage(t *testing.T, ts *testServer, accept string) (response, string) {
	t.Helper()
	res := ts.request("GET", "/", nil, map[string]string{"Accept-Encoding": accept})
	require.Equal(t, http.StatusOK, res.Code)
	var r io.Reader = bytes.NewReader(res.Body.Bytes())
	switch res.Header().Get("Content-Encoding") {
	case "br":
		r = brotli.NewReader(r)
	case "gzip":
		zr, err := gzip.NewReader(r)
		require.NoError(t, err)
		r = zr
	case "":
	default:
		t.Fatalf("unexpected encoding %q", res.Header().Get("Content-Encoding"))
	}
	doc, err := io.ReadAll(r)
	require.NoError(t, err)
	return res, string(doc)
}

// The first answer holds everything the first view needs: style, script,
// icon and configuration, so the code form needs one call (the session)
// after the page. The inline parts run under a CSP that names their hashes.
func TestPageIsOneDocumentWithItsConfig(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.UnitName = `Politiet "Øst" <script>alert(1)</script> & co`
	ts := newTestServer(t, cfg)
	res, doc := servedPage(t, ts, "")
	require.Empty(t, res.Header().Get("Content-Encoding"))
	require.NotRegexp(t, `<script src=|<link rel="stylesheet"|href="/icon.svg"`, doc, "no second request for the first view")
	require.Contains(t, doc, "<title>Chat</title>")

	// The configuration is the same as GET /api/config answers, escaped.
	m := regexp.MustCompile(`<body data-config="([^"]*)">`).FindStringSubmatch(doc)
	require.NotNil(t, m)
	require.NotContains(t, m[1], "<script>", "the unit name cannot break out of the attribute")
	var embedded, api map[string]any
	require.NoError(t, json.Unmarshal([]byte(html.UnescapeString(m[1])), &embedded))
	require.NoError(t, json.Unmarshal(ts.request("GET", "/api/config", nil, nil).Body.Bytes(), &api))
	require.Equal(t, api, embedded)
	require.Equal(t, cfg.UnitName, embedded["unit_name"])

	// Exactly one inline script and one inline style, each allowed by its hash.
	csp := res.Header().Get("Content-Security-Policy")
	require.NotContains(t, csp, "unsafe-inline")
	for _, re := range []string{`(?s)<script>(.*?)</script>`, `(?s)<style>(.*?)</style>`} {
		all := regexp.MustCompile(re).FindAllStringSubmatch(doc, -1)
		require.Len(t, all, 1, re)
		sum := sha256.Sum256([]byte(all[0][1]))
		require.Contains(t, csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	require.Equal(t, 2, strings.Count(csp, "'sha256-"), "nothing else inline is allowed")
	require.Contains(t, doc, "applyConfig(embeddedConfig())", "the script is in the page")

	// The parts are no longer served on their own: nothing asks for them.
	for _, gone := range []string{"/app.js", "/i18n.js", "/style.css", "/icon.svg"} {
		require.Equal(t, http.StatusNotFound, ts.request("GET", gone, nil, nil).Code, gone)
	}
}

// A change the homeserver makes to the configuration (its upload limit)
// reaches the next page.
func TestPageFollowsTheUploadLimit(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	_, before := servedPage(t, ts, "br")
	ts.sc.SetMaxFileSize(12345)
	_, after := servedPage(t, ts, "br")
	require.NotEqual(t, before, after)
	require.Contains(t, after, "&#34;max_file_bytes&#34;:12345")
}

// Compressed once, chosen by Accept-Encoding, each encoding with its own
// ETag and length; nothing may be cached on the phone.
func TestPageCompressionFollowsAcceptEncoding(t *testing.T) {
	ts := newTestServer(t, newTestConfig(t))
	_, plain := servedPage(t, ts, "identity")
	etags := map[string]bool{}
	for _, c := range []struct{ accept, want string }{
		{"", ""},
		{"identity", ""},
		{"gzip, deflate", "gzip"},
		{"gzip, deflate, br, zstd", "br"},
		{"br;q=0, gzip", "gzip"},
		{"br;q=0, gzip;q=0", ""},
		{"*", "br"},
		{"*;q=0, gzip", "gzip"},
		{"GZIP;Q=0.5", "gzip"},
		{"br;q=nonsense, gzip", "gzip"},
		{"deflate", ""},
	} {
		res, doc := servedPage(t, ts, c.accept)
		h := res.Header()
		require.Equal(t, c.want, h.Get("Content-Encoding"), c.accept)
		require.Equal(t, plain, doc, "%q decodes to the same page", c.accept)
		require.Equal(t, "Accept-Encoding", h.Get("Vary"))
		require.Equal(t, "no-store", h.Get("Cache-Control"))
		require.Equal(t, "text/html; charset=utf-8", h.Get("Content-Type"))
		require.Equal(t, res.Body.Len(), mustAtoi(t, h.Get("Content-Length")), c.accept)
		etags[c.want+" "+h.Get("ETag")] = true
		if c.want != "" {
			require.Less(t, res.Body.Len(), len(plain)/3, "%s pays", c.want)
		}
		// A revalidation with this encoding's tag is answered without a body;
		// another encoding's tag is not this one's.
		again := ts.request("GET", "/", nil, map[string]string{"Accept-Encoding": c.accept, "If-None-Match": `"x", ` + h.Get("ETag")})
		require.Equal(t, http.StatusNotModified, again.Code)
		require.Zero(t, again.Body.Len())
	}
	require.Len(t, etags, 3, "one ETag per encoding: %v", etags)
	gz := ts.request("GET", "/", nil, map[string]string{"Accept-Encoding": "gzip"})
	br := ts.request("GET", "/", nil, map[string]string{"Accept-Encoding": "br", "If-None-Match": gz.Header().Get("ETag")})
	require.Equal(t, http.StatusOK, br.Code, "the gzip tag does not match the brotli page")
	// What the slow-link budget counts: the compressed first answer.
	require.Less(t, br.Body.Len(), 18*1024)
	require.Less(t, gz.Body.Len(), 18*1024)
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	_, err := fmt.Sscanf(s, "%d", &n)
	require.NoError(t, err)
	return n
}

// The page's script, compacted as served, still parses (node --check), and
// compacting dropped only comments and indentation.
func TestServedScriptParses(t *testing.T) {
	src := string(mustStatic("static/i18n.js")) + string(bundleApp())
	compact := string(compactJS(mustStatic("static/i18n.js"))) + string(compactJS(bundleApp()))
	words := func(s string) string {
		var keep []string
		for _, line := range strings.Split(s, "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "//") {
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "\n")
	}
	require.Equal(t, words(src), words(compact))
	require.Less(t, len(compact), len(src))
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; CI has it")
	}
	file := filepath.Join(t.TempDir(), "page.js")
	require.NoError(t, os.WriteFile(file, []byte(compact), 0o600))
	out, err := exec.Command(node, "--check", file).CombinedOutput()
	require.NoError(t, err, string(out))
}
