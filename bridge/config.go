package bridge

import (
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"text/template"
	"time"

	up "go.mau.fi/util/configupgrade"
	"go.mau.fi/util/random"
)

//go:embed example-config.yaml
var ExampleConfig string

// Config is the `network` section of the bridge config.
type Config struct {
	UnitName                 string         `yaml:"unit_name"`
	ShowOfficerNames         bool           `yaml:"show_officer_names"`
	Language                 string         `yaml:"language"`
	GuestDisplaynameTemplate string         `yaml:"guest_displayname_template"`
	InviteTTL                string         `yaml:"invite_ttl"`
	MaxCodeAttempts          int            `yaml:"max_code_attempts"`
	IdleClose                string         `yaml:"idle_close"`
	Retention                string         `yaml:"retention"`
	Purge                    PurgeConfig    `yaml:"purge"`
	Guest                    GuestConfig    `yaml:"guest"`
	KeyDir                   string         `yaml:"key_dir"`
	EvidenceDir              string         `yaml:"evidence_dir"`
	MasterKey                string         `yaml:"master_key"`
	Metrics                  MetricsConfig  `yaml:"metrics"`
	Failover                 FailoverConfig `yaml:"failover"`
	Meta                     MetaConfig     `yaml:"meta"`

	inviteTTL         time.Duration
	idleClose         time.Duration
	retention         time.Duration
	masterKey         []byte
	displaynameTmpl   *template.Template
	publicURL         *url.URL
	validatedLanguage Language
	// commandPrefix is bridgev2's (bridge.command_prefix); "!sc" without a bridge.
	commandPrefix string
}

// RateLimitConfig bounds how fast guests can call the guest API (per minute,
// with a burst of a fraction of it).
type RateLimitConfig struct {
	JoinsPerMinute      int `yaml:"joins_per_minute"`
	MessagesPerMinute   int `yaml:"messages_per_minute"`
	FilesPerMinute      int `yaml:"files_per_minute"`
	PerAddressPerMinute int `yaml:"per_address_per_minute"`
}

// FailoverConfig is the active/standby set-up on PostgreSQL
// (docs/operations.md).
type FailoverConfig struct {
	// Listen is the role endpoint's own listener: 200 on the active process,
	// 503 on a standby. Empty: off.
	Listen string `yaml:"listen"`
	// Lease is how long the active keeps going without confirming that it
	// still holds the database lock; a paused or cut-off active loses the
	// lock after it, and the standby takes over.
	Lease string `yaml:"lease"`

	lease time.Duration
}

// LeaseDuration is the validated lease.
func (f FailoverConfig) LeaseDuration() time.Duration { return f.lease }

// MetricsConfig turns on the Prometheus listener.
type MetricsConfig struct {
	Listen string `yaml:"listen"`
}

type PurgeConfig struct {
	Homeserver string `yaml:"homeserver"`
	AdminToken string `yaml:"admin_token"`
}

type GuestConfig struct {
	Listen             string            `yaml:"listen"`
	PublicURL          string            `yaml:"public_url"`
	InsecureCookies    bool              `yaml:"insecure_cookies"`
	SessionIdleTimeout string            `yaml:"session_idle_timeout"`
	TrustedProxies     []string          `yaml:"trusted_proxies"`
	ExitURL            string            `yaml:"exit_url"`
	StaffedHours       map[string]string `yaml:"staffed_hours"`
	MaxMessageLength   int               `yaml:"max_message_length"`
	MaxFileBytes       int64             `yaml:"max_file_bytes"`
	RateLimits         RateLimitConfig   `yaml:"rate_limits"`

	SessionIdle      time.Duration `yaml:"-"`
	TrustedProxyNets []*net.IPNet  `yaml:"-"`
}

