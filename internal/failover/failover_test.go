package failover

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

func TestRoleAnswersActiveOnlyOnTheActive(t *testing.T) {
	role := NewRole("host-a/1")
	get := func(method, path string) (*httptest.ResponseRecorder, map[string]any) {
		rec := httptest.NewRecorder()
		role.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec, body
	}
	rec, body := get(http.MethodGet, RolePath)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, "standby", body["role"])
	require.Equal(t, "host-a/1", body["instance"])
	require.False(t, role.Active())

	since := time.UnixMilli(1_700_000_000_000)
	role.now = func() time.Time { return since.Add(1500 * time.Millisecond) }
	valid := true
	role.SetActive(7, since, func() bool { return valid })
	rec, body = get(http.MethodGet, RolePath)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "active", body["role"])
	require.EqualValues(t, 7, body["term"])
	require.EqualValues(t, since.UnixMilli(), body["since"], "when the term was taken")
	require.EqualValues(t, since.UnixMilli()+1500, body["at"], "when the answer was made")
	require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	require.True(t, role.Active())

	rec, _ = get(http.MethodHead, RolePath)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Empty(t, rec.Body.Bytes())
	rec, _ = get(http.MethodPost, RolePath)
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	rec, _ = get(http.MethodGet, "/")
	require.Equal(t, http.StatusNotFound, rec.Code)

	// The lease ran out: the process is about to exit and must not be seen
	// as active by the load balancer or by anyone watching in the meantime.
	valid = false
	rec, body = get(http.MethodGet, RolePath)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, "standby", body["role"])
	require.NotContains(t, body, "term")
	require.False(t, role.Active())
}

// fakeClock is a lease clock a test moves by hand, one clock at a time.
type fakeClock struct {
	mu  sync.Mutex
	now clockReading
}

func (c *fakeClock) read() clockReading {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) move(mono, boot, wall time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now.mono += mono
	c.now.boot += boot
	c.now.wall += int64(wall)
}

// The lease is over as soon as any clock says so. Go's monotonic clock alone
// stands still while a VM is frozen (and while the system is suspended), so a
// resumed former active would think itself active and send what it had
// marked as sending, beside the new active.
func TestTheLeaseEndsOnAnyClock(t *testing.T) {
	const lease = 3 * time.Second
	for _, tc := range []struct {
		name             string
		mono, boot, wall time.Duration
		holds            bool
	}{
		{"no time passed", 0, 0, 0, true},
		{"within the lease on every clock", 2 * time.Second, 2 * time.Second, 2 * time.Second, true},
		{"paused process: every clock past the lease", 4 * time.Second, 4 * time.Second, 4 * time.Second, false},
		{"frozen VM, wall clock set on resume: monotonic and boot time stood still", 0, 0, time.Minute, false},
		{"frozen VM, just past the lease by the wall clock", 10 * time.Millisecond, 10 * time.Millisecond, lease, false},
		{"suspended system: only boot time and the wall clock moved", 0, time.Hour, time.Hour, false},
		{"suspend, wall clock not yet set: boot time alone", 0, 5 * time.Second, 0, false},
		{"wall clock stepped forward by NTP", time.Second, time.Second, 10 * time.Second, false},
		{"wall clock stepped back a little", time.Second, time.Second, -time.Second, true},
		{"wall clock stepped back by more than the lease", time.Second, time.Second, -time.Minute, false},
		{"monotonic alone past the lease", 4 * time.Second, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{now: clockReading{mono: time.Hour, boot: 2 * time.Hour, wall: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC).UnixNano()}}
			l := &Leader{lease: lease, clock: clk.read}
			beat := clk.read()
			l.beat.Store(&beat)
			require.True(t, l.Valid(), "right after a confirmation")
			clk.move(tc.mono, tc.boot, tc.wall)
			require.Equal(t, tc.holds, l.Valid())
		})
	}
	t.Run("no CLOCK_BOOTTIME on this system", func(t *testing.T) {
		clk := &fakeClock{now: clockReading{mono: time.Hour, wall: time.Now().UnixNano()}}
		l := &Leader{lease: lease, clock: clk.read}
		beat := clk.read()
		l.beat.Store(&beat)
		clk.move(time.Second, 0, time.Second)
		require.True(t, l.Valid())
		clk.move(0, 0, 5*time.Second)
		require.False(t, l.Valid())
	})
	t.Run("never confirmed", func(t *testing.T) {
		require.False(t, (&Leader{lease: lease, clock: systemClock()}).Valid())
	})
	t.Run("the system clock", func(t *testing.T) {
		clk := systemClock()
		a := clk()
		time.Sleep(10 * time.Millisecond)
		b := clk()
		require.Greater(t, b.mono, a.mono)
		require.Greater(t, b.wall, a.wall)
		if runtime.GOOS == "linux" {
			require.Greater(t, b.boot, a.boot, "CLOCK_BOOTTIME is read")
		}
	})
}

