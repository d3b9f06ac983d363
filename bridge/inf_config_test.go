package bridge

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	up "go.mau.fi/util/configupgrade"
	"gopkg.in/yaml.v3"
)

// A bad setting stops the bridge at start with a message that names the
// setting (as it is written in the config) and, where it helps, the value.
func TestConfigErrorsNameTheSettingAndTheValue(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"invite ttl", func(c *Config) { c.InviteTTL = "soon" }, `network.invite_ttl must be a positive duration like 24h, got "soon"`},
		{"zero ttl", func(c *Config) { c.InviteTTL = "0s" }, `network.invite_ttl`},
		{"idle close", func(c *Config) { c.IdleClose = "two weeks" }, `network.idle_close must be a positive duration like 336h, got "two weeks"`},
		{"negative idle close", func(c *Config) { c.IdleClose = "-1h" }, `network.idle_close`},
		{"retention", func(c *Config) { c.Retention = "" }, `network.retention must be a positive duration like 2160h, got ""`},
		{"purge homeserver", func(c *Config) { c.Purge.Homeserver = "conduit" }, `network.purge.homeserver must be synapse or dendrite, got "conduit"`},
		{"attempts", func(c *Config) { c.MaxCodeAttempts = -3 }, `network.max_code_attempts must be at least 1`},
		{"language", func(c *Config) { c.Language = "nn" }, `network.language: unsupported language "nn" (use nb or en)`},
		{"displayname template", func(c *Config) { c.GuestDisplaynameTemplate = "Gjest {{.Number" }, `network.guest_displayname_template`},
		{"key dir", func(c *Config) { c.KeyDir = "  " }, `network.key_dir must name a folder`},
		{"master key", func(c *Config) { c.MasterKey = "generate" }, `network.master_key must be 32 bytes in base64`},
		{"master key length", func(c *Config) { c.MasterKey = base64.StdEncoding.EncodeToString(make([]byte, 16)) }, `network.master_key`},
		{"public url scheme", func(c *Config) { c.Guest.PublicURL = "ftp://chat.example.no" }, `network.guest.public_url must be an absolute http(s) URL, got "ftp://chat.example.no"`},
		{"public url relative", func(c *Config) { c.Guest.PublicURL = "/chat" }, `network.guest.public_url`},
		{"public url garbage", func(c *Config) { c.Guest.PublicURL = "https://chat example.no/%zz" }, `network.guest.public_url`},
		{"session idle", func(c *Config) { c.Guest.SessionIdleTimeout = "30" }, `network.guest.session_idle_timeout must be a positive duration like 30m, got "30"`},
		{"trusted proxy", func(c *Config) { c.Guest.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.1"} }, `network.guest.trusted_proxies: "10.0.0.1" is not a CIDR`},
		{"exit url http", func(c *Config) { c.Guest.ExitURL = "http://www.yr.no/" }, `network.guest.exit_url must be an https URL, got "http://www.yr.no/"`},
		{"exit url empty", func(c *Config) { c.Guest.ExitURL = "" }, `network.guest.exit_url`},
		{"message length zero", func(c *Config) { c.Guest.MaxMessageLength = 0 }, `network.guest.max_message_length must be between 1 and 16000`},
		{"message length too long", func(c *Config) { c.Guest.MaxMessageLength = 16001 }, `network.guest.max_message_length`},
		{"file too small", func(c *Config) { c.Guest.MaxFileBytes = 1023 }, `network.guest.max_file_bytes must be between 1 KiB and 1 GiB`},
		{"file too large", func(c *Config) { c.Guest.MaxFileBytes = 1<<30 + 1 }, `network.guest.max_file_bytes`},
		{"metrics listen", func(c *Config) { c.Metrics.Listen = "9100" }, `network.metrics.listen must be host:port or empty, got "9100"`},
		{"joins", func(c *Config) { c.Guest.RateLimits.JoinsPerMinute = 0 }, `network.guest.rate_limits: every limit must be at least 1 per minute`},
		{"messages", func(c *Config) { c.Guest.RateLimits.MessagesPerMinute = 0 }, `network.guest.rate_limits`},
		{"files", func(c *Config) { c.Guest.RateLimits.FilesPerMinute = -1 }, `network.guest.rate_limits`},
		{"per address", func(c *Config) { c.Guest.RateLimits.PerAddressPerMinute = 0 }, `network.guest.rate_limits`},
		{"listen", func(c *Config) { c.Guest.Listen = "localhost" }, `network.guest.listen must be host:port, got "localhost"`},
		{"insecure cookies", func(c *Config) { c.Guest.InsecureCookies = true; c.Guest.Listen = "192.0.2.7:29346" },
			`network.guest.insecure_cookies is only allowed when network.guest.listen is a loopback address`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mutate(&c)
			err := c.validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "the master key never appears in an error")
		})
	}
}

