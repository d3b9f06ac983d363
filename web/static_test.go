package web

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

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
		if strings.HasSuffix(path, ".html") {
			require.NotRegexp(t, `<script>|<script [^>]*>[^<]|style=|<style`, string(data), "no inline script or style (CSP)")
			require.Contains(t, string(data), "<title>Chat</title>", "a neutral title")
		}
		return nil
	})
	require.NoError(t, err)
	require.Less(t, total, 60*1024, "everything the first paint needs stays under 60 KB")
}
