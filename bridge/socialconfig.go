package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	up "go.mau.fi/util/configupgrade"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/meta"
)

// MetaConfig is network.meta: the patrol inbox. Off while AppSecret is empty.
type MetaConfig struct {
	AppSecret     string      `yaml:"app_secret"`
	AppID         string      `yaml:"app_id"`
	VerifyToken   string      `yaml:"verify_token"`
	Listen        string      `yaml:"listen"`
	GraphURL      string      `yaml:"graph_url"`
	APIVersion    string      `yaml:"api_version"`
	Pages         []MetaPage  `yaml:"pages"`
	HumanAgent    bool        `yaml:"human_agent"`
	FetchProfiles bool        `yaml:"fetch_profiles"`
	Officers      []id.UserID `yaml:"officers"`
	IdleClose     string      `yaml:"idle_close"`
	Retention     string      `yaml:"retention"`
	MediaHosts    []string    `yaml:"media_hosts"`
	NewRoomBudget int         `yaml:"new_room_budget"`
	NewRoomWindow string      `yaml:"new_room_window"`
	ReplayWindow  string      `yaml:"replay_window"`

	idleClose     time.Duration
	retention     time.Duration
	newRoomWindow time.Duration
	replayWindow  time.Duration
	mediaHosts    []string
	mediaOrigins  []string
}

// MetaPage is a Facebook Page and the Instagram account linked to it.
type MetaPage struct {
	PageID             string `yaml:"page_id"`
	AccessToken        string `yaml:"access_token"`
	InstagramAccountID string `yaml:"instagram_account_id"`
}

// Enabled tells whether the patrol inbox is configured.
func (m *MetaConfig) Enabled() bool { return m.AppSecret != "" }

var graphID = regexp.MustCompile(`^[0-9]{1,32}$`)

func upgradeMetaConfig(helper up.Helper) {
	helper.Copy(up.Str, "meta", "app_secret")
	helper.Copy(up.Str, "meta", "app_id")
	helper.Copy(up.Str, "meta", "verify_token")
	helper.Copy(up.Str, "meta", "listen")
	helper.Copy(up.Str, "meta", "graph_url")
	helper.Copy(up.Str, "meta", "api_version")
	helper.Copy(up.List, "meta", "pages")
	helper.Copy(up.Bool, "meta", "human_agent")
	helper.Copy(up.Bool, "meta", "fetch_profiles")
	helper.Copy(up.List, "meta", "officers")
	helper.Copy(up.Str, "meta", "idle_close")
	helper.Copy(up.Str, "meta", "retention")
	helper.Copy(up.List, "meta", "media_hosts")
	helper.Copy(up.Int, "meta", "new_room_budget")
	helper.Copy(up.Str, "meta", "new_room_window")
	helper.Copy(up.Str, "meta", "replay_window")
}

