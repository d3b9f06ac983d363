package meta

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The simulator's origin (an exact origin in the config) is fetched with a
// size cap; an expired URL is refused for good, and no error carries the URL
// (it is a credential and errors reach the logs).
func TestMediaFetchFromAnAllowedOrigin(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("Content-Type", "image/jpeg")
			_, _ = w.Write([]byte("0123456789"))
		case "/chunked":
			_, _ = w.Write([]byte("01234"))
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte("56789"))
		case "/declared":
			w.Header().Set("Content-Length", "15000000")
			w.WriteHeader(http.StatusOK)
		case "/expired":
			http.Error(w, "URL signature expired", http.StatusForbidden)
		case "/busy":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	f := &MediaFetcher{Origins: []string{srv.URL}}
	data, mimeType, err := f.Fetch(context.Background(), srv.URL+"/ok?oh=secret", 10)
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(data))
	require.Equal(t, "image/jpeg", mimeType)

	_, _, err = f.Fetch(context.Background(), srv.URL+"/chunked", 9)
	require.ErrorIs(t, err, ErrTooLarge)
	require.Equal(t, ClassRefused, ClassOf(err))
	var tooLarge *TooLargeError
	require.ErrorAs(t, err, &tooLarge)
	require.Equal(t, int64(-1), tooLarge.Size, "no size declared: only known to be over")

	_, _, err = f.Fetch(context.Background(), srv.URL+"/declared", 10<<20)
	require.ErrorAs(t, err, &tooLarge)
	require.Equal(t, int64(15000000), tooLarge.Size, "refused on the declared size, before reading")

	_, _, err = f.Fetch(context.Background(), srv.URL+"/expired?oh=secret", 10)
	require.Equal(t, ClassRefused, ClassOf(err), "a 4xx from the CDN is final")
	require.NotContains(t, err.Error(), "secret")
	_, _, err = f.Fetch(context.Background(), srv.URL+"/busy", 10)
	require.Equal(t, ClassTransient, ClassOf(err), "a 5xx may pass")
}

// Only https URLs on Meta's CDN domains are fetched; anything else is refused
// without a connection, and refused for good.
func TestMediaURLsOutsideMetasCDNAreRefused(t *testing.T) {
	f := &MediaFetcher{}
	for _, ok := range []string{
		"https://scontent.xx.fbcdn.net/v/t1.15752-9/123.jpg?oh=x&oe=y",
		"https://video.xx.fbcdn.net/v/t42/clip.mp4",
		"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=x",
		"https://cdn.fbsbx.com/v/t59/file.pdf",
		"https://scontent.cdninstagram.com/v/x.jpg",
		"https://SCONTENT.XX.FBCDN.NET./v/x.jpg",
	} {
		require.NoError(t, f.Check(ok), ok)
	}
	for _, bad := range []string{
		"http://scontent.xx.fbcdn.net/v/x.jpg", // not https
		"https://fbcdn.net.example.org/x.jpg",
		"https://xfbcdn.net/x.jpg",
		"https://example.org/x.jpg",
		"https://127.0.0.1/x.jpg",
		"https://169.254.169.254/latest/meta-data/",
		"https://[::1]/x",
		"https://user:pw@scontent.xx.fbcdn.net/x.jpg",
		"file:///etc/passwd",
		"ftp://cdn.fbsbx.com/x",
		"/relative",
		"",
		"https://%zz",
	} {
		_, _, err := f.Fetch(context.Background(), bad, 10)
		require.ErrorIs(t, err, ErrMediaURL, bad)
		require.Equal(t, ClassRefused, ClassOf(err), bad)
	}
}

// A listed name that resolves to a loopback address gets no connection: the
// address is checked when the connection is made, not only in the URL.
func TestMediaFetchRefusesLoopbackAtDialTime(t *testing.T) {
	reached := false
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	f := &MediaFetcher{Hosts: []string{"localhost"}}
	_, _, err := f.Fetch(context.Background(), "https://localhost:"+port+"/x.jpg", 10)
	require.ErrorIs(t, err, ErrMediaAddress)
	require.Equal(t, ClassRefused, ClassOf(err))
	require.False(t, reached)
}

// Every redirect is checked like the first URL: to http, to another host, to
// an address literal, or to a name that resolves to loopback, it stops.
func TestMediaRedirectsAreCheckedAtEveryHop(t *testing.T) {
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("x")) }))
	defer target.Close()
	targetPort := target.URL[strings.LastIndex(target.URL, ":")+1:]
	hops := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-private":
			http.Redirect(w, r, "http://10.0.0.7/internal", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "https://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/to-loopback-name":
			http.Redirect(w, r, "https://localhost:"+targetPort+"/x", http.StatusFound)
		case "/to-other-host":
			http.Redirect(w, r, "https://example.org/x", http.StatusFound)
		case "/loop":
			hops++
			http.Redirect(w, r, "/loop?n="+strconv.Itoa(hops), http.StatusFound)
		}
	}))
	defer srv.Close()
	f := &MediaFetcher{Hosts: []string{"localhost"}, Origins: []string{srv.URL}}
	for path, want := range map[string]error{
		"/to-private":       ErrMediaURL,
		"/to-metadata":      ErrMediaURL,
		"/to-other-host":    ErrMediaURL,
		"/to-loopback-name": ErrMediaAddress,
		"/loop":             ErrTooManyRedirects,
	} {
		_, _, err := f.Fetch(context.Background(), srv.URL+path, 10)
		require.ErrorIs(t, err, want, path)
		require.Equal(t, ClassRefused, ClassOf(err), path)
	}
	require.Equal(t, maxMediaRedirects, hops)
}

func TestPublicAddresses(t *testing.T) {
	for addr, public := range map[string]bool{
		"157.240.1.35": true, "31.13.72.36": true, "2a03:2880:f10c:83:face:b00c:0:25de": true,
		"127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "100.64.0.1": false, "0.0.0.0": false, "255.255.255.255": false,
		"224.0.0.1": false, "198.18.0.1": false, "::1": false, "::": false, "fe80::1": false,
		"fc00::1": false, "fd12::1": false, "::ffff:127.0.0.1": false, "::ffff:169.254.169.254": false,
		"64:ff9b::a00:1": false, "2002:a00:1::": false, "ff02::1": false, "192.0.2.1": false,
	} {
		require.Equal(t, public, IsPublicAddr(netip.MustParseAddr(addr)), addr)
		err := refuseNonPublic("tcp", netip.AddrPortFrom(netip.MustParseAddr(addr), 443).String(), nil)
		require.Equal(t, public, err == nil, addr)
	}
}
