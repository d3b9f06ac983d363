package bridge

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"
)

func validConfig(t *testing.T) Config {
	t.Helper()
	var c Config
	require.NoError(t, yaml.Unmarshal([]byte(ExampleConfig), &c))
	c.MasterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	return c
}

func TestExampleConfigValidates(t *testing.T) {
	c := validConfig(t)
	require.NoError(t, c.validate())
	require.Equal(t, LangBokmal, c.validatedLanguage)
	require.Equal(t, "https://chat.example.no/#abc", c.InviteURL("abc"))
	require.Equal(t, "Gjest 0042", c.guestDisplayname(42))
}

func TestConfigRejectsBadValues(t *testing.T) {
	cases := map[string]func(*Config){
		"ttl":             func(c *Config) { c.InviteTTL = "soon" },
		"negative ttl":    func(c *Config) { c.InviteTTL = "-1h" },
		"attempts":        func(c *Config) { c.MaxCodeAttempts = 0 },
		"language":        func(c *Config) { c.Language = "sv" },
		"template":        func(c *Config) { c.GuestDisplaynameTemplate = "{{.Nope" },
		"master key":      func(c *Config) { c.MasterKey = "generate" },
		"short key":       func(c *Config) { c.MasterKey = "AAAA" },
		"public url":      func(c *Config) { c.Guest.PublicURL = "chat.example.no" },
		"listen":          func(c *Config) { c.Guest.Listen = "29346" },
		"insecure cookie": func(c *Config) { c.Guest.InsecureCookies = true; c.Guest.Listen = "0.0.0.0:29346" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := validConfig(t)
			mutate(&c)
			require.Error(t, c.validate())
		})
	}
	c := validConfig(t)
	c.Guest.InsecureCookies = true
	c.Guest.Listen = "127.0.0.1:29346"
	require.NoError(t, c.validate(), "insecure cookies are fine on loopback")
}

func TestEveryMessageHasBothLanguages(t *testing.T) {
	for key := range catalog[LangBokmal] {
		require.NotEmpty(t, catalog[LangEnglish][key], key)
	}
	require.Len(t, catalog[LangEnglish], len(catalog[LangBokmal]))
}

// The device policy: only cross-signed officer devices (identity trusted on
// first use, or stricter) get the guest's messages and may write to the guest.
func TestDevicePolicyRequiresCrossSignedDevices(t *testing.T) {
	for _, c := range []struct {
		receive, send id.TrustState
		ok            bool
	}{
		{id.TrustStateCrossSignedTOFU, id.TrustStateCrossSignedTOFU, true},
		{id.TrustStateCrossSignedVerified, id.TrustStateVerified, true},
		{id.TrustStateUnknownDevice, id.TrustStateCrossSignedTOFU, false},
		{id.TrustStateCrossSignedTOFU, id.TrustStateUnknownDevice, false},
		{id.TrustStateCrossSignedUntrusted, id.TrustStateCrossSignedTOFU, false},
		{id.TrustStateUnset, id.TrustStateUnset, false},
	} {
		err := checkDevicePolicy(c.receive, c.send)
		require.Equal(t, c.ok, err == nil, "receive %s, send %s", c.receive, c.send)
	}
}
