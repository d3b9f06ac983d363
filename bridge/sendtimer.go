package bridge

import (
	"net/http"
	"net/url"
	"strings"

	"maunium.net/go/mautrix/bridgev2/matrix"
)

// sendTimer notes when a guest message's send request leaves for the
// homeserver: the end of the bridge's own share of the guest → room path.
type sendTimer struct {
	next    http.RoundTripper
	metrics *Metrics
}

func (st *sendTimer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut {
		if i := strings.LastIndex(req.URL.Path, "/"); i >= 0 && strings.Contains(req.URL.Path, "/send/") {
			if txnID, err := url.PathUnescape(req.URL.Path[i+1:]); err == nil && strings.HasPrefix(txnID, "sikkerchat.") {
				st.metrics.SendStarting(txnID)
			}
		}
	}
	return st.next.RoundTrip(req)
}

// instrumentHomeserverClient times guest messages' sends (before any request is made).
func instrumentHomeserverClient(mc *matrix.Connector, metrics *Metrics) {
	client := mc.AS.HTTPClient
	if client == nil {
		return
	}
	next := client.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	client.Transport = &sendTimer{next: next, metrics: metrics}
}
