// Command sikkerchat is the Matrix appservice that gives police online patrols
// a secure place to talk with citizens who have no Matrix account.
package main

import (
	_ "time/tzdata"

	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/web"
)

// Filled by the build (-ldflags "-X main.Tag=... -X main.Commit=... -X main.BuildTime=...").
var (
	Tag       = "unknown"
	Commit    = "unknown"
	BuildTime = "unknown"
)

func main() {
	connector := &bridge.Connector{}
	m := mxmain.BridgeMain{
		Name:        "sikkerchat",
		URL:         "https://github.com/sikkerchat/sikkerchat",
		Description: "Secure conversations between police online patrols and citizens.",
		Version:     "0.1.0",
		Connector:   connector,
		PostInit:    func() { web.Attach(connector) },
	}
	m.InitVersion(Tag, Commit, BuildTime)
	m.Run()
}
