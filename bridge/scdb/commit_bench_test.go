package scdb_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// BenchmarkCommit measures what one durable commit costs on this machine's
// disk: the floor under the bridge's share of a guest message (the 202
// answers after the message is committed) and of an officer's (the inbox row
// is committed before the homeserver is answered). "full" is SQLite's
// default in WAL mode, which sikkerchat keeps: the WAL is synced at every
// commit, so a power cut loses nothing the guest saw as sent. "normal"
// syncs only at checkpoints (a crash of the process loses nothing, a power
// cut may lose the last commits). The p50 and p99 are reported per commit.
//
//	go test -tags goolm -run '^$' -bench Commit -benchtime 2000x ./bridge/scdb/
func BenchmarkCommit(b *testing.B) {
	for _, sync := range []string{"full", "normal"} {
		b.Run(sync, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "bench.db")
			db, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate&_journal_mode=WAL&_synchronous="+sync)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			ctx := context.Background()
			if _, err = db.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)"); err != nil {
				b.Fatal(err)
			}
			body := make([]byte, 300) // a sealed short message
			times := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err = db.ExecContext(ctx, "INSERT INTO t (body) VALUES (?)", body); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