// The limits themselves are allowed, and insecure cookies work on every
// spelling of loopback.
func TestConfigAcceptsItsLimits(t *testing.T) {
	cases := map[string]func(*Config){
		"shortest message":   func(c *Config) { c.Guest.MaxMessageLength = 1 },
		"longest message":    func(c *Config) { c.Guest.MaxMessageLength = 16000 },
		"smallest file":      func(c *Config) { c.Guest.MaxFileBytes = 1024 },
		"largest file":       func(c *Config) { c.Guest.MaxFileBytes = 1 << 30 },
		"one attempt":        func(c *Config) { c.MaxCodeAttempts = 1 },
		"metrics":            func(c *Config) { c.Metrics.Listen = "127.0.0.1:9100" },
		"dendrite":           func(c *Config) { c.Purge.Homeserver = "dendrite" },
		"no trusted proxies": func(c *Config) { c.Guest.TrustedProxies = nil },
		"http public url":    func(c *Config) { c.Guest.PublicURL = "http://127.0.0.1:29346" },
		"localhost cookies":  func(c *Config) { c.Guest.InsecureCookies = true; c.Guest.Listen = "localhost:29346" },
		"ipv6 cookies":       func(c *Config) { c.Guest.InsecureCookies = true; c.Guest.Listen = "[::1]:29346" },
		"127/8 cookies":      func(c *Config) { c.Guest.InsecureCookies = true; c.Guest.Listen = "127.0.0.2:29346" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := validConfig(t)
			mutate(&c)
			require.NoError(t, c.validate())
		})
	}
}

// Whatever the operator wrote after the public address (a trailing slash,
// a query, a fragment), the link keeps the token in the fragment and
// nothing else there.
func TestInviteLinksAreBuiltFromTheCleanPublicAddress(t *testing.T) {
	for publicURL, want := range map[string]string{
		"https://chat.example.no":                   "https://chat.example.no/#TOKEN",
		"https://chat.example.no/":                  "https://chat.example.no/#TOKEN",
		"https://politiet.no/sikker/?utm=1#old":     "https://politiet.no/sikker/#TOKEN",
		"https://chat.example.no:8443/nettpatrulje": "https://chat.example.no:8443/nettpatrulje/#TOKEN",
	} {
		c := validConfig(t)
		c.Guest.PublicURL = publicURL
		require.NoError(t, c.validate(), publicURL)
		require.Equal(t, want, c.InviteURL("TOKEN"), publicURL)
	}
	c := validConfig(t)
	c.Guest.PublicURL = "https://chat.example.no:8443/sti/"
	require.NoError(t, c.validate())
	require.Equal(t, "https://chat.example.no:8443", c.PublicOrigin(), "the origin the guest API checks")
}

// Validation fills in the parsed values the guest side uses, and running it
// again (bridgev2 and NewDetached both do) does not add them twice.
func TestConfigValidationParsesDurationsAndProxiesOnce(t *testing.T) {
	c := validConfig(t)
	c.Guest.SessionIdleTimeout = "45m"
	c.Guest.TrustedProxies = []string{"10.0.0.0/8", "2001:db8::/32"}
	require.NoError(t, c.validate())
	require.NoError(t, c.validate())
	require.Equal(t, "45m0s", c.Guest.SessionIdle.String())
	require.Len(t, c.Guest.TrustedProxyNets, 2)
	require.Equal(t, "10.0.0.0/8", c.Guest.TrustedProxyNets[0].String())
	require.Equal(t, "24h0m0s", c.inviteTTL.String())
	require.Len(t, c.masterKey, 32)
	require.Equal(t, "!sc", c.commandPrefix)

	sc := &Connector{Config: validConfig(t)}
	sc.Config.Retention = "forever"
	require.ErrorContains(t, sc.ValidateConfig(), "network.retention")
}