func upgradeConfig(helper up.Helper) {
	helper.Copy(up.Str, "unit_name")
	helper.Copy(up.Bool, "show_officer_names")
	helper.Copy(up.Str, "language")
	helper.Copy(up.Str, "guest_displayname_template")
	helper.Copy(up.Str, "invite_ttl")
	helper.Copy(up.Int, "max_code_attempts")
	helper.Copy(up.Str, "idle_close")
	helper.Copy(up.Str, "retention")
	helper.Copy(up.Str, "purge", "homeserver")
	helper.Copy(up.Str, "purge", "admin_token")
	helper.Copy(up.Str, "guest", "listen")
	helper.Copy(up.Str, "guest", "public_url")
	helper.Copy(up.Bool, "guest", "insecure_cookies")
	helper.Copy(up.Str, "guest", "session_idle_timeout")
	helper.Copy(up.List, "guest", "trusted_proxies")
	helper.Copy(up.Str, "guest", "exit_url")
	helper.Copy(up.Map, "guest", "staffed_hours")
	helper.Copy(up.Int, "guest", "max_message_length")
	helper.Copy(up.Int, "guest", "max_file_bytes")
	helper.Copy(up.Int, "guest", "rate_limits", "joins_per_minute")
	helper.Copy(up.Int, "guest", "rate_limits", "messages_per_minute")
	helper.Copy(up.Int, "guest", "rate_limits", "files_per_minute")
	helper.Copy(up.Int, "guest", "rate_limits", "per_address_per_minute")
	helper.Copy(up.Str, "key_dir")
	helper.Copy(up.Str|up.Null, "evidence_dir")
	helper.Copy(up.Str|up.Null, "metrics", "listen")
	helper.Copy(up.Str|up.Null, "failover", "listen")
	helper.Copy(up.Str, "failover", "lease")
	upgradeMetaConfig(helper)
	if key, ok := helper.Get(up.Str, "master_key"); !ok || key == "generate" {
		helper.Set(up.Str, base64.StdEncoding.EncodeToString(random.Bytes(32)), "master_key")
	} else {
		helper.Copy(up.Str, "master_key")
	}
}

