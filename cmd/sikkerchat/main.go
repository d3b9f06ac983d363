// Command sikkerchat is the Matrix appservice that gives police online patrols
// a secure place to talk with citizens who have no Matrix account.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
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
		os.Exit(verifyExport(os.Args[2:], os.Stdout, os.Stderr))
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

// verifyExport is `sikkerchat verify-export FILE.zip [AUDIT.json]`: exit 0
// when the package is intact (and, given the audit trail, recorded there as
// exported), 1 with every problem listed when it is not, 2 on misuse.
func verifyExport(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || len(args) > 2 {
		fmt.Fprintln(stderr, "usage: sikkerchat verify-export FILE.zip [AUDIT.json]")
		fmt.Fprintln(stderr, "AUDIT.json: the conversation's audit trail from the provisioning API (GET …/conversations/{id}/audit)")
		return 2
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(stderr, "cannot read the package:", err)
		return 2
	}
	sum := sha256.Sum256(data)
	packageSHA := hex.EncodeToString(sum[:])
	fmt.Fprintln(stdout, "SHA-256 of the package:", packageSHA)
	problems := bridge.VerifyExportBytes(data)
	if len(problems) > 0 {
		fmt.Fprintln(stdout, "NOT OK: the package was changed after export:")
		for _, p := range problems {
			fmt.Fprintln(stdout, " -", p)
		}
		return 1
	}
	fmt.Fprintln(stdout, "OK: every file and message matches the manifest, the message chain is whole, and the ZIP is laid out as sikkerchat writes it.")
	if len(args) == 1 {
		fmt.Fprintln(stdout, "To show that this is the package sikkerchat made (not one rebuilt with a new manifest), "+
			"compare the SHA-256 above with the export row of the conversation's audit trail, or pass the trail as a second argument.")
		return 0
	}
	auditJSON, err := os.ReadFile(args[1])
	if err != nil {
		fmt.Fprintln(stderr, "cannot read the audit trail:", err)
		return 2
	}
	record, err := bridge.FindExportRecord(auditJSON, packageSHA)
	switch {
	case err != nil:
		fmt.Fprintln(stdout, "NOT OK:", err)
		return 1
	case record == nil:
		fmt.Fprintln(stdout, "NOT OK: no export row of the audit trail has this SHA-256; this is not a package the bridge recorded exporting.")
		return 1
	}
	fmt.Fprintf(stdout, "OK: the audit trail recorded exporting exactly this package (row %d, %s, by %s).\n",
		record.Seq, time.UnixMilli(record.At).UTC().Format(time.RFC3339), record.Actor)
	return 0
}
