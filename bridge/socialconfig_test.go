package bridge

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"
)

func validMetaConfig() MetaConfig {
	return MetaConfig{
		AppSecret: "0123456789abcdef0123456789abcdef", AppID: "1517776481860111", VerifyToken: "verify-token-of-16",
		Listen: "127.0.0.1:29347", GraphURL: "https://graph.facebook.com", APIVersion: "v25.0",
		Pages:     []MetaPage{{PageID: "106512345678901", AccessToken: "EAAG", InstagramAccountID: "17841400000000001"}},
		Officers:  []id.UserID{"@patrulje:example.org"},
		IdleClose: "168h", Retention: "2160h",
		NewRoomBudget: 30, NewRoomWindow: "1h", ReplayWindow: "36h",
	}
}

// The example config has the patrol inbox off, and off needs nothing else.
func TestPatrolInboxIsOffUnlessConfigured(t *testing.T) {
	var cfg Config
	require.NoError(t, yaml.Unmarshal([]byte(ExampleConfig), &cfg))
	require.False(t, cfg.Meta.Enabled())
	require.NoError(t, cfg.Meta.validate())
	m := validMetaConfig()
	require.NoError(t, m.validate())
	require.Equal(t, "168h0m0s", m.idleClose.String())
	require.Equal(t, []string{"fbcdn.net", "fbsbx.com", "cdninstagram.com"}, m.mediaHosts, "Meta's CDN unless told otherwise")
	m.MediaHosts = []string{"CDN.Example.org.", "http://127.0.0.1:29350"}
	require.NoError(t, m.validate())
	require.Equal(t, []string{"cdn.example.org"}, m.mediaHosts)
	require.Equal(t, []string{"http://127.0.0.1:29350"}, m.mediaOrigins)
}

// Every bad setting stops the bridge with the setting's name.
func TestPatrolInboxConfigErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		change func(*MetaConfig)
		want   string
	}{
		{func(m *MetaConfig) { m.AppSecret = "short" }, "network.meta.app_secret"},
		{func(m *MetaConfig) { m.AppID = "" }, "network.meta.app_id"},
		{func(m *MetaConfig) { m.AppID = "12ab" }, "network.meta.app_id"},
		{func(m *MetaConfig) { m.VerifyToken = "guessable" }, "network.meta.verify_token"},
		{func(m *MetaConfig) { m.Listen = "29347" }, "network.meta.listen"},
		{func(m *MetaConfig) { m.GraphURL = "graph.facebook.com" }, "network.meta.graph_url"},
		{func(m *MetaConfig) { m.GraphURL = "ftp://graph.facebook.com" }, "network.meta.graph_url"},
		{func(m *MetaConfig) { m.APIVersion = "25" }, "network.meta.api_version"},
		{func(m *MetaConfig) { m.Pages = nil }, "network.meta.pages"},
		{func(m *MetaConfig) { m.Pages[0].PageID = "my-page" }, "network.meta.pages[0].page_id"},
		{func(m *MetaConfig) { m.Pages[0].AccessToken = " " }, "network.meta.pages[0].access_token"},
		{func(m *MetaConfig) { m.Pages[0].InstagramAccountID = "@politiet" }, "network.meta.pages[0].instagram_account_id"},
		{func(m *MetaConfig) {
			m.Pages = append(m.Pages, MetaPage{PageID: "17841400000000001", AccessToken: "x"})
		}, "listed twice"},
		{func(m *MetaConfig) { m.Officers = nil }, "network.meta.officers"},
		{func(m *MetaConfig) { m.Officers = []id.UserID{"patrulje"} }, "network.meta.officers"},
		{func(m *MetaConfig) { m.Officers = []id.UserID{"@:example.org"} }, "network.meta.officers"},
		{func(m *MetaConfig) { m.IdleClose = "7d" }, "network.meta.idle_close"},
		{func(m *MetaConfig) { m.Retention = "-1h" }, "network.meta.retention"},
		{func(m *MetaConfig) { m.NewRoomBudget = 0 }, "network.meta.new_room_budget"},
		{func(m *MetaConfig) { m.NewRoomWindow = "1s" }, "network.meta.new_room_window"},
		{func(m *MetaConfig) { m.NewRoomWindow = "" }, "network.meta.new_room_window"},
		{func(m *MetaConfig) { m.ReplayWindow = "10m" }, "network.meta.replay_window"},
		{func(m *MetaConfig) { m.MediaHosts = []string{"http://10.0.0.5:8080"} }, "network.meta.media_hosts"},
		{func(m *MetaConfig) { m.MediaHosts = []string{"http://127.0.0.1"} }, "network.meta.media_hosts"},
		{func(m *MetaConfig) { m.MediaHosts = []string{"https://127.0.0.1:8443/cdn"} }, "network.meta.media_hosts"},
		{func(m *MetaConfig) { m.MediaHosts = []string{"169.254.169.254"} }, "network.meta.media_hosts"},
		{func(m *MetaConfig) { m.MediaHosts = []string{"*.fbcdn.net"} }, "network.meta.media_hosts"},
		{func(m *MetaConfig) { m.MediaHosts = []string{"localhost"} }, "network.meta.media_hosts"},
	} {
		m := validMetaConfig()
		tc.change(&m)
		err := m.validate()
		require.Error(t, err, tc.want)
		require.Contains(t, err.Error(), tc.want)
	}
}

func TestPatrolInboxFindsThePageOfAnAccount(t *testing.T) {
	m := validMetaConfig()
	p, ok := m.page("106512345678901")
	require.True(t, ok)
	require.Equal(t, "EAAG", p.AccessToken)
	p, ok = m.page("17841400000000001")
	require.True(t, ok, "the Instagram account sends with its Page's token")
	require.Equal(t, "106512345678901", p.PageID)
	_, ok = m.page("999")
	require.False(t, ok)
	_, ok = m.page("")
	require.False(t, ok)
}