// validate parses the durations, key and templates once, so that a bad config
// stops the bridge at start-up instead of failing the first officer command.
func (c *Config) validate() error {
	var err error
	if c.commandPrefix == "" {
		c.commandPrefix = "!sc"
	}
	if c.inviteTTL, err = time.ParseDuration(c.InviteTTL); err != nil || c.inviteTTL <= 0 {
		return fmt.Errorf("network.invite_ttl must be a positive duration like 24h, got %q", c.InviteTTL)
	}
	if c.idleClose, err = time.ParseDuration(c.IdleClose); err != nil || c.idleClose <= 0 {
		return fmt.Errorf("network.idle_close must be a positive duration like 336h, got %q", c.IdleClose)
	}
	if c.retention, err = time.ParseDuration(c.Retention); err != nil || c.retention <= 0 {
		return fmt.Errorf("network.retention must be a positive duration like 2160h, got %q", c.Retention)
	}
	if c.Purge.Homeserver != "synapse" && c.Purge.Homeserver != "dendrite" {
		return fmt.Errorf("network.purge.homeserver must be synapse or dendrite, got %q", c.Purge.Homeserver)
	}
	if c.MaxCodeAttempts < 1 {
		return errors.New("network.max_code_attempts must be at least 1")
	}
	if c.validatedLanguage, err = parseLanguage(c.Language); err != nil {
		return fmt.Errorf("network.language: %w", err)
	}
	if c.displaynameTmpl, err = template.New("displayname").Parse(c.GuestDisplaynameTemplate); err != nil {
		return fmt.Errorf("network.guest_displayname_template: %w", err)
	}
	if strings.TrimSpace(c.KeyDir) == "" {
		return errors.New("network.key_dir must name a folder")
	}
	if c.masterKey, err = base64.StdEncoding.DecodeString(c.MasterKey); err != nil || len(c.masterKey) != 32 {
		return errors.New("network.master_key must be 32 bytes in base64 (set it to \"generate\" to make one)")
	}
	if c.publicURL, err = url.Parse(c.Guest.PublicURL); err != nil || c.publicURL.Host == "" ||
		(c.publicURL.Scheme != "https" && c.publicURL.Scheme != "http") {
		return fmt.Errorf("network.guest.public_url must be an absolute http(s) URL, got %q", c.Guest.PublicURL)
	}
	c.publicURL.Fragment = ""
	c.publicURL.RawQuery = ""
	c.publicURL.Path = strings.TrimSuffix(c.publicURL.Path, "/")
	if c.Guest.SessionIdle, err = time.ParseDuration(c.Guest.SessionIdleTimeout); err != nil || c.Guest.SessionIdle <= 0 {
		return fmt.Errorf("network.guest.session_idle_timeout must be a positive duration like 30m, got %q", c.Guest.SessionIdleTimeout)
	}
	c.Guest.TrustedProxyNets = nil
	for _, cidr := range c.Guest.TrustedProxies {
		_, ipNet, err := net.ParseCIDR(cidr)
		if err != nil {
			return fmt.Errorf("network.guest.trusted_proxies: %q is not a CIDR", cidr)
		}
		c.Guest.TrustedProxyNets = append(c.Guest.TrustedProxyNets, ipNet)
	}
	if exit, err := url.Parse(c.Guest.ExitURL); err != nil || exit.Scheme != "https" || exit.Host == "" {
		return fmt.Errorf("network.guest.exit_url must be an https URL, got %q", c.Guest.ExitURL)
	}
	// 16,000 characters of 3-byte UTF-8 still encrypt to an event under Matrix's 64 KiB.
	if c.Guest.MaxMessageLength < 1 || c.Guest.MaxMessageLength > 16000 {
		return errors.New("network.guest.max_message_length must be between 1 and 16000")
	}
	if c.Guest.MaxFileBytes < 1024 || c.Guest.MaxFileBytes > 1<<30 {
		return errors.New("network.guest.max_file_bytes must be between 1 KiB and 1 GiB")
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			return fmt.Errorf("network.metrics.listen must be host:port or empty, got %q", c.Metrics.Listen)
		}
	}
	if c.Failover.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Failover.Listen); err != nil {
			return fmt.Errorf("network.failover.listen must be host:port or empty, got %q", c.Failover.Listen)
		}
	}
	if c.Failover.lease, err = time.ParseDuration(c.Failover.Lease); err != nil || c.Failover.lease < time.Second || c.Failover.lease > time.Minute {
		return fmt.Errorf("network.failover.lease must be a duration between 1s and 1m, got %q", c.Failover.Lease)
	}
	rl := c.Guest.RateLimits
	if rl.JoinsPerMinute < 1 || rl.MessagesPerMinute < 1 || rl.FilesPerMinute < 1 || rl.PerAddressPerMinute < 1 {
		return errors.New("network.guest.rate_limits: every limit must be at least 1 per minute")
	}
	host, _, err := net.SplitHostPort(c.Guest.Listen)
	if err != nil {
		return fmt.Errorf("network.guest.listen must be host:port, got %q", c.Guest.Listen)
	}
	if c.Guest.InsecureCookies && !isLoopback(host) {
		return errors.New("network.guest.insecure_cookies is only allowed when network.guest.listen is a loopback address")
	}
	return c.Meta.validate()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// PublicOrigin is the scheme://host[:port] the guest page is served from.
func (c *Config) PublicOrigin() string {
	return c.publicURL.Scheme + "://" + c.publicURL.Host
}

// InviteURL is the link the officer pastes to the citizen. The token sits in
// the fragment so that it never reaches server logs or link-preview crawlers.
func (c *Config) InviteURL(token string) string {
	return c.publicURL.String() + "/#" + token
}

func (c *Config) guestDisplayname(number int) string {
	var sb strings.Builder
	err := c.displaynameTmpl.Execute(&sb, struct{ Number string }{fmt.Sprintf("%04d", number)})
	if err != nil || strings.TrimSpace(sb.String()) == "" {
		return fmt.Sprintf("Gjest %04d", number)
	}
	return sb.String()
}

func (sc *Connector) GetConfig() (example string, data any, upgrader up.Upgrader) {
	return ExampleConfig, &sc.Config, &up.StructUpgrader{
		SimpleUpgrader: upgradeConfig,
		Blocks:         [][]string{{"invite_ttl"}, {"purge"}, {"guest"}, {"key_dir"}, {"master_key"}, {"metrics"}, {"failover"}, {"meta"}},
		Base:           ExampleConfig,
	}
}
