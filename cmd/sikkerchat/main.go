// Command sikkerchat is the Matrix appservice that gives police online patrols
// a secure place to talk with citizens who have no Matrix account.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
	_ "time/tzdata"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/internal/failover"
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
	// On PostgreSQL every session of this process carries its holder name:
	// the fence lets only the active's sessions write.
	holder := failover.HolderName()
	postgres := m.Config.Database.Type == "postgres"
	if postgres {
		m.Config.Database.URI = failover.WithParams(m.Config.Database.URI, map[string]string{"application_name": holder})
	}
	m.Init()
	becomeActive(&m, connector, holder, postgres)
	m.Start()
	exitCode := m.WaitForInterrupt()
	m.Stop()
	os.Exit(exitCode)
}

// Exit codes of the failover (mautrix's own are 10–51).
const (
	exitSQLiteInUse = 60
	exitLostActive  = 61
	exitRoleListen  = 62
)

// becomeActive returns once this process is the active one: on PostgreSQL
// after winning the election (a standby waits here, with no port open but
// the role endpoint), on SQLite after taking the database's lock file.
// Nothing of bridgev2 has started before it returns: no upgrade, no
// appservice listener, no /sync.
func becomeActive(m *mxmain.BridgeMain, connector *bridge.Connector, holder string, postgres bool) {
	log := m.Log
	ctx := log.WithContext(context.Background())
	host, _ := os.Hostname()
	instance := fmt.Sprintf("%s/%d", host, os.Getpid())
	role := failover.NewRole(instance)
	if listen := connector.Config.Failover.Listen; listen != "" {
		server := &http.Server{Addr: listen, Handler: role, ReadHeaderTimeout: 5 * time.Second}
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			log.WithLevel(zerolog.FatalLevel).Err(err).Msg("Failed to listen for the role endpoint")
			os.Exit(exitRoleListen)
		}
		go func() { _ = server.Serve(ln) }()
	}
	if !postgres {
		if path := failover.SQLitePath(m.Config.Database.URI); path != "" {
			lock, err := failover.LockSQLite(path)
			if err != nil {
				log.WithLevel(zerolog.FatalLevel).Err(err).Msg("Not starting")
				os.Exit(exitSQLiteInUse)
			}
			locks = append(locks, lock)
		}
		role.SetActive(1, time.Now(), nil)
		return
	}
	lease := connector.Config.Failover.LeaseDuration()
	leader, err := failover.Elect(ctx, failover.Options{
		DSN:      m.Config.Database.URI,
		Holder:   holder,
		Instance: instance,
		Lease:    lease,
	})
	if err != nil {
		log.WithLevel(zerolog.FatalLevel).Err(err).Msg("Failed to become the active process")
		os.Exit(exitLostActive)
	}
	// The endpoint answers standby again as soon as the lease runs out, in the
	// moment before the watchdog below ends the process.
	role.SetActive(leader.Term, leader.Since, leader.Valid)
	connector.ServingFrom(time.Now())
	log.Info().Int64("term", leader.Term).Str("instance", instance).Msg("This process is now the active one")
	connector.StillActive = leader.Valid
	go leader.Watch(ctx, func(reason string) {
		// Crash-only: a graceful stop would write to the database, which
		// belongs to the new active now. The service manager starts this
		// process again, as a standby.
		log.WithLevel(zerolog.FatalLevel).Str("reason", reason).Msg("Lost the active role; exiting")
		os.Exit(exitLostActive)
	})
	// bridgev2 and sikkerchat create their tables after the election: fence
	// those too once they exist.
	m.PostStart = func() {
		if err := leader.Fence(ctx); err != nil {
			log.Warn().Err(err).Msg("Failed to fence the tables made at start-up")
		}
	}
}

// locks holds the SQLite lock file open for the life of the process.
var locks []*os.File

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
