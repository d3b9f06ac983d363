// Command sikkerchat is the Matrix appservice that gives police online patrols
// a secure place to talk with citizens who have no Matrix account.
package main

import (
	"fmt"
	"os"
	"strings"
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
	if len(os.Args) > 1 && os.Args[1] == "verify-export" {
		os.Exit(verifyExport(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "rotate-master-key" {
		os.Exit(rotateMasterKey(os.Args[2:], os.Stdout, os.Stderr))
	}
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
	// mxmain's Run, with the database address hardened between loading the
	// config and opening the database.
	m.PreInit()
	m.Config.Database.URI = secureSQLiteURI(m.Config.Database.Type, m.Config.Database.URI)
	m.Init()
	m.Start()
	exitCode := m.WaitForInterrupt()
	m.Stop()
	os.Exit(exitCode)
}

// secureSQLiteURI makes SQLite overwrite what is deleted (secure_delete) on
// every connection: a label, a guest's words or a token hash that the bridge
// deleted must not stay readable in the database file's free pages.
func secureSQLiteURI(dbType, uri string) string {
	if !strings.HasPrefix(dbType, "sqlite") || strings.Contains(uri, "_secure_delete=") {
		return uri
	}
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return uri + sep + "_secure_delete=on"
}

// verifyExport is `sikkerchat verify-export FILE.zip`: exit 0 when the package
// is intact, 1 with every problem listed when it is not, 2 on misuse.
func verifyExport(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: sikkerchat verify-export FILE.zip")
		return 2
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot read the file:", err)
		return 2
	}
	problems := bridge.VerifyExportBytes(data)
	if len(problems) == 0 {
		fmt.Println("OK: every file and message matches the manifest, and the message chain is whole.")
		return 0
	}
	fmt.Println("NOT OK: the package was changed after export:")
	for _, p := range problems {
		fmt.Println(" -", p)
	}
	return 1
}
