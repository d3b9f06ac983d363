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

	role.SetActive(7)
	rec, body = get(http.MethodGet, RolePath)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "active", body["role"])
	require.EqualValues(t, 7, body["term"])
	require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))

	rec, _ = get(http.MethodHead, RolePath)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Empty(t, rec.Body.Bytes())
	rec, _ = get(http.MethodPost, RolePath)
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	rec, _ = get(http.MethodGet, "/")
	require.Equal(t, http.StatusNotFound, rec.Code)
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