func TestSQLitePath(t *testing.T) {
	for uri, want := range map[string]string{
		"file:/var/lib/sikkerchat/sikkerchat.db?_txlock=immediate&_secure_delete=on": "/var/lib/sikkerchat/sikkerchat.db",
		"file:sikkerchat.db?_txlock=immediate":                                       "sikkerchat.db",
		"sikkerchat.db":                                                              "sikkerchat.db",
		"file:///srv/db/a.db?x=1":                                                    "/srv/db/a.db",
		":memory:":                                                                   "",
		"file:x?mode=memory&cache=shared":                                            "",
	} {
		require.Equal(t, want, SQLitePath(uri), uri)
	}
}

func TestSecondProcessOnOneSQLiteDatabaseIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sikkerchat.db")
	first, err := LockSQLite(path)
	require.NoError(t, err)
	// flock(2) locks belong to the open file: a second open, as a second
	// process would make, is refused at once.
	_, err = LockSQLite(path)
	require.ErrorIs(t, err, ErrSQLiteInUse)
	require.Contains(t, err.Error(), "PostgreSQL")
	// The kernel drops the lock with the holder (as it does when a process dies).
	require.NoError(t, first.Close())
	second, err := LockSQLite(path)
	require.NoError(t, err)
	require.NoError(t, second.Close())
}

func TestWithParamsKeepsTheDSNAndAddsSettings(t *testing.T) {
	got := WithParams("postgres://u:p@db:5432/sc?sslmode=disable", map[string]string{"application_name": "sikkerchat/ab"})
	require.Equal(t, "postgres://u:p@db:5432/sc?application_name=sikkerchat%2Fab&sslmode=disable", got)
	got = WithParams("host=db dbname=sc", map[string]string{"application_name": "it's"})
	require.Equal(t, `host=db dbname=sc application_name='it\'s'`, got)
}

func elect(t *testing.T, ctx context.Context, dsn, instance string, lease time.Duration, waiting func()) *Leader {
	t.Helper()
	l, err := Elect(ctx, Options{DSN: dsn, Holder: HolderName(), Instance: instance, Poll: 20 * time.Millisecond, Lease: lease, Waiting: waiting})
	require.NoError(t, err)
	t.Cleanup(l.Close)
	return l
}