// validate checks network.meta when it is on; every error names the setting.
func (m *MetaConfig) validate() error {
	if !m.Enabled() {
		return nil
	}
	if len(m.AppSecret) < 16 {
		return errors.New("network.meta.app_secret must be the app's App Secret (32 hex characters)")
	}
	if !graphID.MatchString(m.AppID) {
		return fmt.Errorf("network.meta.app_id must be the Meta app's numeric ID, got %q", m.AppID)
	}
	if len(m.VerifyToken) < 16 {
		return errors.New("network.meta.verify_token must be at least 16 characters (it is the only check on Meta's subscription handshake)")
	}
	if _, _, err := net.SplitHostPort(m.Listen); err != nil {
		return fmt.Errorf("network.meta.listen must be host:port, got %q", m.Listen)
	}
	if u, err := url.Parse(m.GraphURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("network.meta.graph_url must be an absolute http(s) URL, got %q", m.GraphURL)
	}
	if !regexp.MustCompile(`^v[0-9]+\.[0-9]+$`).MatchString(m.APIVersion) {
		return fmt.Errorf("network.meta.api_version must look like v25.0, got %q", m.APIVersion)
	}
	if len(m.Pages) == 0 {
		return errors.New("network.meta.pages must list at least one Facebook Page")
	}
	seen := map[string]bool{}
	for i, p := range m.Pages {
		if !graphID.MatchString(p.PageID) {
			return fmt.Errorf("network.meta.pages[%d].page_id must be the Page's numeric ID, got %q", i, p.PageID)
		}
		if strings.TrimSpace(p.AccessToken) == "" {
			return fmt.Errorf("network.meta.pages[%d].access_token is empty", i)
		}
		if p.InstagramAccountID != "" && !graphID.MatchString(p.InstagramAccountID) {
			return fmt.Errorf("network.meta.pages[%d].instagram_account_id must be numeric, got %q", i, p.InstagramAccountID)
		}
		for _, acct := range []string{p.PageID, p.InstagramAccountID} {
			if acct == "" {
				continue
			}
			if seen[acct] {
				return fmt.Errorf("network.meta.pages: account %s is listed twice", acct)
			}
			seen[acct] = true
		}
	}
	if len(m.Officers) == 0 {
		return errors.New("network.meta.officers must name at least one patrol officer to invite to new rooms")
	}
	for _, o := range m.Officers {
		if local, _, err := o.ParseAndValidateRelaxed(); err != nil || local == "" {
			return fmt.Errorf("network.meta.officers: %q is not a Matrix user ID", o)
		}
	}
	var err error
	if m.idleClose, err = time.ParseDuration(m.IdleClose); err != nil || m.idleClose <= 0 {
		return fmt.Errorf("network.meta.idle_close must be a positive duration like 168h, got %q", m.IdleClose)
	}
	if m.retention, err = time.ParseDuration(m.Retention); err != nil || m.retention <= 0 {
		return fmt.Errorf("network.meta.retention must be a positive duration like 2160h, got %q", m.Retention)
	}
	if m.NewRoomBudget < 1 {
		return fmt.Errorf("network.meta.new_room_budget must be at least 1, got %d", m.NewRoomBudget)
	}
	if m.newRoomWindow, err = time.ParseDuration(m.NewRoomWindow); err != nil || m.newRoomWindow < time.Minute {
		return fmt.Errorf("network.meta.new_room_window must be a duration of at least 1m like 1h, got %q", m.NewRoomWindow)
	}
	if m.replayWindow, err = time.ParseDuration(m.ReplayWindow); err != nil || m.replayWindow < time.Hour {
		return fmt.Errorf("network.meta.replay_window must be a duration of at least 1h like 36h, got %q", m.ReplayWindow)
	}
	return m.validateMediaHosts()
}

// mediaHostName is a DNS name of at least two labels.
var mediaHostName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

// validateMediaHosts sorts network.meta.media_hosts into domains and the
// exact loopback origins of a local simulator.
func (m *MetaConfig) validateMediaHosts() error {
	m.mediaHosts, m.mediaOrigins = nil, nil
	for _, h := range m.MediaHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if strings.Contains(h, "://") {
			u, err := url.Parse(h)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.User != nil || strings.Trim(u.Path, "/") != "" ||
				!isLoopbackHost(u.Hostname()) {
				return fmt.Errorf("network.meta.media_hosts: %q must be a domain like fbcdn.net, or the exact loopback origin of a local simulator like http://127.0.0.1:29350", h)
			}
			m.mediaOrigins = append(m.mediaOrigins, u.Scheme+"://"+u.Host)
			continue
		}
		if !mediaHostName.MatchString(strings.Trim(h, ".")) {
			return fmt.Errorf("network.meta.media_hosts: %q is not a domain like fbcdn.net", h)
		}
		m.mediaHosts = append(m.mediaHosts, strings.Trim(h, "."))
	}
	if len(m.mediaHosts) == 0 && len(m.mediaOrigins) == 0 {
		m.mediaHosts = meta.DefaultMediaHosts
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsLoopback()
}

// page finds the configured Page an account (a Page or its Instagram
// account) belongs to.
func (m *MetaConfig) page(account string) (MetaPage, bool) {
	for _, p := range m.Pages {
		if p.PageID == account || (p.InstagramAccountID != "" && p.InstagramAccountID == account) {
			return p, true
		}
	}
	return MetaPage{}, false
}