// A guest's display name comes from the unit's template; a template that
// writes nothing (or fails) gives the default, never an empty name.
func TestGuestDisplaynameFallsBackWhenTheTemplateGivesNothing(t *testing.T) {
	for tmpl, want := range map[string]string{
		"Innbygger {{.Number}}":      "Innbygger 0007",
		"{{.Number}}":                "0007",
		"{{if false}}x{{end}}":       "Gjest 0007",
		"   ":                        "Gjest 0007",
		"{{.Number.Missing}}":        "Gjest 0007",
		"Samtale med nettpatruljen ": "Samtale med nettpatruljen ",
	} {
		c := validConfig(t)
		c.GuestDisplaynameTemplate = tmpl
		require.NoError(t, c.validate(), tmpl)
		require.Equal(t, want, c.guestDisplayname(7), tmpl)
	}
}

// infUpgrade runs the bridge's config upgrader over an operator's network
// section, as bridgev2 does at start.
func infUpgrade(t *testing.T, old string) (string, Config) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(old), 0o600))
	sc := &Connector{}
	_, _, upgrader := sc.GetConfig()
	out, changed, err := up.Do(path, false, upgrader.(up.BaseUpgrader))
	require.NoError(t, err)
	require.True(t, changed)
	var cfg Config
	require.NoError(t, yaml.Unmarshal(out, &cfg))
	return string(out), cfg
}

// Upgrading the config keeps every value the operator set, adds what a
// newer release brought, and makes a master key only when asked to: a key
// made anew on every start would make every open conversation unreadable.
func TestConfigUpgradeKeepsEverySettingAndTheMasterKey(t *testing.T) {
	old := `unit_name: Politiet – Sør-Øst
show_officer_names: true
language: en
guest_displayname_template: Innbygger {{.Number}}
invite_ttl: 12h
max_code_attempts: 3
idle_close: 72h
retention: 720h
purge:
    homeserver: dendrite
    admin_token: syt_admin
guest:
    listen: 0.0.0.0:8080
    public_url: https://chat.politiet.example
    session_idle_timeout: 10m
    trusted_proxies: ["10.1.0.0/16"]
    exit_url: https://www.nrk.no/
    staffed_hours:
        nb: Alltid
    max_message_length: 2000
    max_file_bytes: 10485760
    rate_limits:
        joins_per_minute: 5
        messages_per_minute: 30
        files_per_minute: 4
        per_address_per_minute: 100
key_dir: /var/lib/sikkerchat/keys
evidence_dir: /var/lib/sikkerchat/evidence
master_key: generate
metrics:
    listen: 127.0.0.1:9100
removed_setting: old
`
	out, cfg := infUpgrade(t, old)
	require.Equal(t, "Politiet – Sør-Øst", cfg.UnitName)
	require.True(t, cfg.ShowOfficerNames)
	require.Equal(t, "en", cfg.Language)
	require.Equal(t, "Innbygger {{.Number}}", cfg.GuestDisplaynameTemplate)
	require.Equal(t, []string{"12h", "72h", "720h"}, []string{cfg.InviteTTL, cfg.IdleClose, cfg.Retention})
	require.Equal(t, 3, cfg.MaxCodeAttempts)
	require.Equal(t, PurgeConfig{Homeserver: "dendrite", AdminToken: "syt_admin"}, cfg.Purge)
	require.Equal(t, "0.0.0.0:8080", cfg.Guest.Listen)
	require.Equal(t, "https://chat.politiet.example", cfg.Guest.PublicURL)
	require.Equal(t, "10m", cfg.Guest.SessionIdleTimeout)
	require.Equal(t, []string{"10.1.0.0/16"}, cfg.Guest.TrustedProxies)
	require.Equal(t, "https://www.nrk.no/", cfg.Guest.ExitURL)
	require.Equal(t, map[string]string{"nb": "Alltid"}, cfg.Guest.StaffedHours)
	require.Equal(t, 2000, cfg.Guest.MaxMessageLength)
	require.Equal(t, int64(10485760), cfg.Guest.MaxFileBytes)
	require.Equal(t, RateLimitConfig{JoinsPerMinute: 5, MessagesPerMinute: 30, FilesPerMinute: 4, PerAddressPerMinute: 100}, cfg.Guest.RateLimits)
	require.Equal(t, "/var/lib/sikkerchat/keys", cfg.KeyDir)
	require.Equal(t, "/var/lib/sikkerchat/evidence", cfg.EvidenceDir)
	require.Equal(t, "127.0.0.1:9100", cfg.Metrics.Listen)
	require.NotContains(t, out, "removed_setting")
	require.False(t, cfg.Guest.InsecureCookies, "a setting the operator never wrote gets the example's value")

	key, err := ParseMasterKey(cfg.MasterKey)
	require.NoError(t, err, "generate was replaced with a real key")
	require.NotEqual(t, make([]byte, 32), key)
	require.NoError(t, cfg.validate())

	// The next start keeps that key.
	again, cfg2 := infUpgrade(t, out)
	require.Equal(t, cfg.MasterKey, cfg2.MasterKey)
	require.Equal(t, out, again, "an upgraded config upgrades to itself")

	// A config without the setting gets a key too, a different one.
	_, fresh := infUpgrade(t, strings.Replace(old, "master_key: generate\n", "", 1))
	_, err = ParseMasterKey(fresh.MasterKey)
	require.NoError(t, err)
	require.NotEqual(t, cfg.MasterKey, fresh.MasterKey)
}