// pool opens a connection pool as the bridge does, named like a leader's.
func pool(t *testing.T, dsn, holder string) *sql.DB {
	db, err := sql.Open("postgres", WithParams(dsn, map[string]string{"application_name": holder}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestOneActiveAndTheStandbyTakesOverWhenItsSessionEnds(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := elect(t, ctx, dsn, "a", DefaultLease, nil)
	require.EqualValues(t, 1, a.Term)
	require.True(t, a.Valid())

	var waited atomic.Bool
	got := make(chan *Leader, 1)
	go func() {
		l, err := Elect(ctx, Options{DSN: dsn, Holder: HolderName(), Instance: "b", Poll: 20 * time.Millisecond,
			Waiting: func() { waited.Store(true) }})
		if err == nil {
			got <- l
		}
	}()
	require.Eventually(t, waited.Load, 30*time.Second, 10*time.Millisecond, "b waits as standby")
	select {
	case <-got:
		t.Fatal("a second leader while the first holds the lock")
	case <-time.After(300 * time.Millisecond):
	}
	// The active dies: its session ends, and the lock with it.
	a.Close()
	var b *Leader
	select {
	case b = <-got:
	case <-ctx.Done():
		t.Fatal("the standby did not take over")
	}
	defer b.Close()
	require.EqualValues(t, 2, b.Term, "each takeover is a new term")
	var holder, instance string
	require.NoError(t, pool(t, dsn, "reader").QueryRow("SELECT holder, instance FROM sikkerchat_leader").Scan(&holder, &instance))
	require.Equal(t, b.holder, holder)
	require.Equal(t, "b", instance)
}

func TestTheFenceRefusesEveryWriteOfAFormerActive(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	setup := pool(t, dsn, "setup")
	_, err := setup.Exec("CREATE TABLE transcript (seq BIGINT PRIMARY KEY, body TEXT)")
	require.NoError(t, err)

	a := elect(t, ctx, dsn, "a", DefaultLease, nil)
	poolA := pool(t, dsn, a.holder)
	_, err = poolA.Exec("INSERT INTO transcript VALUES (1, 'a')")
	require.NoError(t, err, "the active writes")
	_, err = pool(t, dsn, HolderName()).Exec("INSERT INTO transcript VALUES (2, 'stranger')")
	require.True(t, IsFenced(err), "a session that is not the active's is refused: %v", err)

	// A table made after the election (as bridgev2's upgrades do) is fenced by Fence.
	_, err = poolA.Exec("CREATE TABLE later (x INT)")
	require.NoError(t, err)
	require.NoError(t, a.Fence(ctx))
	_, err = pool(t, dsn, "someone").Exec("INSERT INTO later VALUES (1)")
	require.True(t, IsFenced(err), "%v", err)

	// a's lock session ends (a paused or cut-off process) but its pool lives on.
	discard(a.conn)
	b := elect(t, ctx, dsn, "b", DefaultLease, nil)
	poolB := pool(t, dsn, b.holder)
	for _, stmt := range []string{
		"INSERT INTO transcript VALUES (3, 'zombie')",
		"UPDATE transcript SET body = 'changed'",
		"DELETE FROM transcript",
		"INSERT INTO later VALUES (2)",
	} {
		// Its sessions were ended by the takeover: the first try may meet a
		// closed connection; on a new one the fence refuses. Never does it pass.
		for try := 0; try < 3; try++ {
			if _, err = poolA.Exec(stmt); err == nil || IsFenced(err) {
				break
			}
		}
		require.True(t, IsFenced(err), "%s by the former active: %v", stmt, err)
	}
	_, err = poolB.Exec("INSERT INTO transcript VALUES (3, 'b')")
	require.NoError(t, err, "the new active writes")
	var n int
	require.NoError(t, poolB.QueryRow("SELECT count(*) FROM transcript WHERE body IN ('a', 'b')").Scan(&n))
	require.Equal(t, 2, n)
}

func TestTakeOverEndsTheFormerActivesTransactionUnderWay(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := pool(t, dsn, "setup").Exec("CREATE TABLE outbox (seq BIGINT PRIMARY KEY)")
	require.NoError(t, err)
	a := elect(t, ctx, dsn, "a", DefaultLease, nil)
	tx, err := pool(t, dsn, a.holder).Begin()
	require.NoError(t, err)
	_, err = tx.Exec("INSERT INTO outbox VALUES (1)")
	require.NoError(t, err)
	// The process stops mid-transaction; its lock session goes.
	discard(a.conn)
	b := elect(t, ctx, dsn, "b", DefaultLease, nil)
	require.Error(t, tx.Commit(), "the former active's open transaction was ended by the takeover")
	var n int
	require.NoError(t, pool(t, dsn, b.holder).QueryRow("SELECT count(*) FROM outbox").Scan(&n))
	require.Zero(t, n)
}

func TestWatchSaysWhenTheActiveRoleIsLost(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := elect(t, ctx, dsn, "a", time.Second, nil)
	reasons := make(chan string, 2)
	go a.Watch(ctx, func(reason string) { reasons <- reason })
	time.Sleep(300 * time.Millisecond)
	require.True(t, a.Valid())
	// Someone ends the lock session (pg_terminate_backend, a lost host).
	_, err := pool(t, dsn, "admin").Exec(
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()", a.holder)
	require.NoError(t, err)
	select {
	case reason := <-reasons:
		require.Contains(t, reason, "active role")
	case <-ctx.Done():
		t.Fatal("the loss was not noticed")
	}
	require.False(t, a.Valid())
	<-a.done
	require.Len(t, reasons, 0, "lost is called once")
}

// The bridge fences the tables it made at start-up while the heartbeat runs:
// both use the lock session, and neither may break the other (lib/pq refuses a
// second statement on a connection still reading the first one's rows).
func TestFenceBesideTheHeartbeatKeepsTheRole(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := elect(t, ctx, dsn, "a", 2*time.Second, nil)
	reasons := make(chan string, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	go a.Watch(watchCtx, func(reason string) { reasons <- reason })
	db := pool(t, dsn, a.holder)
	beats := 0
	for i := 0; beats < 8; i++ {
		before := a.beat.Load()
		_, err := db.Exec(fmt.Sprintf("CREATE TABLE made_later_%d (id integer)", i))
		require.NoError(t, err)
		require.NoError(t, a.Fence(ctx), "fence %d", i)
		if a.beat.Load() != before {
			beats++
		}
		select {
		case reason := <-reasons:
			t.Fatalf("the role was lost beside fence %d: %s", i, reason)
		default:
		}
	}
	stopWatch()
	<-a.done
	require.True(t, a.Valid())
	require.Empty(t, reasons)
}

func TestAPausedActiveLosesTheLockAndKnowsIt(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// a never confirms its lock (as a paused process does not): the database
	// ends its idle session after the lease, and b takes over.
	a := elect(t, ctx, dsn, "a", time.Second, nil)
	b := elect(t, ctx, dsn, "b", time.Second, nil)
	require.Equal(t, a.Term+1, b.Term)
	require.False(t, a.Valid(), "a's own clock says its lease is over")
	var err error
	_, err = pool(t, dsn, a.holder).Exec("CREATE TABLE x (y INT)")
	require.NoError(t, err, "DDL is not fenced (only writes to tables are)")
	require.NoError(t, b.Fence(ctx))
	_, err = pool(t, dsn, a.holder).Exec("INSERT INTO x VALUES (1)")
	require.True(t, IsFenced(err), "%v", err)
	require.False(t, errors.Is(err, context.DeadlineExceeded))
}

// A VM that is frozen runs nothing: its lock session falls idle, the database
// ends it after the lease, and the standby takes over. On resume the former
// active's monotonic clock says almost no time passed (the hypervisor
// restored it); only the wall clock, set forward on resume, says otherwise.
// Its lease must be over before it sends anything, and its role endpoint must
// say so.
func TestAResumedFrozenActiveKnowsItsLeaseIsOver(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clk := &fakeClock{now: clockReading{mono: time.Hour, boot: time.Hour, wall: time.Now().UnixNano()}}
	a, err := Elect(ctx, Options{DSN: dsn, Holder: HolderName(), Instance: "a", Poll: 20 * time.Millisecond, Lease: time.Second, clock: clk.read})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	require.True(t, a.Valid())
	role := NewRole("a")
	role.SetActive(a.Term, a.Since, a.Valid)
	require.True(t, role.Active())
	frozeAt := time.Now()

	b := elect(t, ctx, dsn, "b", time.Second, nil)
	require.Equal(t, a.Term+1, b.Term, "the database ended the frozen active's session and b took over")
	require.False(t, b.Since.Before(a.Since))

	// a resumes: its monotonic clock and boot time stood still; the wall
	// clock is set to the real time.
	clk.move(0, 0, time.Since(frozeAt))
	require.False(t, a.Valid(), "the resumed former active's lease is over")
	require.False(t, role.Active())
	rec := httptest.NewRecorder()
	role.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, RolePath, nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "its role endpoint answers standby")
}
