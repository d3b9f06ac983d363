package failover

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

// BenchmarkFence measures what the fence adds to a write: one INSERT
// (autocommit) into a table of the bridge database, without the fence and
// with it (the trigger reads sikkerchat_leader and compares the session's
// application_name). The p50 and p99 are reported per write.
//
//	SIKKERCHAT_TEST_POSTGRES=… go test -tags goolm -run '^$' -bench Fence -benchtime 3000x ./internal/failover/
func BenchmarkFence(b *testing.B) {
	for _, fenced := range []bool{false, true} {
		name := "unfenced"
		if fenced {
			name = "fenced"
		}
		b.Run(name, func(b *testing.B) {
			dsn := testdb.PostgresDSN(b)
			ctx := context.Background()
			holder := HolderName()
			if fenced {
				l, err := Elect(ctx, Options{DSN: dsn, Holder: holder, Instance: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
			}
			db, err := sql.Open("postgres", WithParams(dsn, map[string]string{"application_name": holder}))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			if _, err = db.ExecContext(ctx, "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, body BYTEA)"); err != nil {
				b.Fatal(err)
			}
			if fenced {
				if _, err = db.ExecContext(ctx, "CREATE TRIGGER sikkerchat_fence BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION sikkerchat_fence()"); err != nil {
					b.Fatal(err)
				}
			}
			body := make([]byte, 300) // a sealed short message
			times := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err = db.ExecContext(ctx, "INSERT INTO t (body) VALUES ($1)", body); err != nil {
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
