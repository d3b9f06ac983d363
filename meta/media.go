package meta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"
)

// DefaultMediaHosts are the domains Meta serves webhook attachments from:
// Messenger's media on fbcdn.net (scontent.*, video.*) and fbsbx.com
// (cdn.fbsbx.com for files), Instagram's on lookaside.fbsbx.com
// (ig_messaging_cdn) and cdninstagram.com (docs/research/meta-messaging.md §8).
var DefaultMediaHosts = []string{"fbcdn.net", "fbsbx.com", "cdninstagram.com"}

// Errors of an attachment fetch that no retry can fix.
var (
	// ErrMediaURL: the URL is not https, or its host is not one of Meta's.
	ErrMediaURL = errors.New("attachment URL is not an https URL on Meta's CDN")
	// ErrMediaAddress: the host resolved to an address that is not public
	// (loopback, private, link-local, …); what is there is not Meta's CDN.
	ErrMediaAddress = errors.New("attachment host resolves to an address that is not public")
	// ErrTooManyRedirects: the CDN kept redirecting.
	ErrTooManyRedirects = errors.New("attachment URL redirects too often")
)

// TooLargeError is an attachment over the limit. Size is what the CDN
// declared, or -1 when the body simply did not end before the limit.
type TooLargeError struct {
	Size, Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("attachment too large (limit %d bytes)", e.Limit)
}

func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// maxMediaRedirects bounds a fetch's redirects (Go's own default is 10).
const maxMediaRedirects = 5

// MediaFetcher downloads attachments from Meta's CDN and from nowhere else:
// https only, on the listed hosts, never to an address that is not public,
// checked at every redirect and again when the connection is made (so that a
// name that resolves to 127.0.0.1 or 169.254.169.254 gets nothing). It takes
// no proxy from the environment: the connection is made directly, or the
// address check would judge the proxy instead of the CDN.
type MediaFetcher struct {
	// Hosts are the CDN domains; each matches itself and its subdomains.
	// Empty means DefaultMediaHosts.
	Hosts []string
	// Origins are exact origins ("http://127.0.0.1:38123") allowed besides
	// Hosts, over http and on any address: the Meta simulator of the local
	// stack and of tests. Production configs have none.
	Origins []string
	// Timeout bounds one whole fetch (default 60 s).
	Timeout time.Duration

	client *http.Client
}

// Check tells whether a URL may be fetched at all (ErrMediaURL if not).
func (f *MediaFetcher) Check(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return ErrMediaURL
	}
	return f.checkURL(u)
}

func (f *MediaFetcher) checkURL(u *url.URL) error {
	if u.User != nil || u.Host == "" {
		return ErrMediaURL
	}
	if slices.Contains(f.Origins, strings.ToLower(u.Scheme+"://"+u.Host)) {
		return nil
	}
	if u.Scheme != "https" {
		return ErrMediaURL
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if _, err := netip.ParseAddr(host); err == nil {
		return ErrMediaURL // Meta's CDN is always named
	}
	hosts := f.Hosts
	if len(hosts) == 0 {
		hosts = DefaultMediaHosts
	}
	for _, h := range hosts {
		h = strings.ToLower(strings.Trim(h, "."))
		if h != "" && (host == h || strings.HasSuffix(host, "."+h)) {
			return nil
		}
	}
	return ErrMediaURL
}

// Fetch downloads at most maxBytes of an attachment. The URL is the
// credential (Meta signs and expires it): it never appears in an error.
func (f *MediaFetcher) Fetch(ctx context.Context, rawURL string, maxBytes int64) (data []byte, contentType string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", ErrMediaURL
	}
	if err = f.checkURL(u); err != nil {
		return nil, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", ErrMediaURL
	}
	resp, err := f.httpClient().Do(req)
	if err != nil {
		return nil, "", mediaFetchError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", &HTTPError{Status: resp.StatusCode}
	}
	if resp.ContentLength > maxBytes {
		return nil, "", &TooLargeError{Size: resp.ContentLength, Limit: maxBytes}
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, "", scrub(err)
	} else if int64(len(data)) > maxBytes {
		return nil, "", &TooLargeError{Size: -1, Limit: maxBytes}
	}
	return data, resp.Header.Get("Content-Type"), nil
}

// mediaFetchError keeps the refusals of the guards recognisable through the
// url.Error that net/http wraps them in, and drops the URL.
func mediaFetchError(err error) error {
	for _, known := range []error{ErrMediaURL, ErrMediaAddress, ErrTooManyRedirects} {
		if errors.Is(err, known) {
			return known
		}
	}
	return scrub(err)
}

func (f *MediaFetcher) httpClient() *http.Client {
	if f.client != nil {
		return f.client
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	guarded := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: refuseNonPublic}
	plain := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	origins := map[string]bool{}
	for _, o := range f.Origins {
		if u, err := url.Parse(o); err == nil {
			origins[u.Host] = true
			if u.Port() == "" {
				origins[net.JoinHostPort(u.Host, map[string]string{"http": "80", "https": "443"}[u.Scheme])] = true
			}
		}
	}
	transport := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if origins[addr] {
				return plain.DialContext(ctx, network, addr)
			}
			return guarded.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	f.client = &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxMediaRedirects {
				return ErrTooManyRedirects
			}
			return f.checkURL(req.URL)
		},
	}
	return f.client
}

// refuseNonPublic runs when a connection is about to be made, with the
// address the name resolved to: only public unicast addresses pass.
func refuseNonPublic(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return ErrMediaAddress
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !IsPublicAddr(addr) {
		return ErrMediaAddress
	}
	return nil
}

// notPublic are the ranges IsPublicAddr refuses beyond what netip names:
// shared (carrier-grade NAT), IETF protocol assignments, benchmarking,
// reserved, and the IPv6 prefixes that carry an IPv4 address inside.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("100::/64"),
}

// IsPublicAddr tells whether an address is a public unicast address: not
// loopback, private, link-local (169.254.169.254, the cloud metadata
// service, among them), multicast, unspecified or reserved.
func IsPublicAddr(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || !addr.IsGlobalUnicast() || addr.IsPrivate() || addr.IsLoopback() || addr.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}