// Officers' language can be written as the operator knows it.
func TestOfficerLanguageAcceptsCommonSpellings(t *testing.T) {
	for in, want := range map[string]Language{
		"": LangBokmal, "nb": LangBokmal, "NB": LangBokmal, "no": LangBokmal, "nb-NO": LangBokmal, " nb ": LangBokmal,
		"en": LangEnglish, "EN": LangEnglish, "en-GB": LangEnglish, "en-us": LangEnglish,
	} {
		got, err := parseLanguage(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"sv", "nn", "english", "nb_NO"} {
		_, err := parseLanguage(bad)
		require.ErrorContains(t, err, "use nb or en", bad)
	}
}

// infFmtVerbs lists a text's formatting verbs in order.
var infFmtVerbs = regexp.MustCompile(`%(\[\d+\])?[-+# 0]*\d*(\.\d+)?[a-zA-Z%]`)

// The same arguments fit a message in every language: the same verbs in
// the same order, so a translation can never print %!d(MISSING) or put the
// link where the code word belongs.
func TestEveryTranslationTakesTheSameArguments(t *testing.T) {
	for key, nb := range catalog[LangBokmal] {
		en := catalog[LangEnglish][key]
		require.Equal(t, infFmtVerbs.FindAllString(nb, -1), infFmtVerbs.FindAllString(en, -1), key)
		require.NotEqual(t, nb, en, "%s is not translated", key)
	}
}

// Officers read conversation states and close reasons in their language;
// an unknown language falls back to bokmål, never to an empty text.
func TestStatusNamesAndCloseReasonsInBothLanguages(t *testing.T) {
	for _, tc := range []struct {
		lang   Language
		status map[ConversationStatus]string
		reason map[string]string
	}{
		{LangBokmal,
			map[ConversationStatus]string{StatusCreated: "venter på gjesten", StatusActive: "aktiv", StatusClosed: "avsluttet", StatusExpired: "utløpt"},
			map[string]string{CloseByOfficer: "avsluttet av @kari:politiet.no", CloseInviteExpired: "lenken ble ikke brukt før den gikk ut",
				CloseIdle: "ingen aktivitet på lenge", CloseByProvisioning: "avsluttet fra fagsystemet"}},
		{LangEnglish,
			map[ConversationStatus]string{StatusCreated: "waiting for the guest", StatusActive: "active", StatusClosed: "closed", StatusExpired: "expired"},
			map[string]string{CloseByOfficer: "closed by @kari:politiet.no", CloseInviteExpired: "the link was not used before it expired",
				CloseIdle: "no activity for a long time", CloseByProvisioning: "closed from the case system"}},
	} {
		for status, want := range tc.status {
			require.Equal(t, want, tc.lang.statusName(status), "%s %s", tc.lang, status)
		}
		for reason, want := range tc.reason {
			require.Equal(t, want, tc.lang.closeReason(reason, "@kari:politiet.no"), "%s %s", tc.lang, reason)
		}
	}
	unknown := Language("de")
	require.Equal(t, LangBokmal.T(msgHelp, "!sc"), unknown.T(msgHelp, "!sc"))
	require.Equal(t, "aktiv", unknown.statusName(StatusActive))
	require.Equal(t, "Du kan bare endre dine egne meldinger. Endringen er ikke vist for gjesten.", LangBokmal.T(msgEditNotOwn))
	require.Contains(t, LangEnglish.T(msgHelp, "!politi"), "`!politi close`", "the help shows the configured command prefix")
	require.Equal(t, "Unknown command. Type `!sc help` for a list.", LangEnglish.T(msgUnknownCommand, "!sc"))
}
