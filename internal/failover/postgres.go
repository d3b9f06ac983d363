package failover

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"github.com/rs/zerolog"
)

// lockKey is the advisory lock every sikkerchat process of one database asks
// for (advisory locks are per database, so two deployments on one server do
// not meet). The number is "sikkerchat" folded into 63 bits; it only has to
// stay the same.
const lockKey int64 = 0x73696b6b6572636

// Defaults for Options.
const (
	DefaultPoll  = 250 * time.Millisecond
	DefaultLease = 5 * time.Second
)

// HolderName is a fresh name for this process's database sessions
// (application_name), "sikkerchat/" and 96 random bits: the fence tells the
// active's sessions from a former active's by it.
func HolderName() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "sikkerchat/" + hex.EncodeToString(b)
}

// WithParams adds connection parameters to a lib/pq DSN, in URL or
// key=value form. lib/pq sends parameters it does not know itself to the
// server as run-time settings, so GUCs can be set this way.
func WithParams(dsn string, params map[string]string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			for k, v := range params {
				q.Set(k, v)
			}
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	var sb strings.Builder
	sb.WriteString(dsn)
	for k, v := range params {
		fmt.Fprintf(&sb, " %s='%s'", k, strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v))
	}
	return sb.String()
}

// Options for Elect.
type Options struct {
	// DSN of the bridge database (the same one the bridge uses, not through a
	// transaction-pooling PgBouncer: session advisory locks need a session).
	DSN string
	// Holder is this process's application_name (HolderName); the bridge's
	// own pool must connect with the same one, or the fence refuses its writes.
	Holder string
	// Instance names the process for people (host and pid).
	Instance string
	// Poll is how often a standby asks for the lock.
	Poll time.Duration
	// Lease is how long the active stays active without confirming that it
	// still holds the lock; after it the process must stop.
	Lease time.Duration
	// Waiting is called once when the lock is held by another process.
	Waiting func()

	// clock is the lease's clock (tests give their own); nil: the system's.
	clock clock
}

// Leader is the active process's hold on the database.
type Leader struct {
	Term int64
	// Since is when the term was taken, by this process's wall clock (the
	// since column of the term row).
	Since  time.Time
	holder string
	lease  time.Duration
	db     *sql.DB
	// conn is the lock session. lib/pq cannot run two statements on one
	// connection at once, and the heartbeat runs beside Fence: every use
	// takes connMu.
	connMu sync.Mutex
	conn   *sql.Conn
	clock  clock
	// beat is the clocks' reading taken just before the last confirmation
	// was sent (nil before the first).
	beat atomic.Pointer[clockReading]
	lost atomic.Bool
	done chan struct{} // closed when Watch returns
}

func (o *Options) defaults() {
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.clock == nil {
		o.clock = systemClock()
	}
}

// lockDSN is the DSN of the lock session: named like the pool, with TCP
// keepalives that notice a lost host in seconds instead of hours, and an idle
// limit that ends the session (and frees the lock) when the process stops
// confirming it, as a paused process does.
func lockDSN(o Options) string {
	return WithParams(o.DSN, map[string]string{
		"application_name":        o.Holder,
		"tcp_keepalives_idle":     "2",
		"tcp_keepalives_interval": "1",
		"tcp_keepalives_count":    "3",
		"idle_session_timeout":    strconv.FormatInt(o.Lease.Milliseconds(), 10),
		"connect_timeout":         "5",
	})
}

// Elect blocks until this process holds the lock (or ctx ends), then makes it
// the leader: a new term in sikkerchat_leader, the former active's sessions
// ended, and the fence in place so that nothing of the former active can
// write any more.
func Elect(ctx context.Context, o Options) (*Leader, error) {
	o.defaults()
	log := zerolog.Ctx(ctx)
	db, err := sql.Open("postgres", lockDSN(o))
	if err != nil {
		return nil, fmt.Errorf("failed to open the lock session: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	waiting := false
	var lastErr string
	for {
		conn, err := db.Conn(ctx)
		if err == nil {
			var got bool
			err = conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&got)
			for err == nil && !got {
				if !waiting {
					waiting = true
					log.Info().Msg("Another sikkerchat process is active; waiting as standby")
					if o.Waiting != nil {
						o.Waiting()
					}
				}
				if err = sleep(ctx, o.Poll); err == nil {
					err = conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&got)
				}
			}
			if err == nil {
				l := &Leader{holder: o.Holder, lease: o.Lease, db: db, conn: conn, clock: o.clock, done: make(chan struct{})}
				if err = l.takeOver(ctx, o.Instance); err == nil {
					return l, nil
				}
			}
			discard(conn)
		}
		if ctx.Err() != nil {
			_ = db.Close()
			return nil, ctx.Err()
		}
		if err.Error() != lastErr {
			lastErr = err.Error()
			log.Warn().Err(err).Msg("Failed to ask the database for the active role; trying again")
		}
		if err = sleep(ctx, o.Poll); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
}

// discard closes a session for good (not back to the pool), which frees
// every advisory lock it held.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

const createLeaderTable = `
CREATE TABLE IF NOT EXISTS sikkerchat_leader (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	term     BIGINT NOT NULL,
	holder   TEXT NOT NULL,
	instance TEXT NOT NULL,
	since    BIGINT NOT NULL
);
INSERT INTO sikkerchat_leader (id, term, holder, instance, since) VALUES (1, 0, '', '', 0) ON CONFLICT (id) DO NOTHING`

// fenceFunction refuses a write by any session that is not the active's:
// the active's sessions carry its holder name as application_name.
const fenceFunction = `
CREATE OR REPLACE FUNCTION sikkerchat_fence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM sikkerchat_leader WHERE id = 1 AND holder = current_setting('application_name')) THEN
		RAISE EXCEPTION 'sikkerchat: this process is no longer the active one (fenced)' USING ERRCODE = 'SC001';
	END IF;
	RETURN NULL;
END $$`

// unfencedTables are the tables of this schema that have no fence trigger yet.
const unfencedTables = `
SELECT c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname <> 'sikkerchat_leader'
  AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'sikkerchat_fence')`

// fencedCode is the SQLSTATE of the fence's refusal.
const fencedCode = "SC001"

// IsFenced tells whether err is the database's refusal of a former active's write.
func IsFenced(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == fencedCode
}

func (l *Leader) takeOver(ctx context.Context, instance string) error {
	if _, err := l.conn.ExecContext(ctx, createLeaderTable); err != nil {
		return fmt.Errorf("failed to create the leader table: %w", err)
	}
	var former string
	if err := l.conn.QueryRowContext(ctx, "SELECT holder FROM sikkerchat_leader WHERE id = 1").Scan(&former); err != nil {
		return fmt.Errorf("failed to read the leader row: %w", err)
	}
	// End the former active's sessions first: a write of it that is under
	// way is rolled back, and its table locks do not hold up the fence.
	if err := l.terminate(ctx, former); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := l.bump(ctx, instance)
		if err == nil {
			break
		}
		if attempt >= 20 || ctx.Err() != nil {
			return err
		}
		// A session of the former active came back and holds a table lock:
		// end it again and retry.
		if err = l.terminate(ctx, former); err != nil {
			return err
		}
	}
	// A statement of the former active that began before the new term and is
	// still running is ended here; every later one is refused by the fence.
	if err := l.terminate(ctx, former); err != nil {
		return err
	}
	// The lease starts with a confirmation like every later one.
	return l.confirm(ctx)
}

// bump takes the next term and puts the fence on every table, in one
// transaction.
func (l *Leader) bump(ctx context.Context, instance string) error {
	tx, err := l.conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("failed to begin the new term: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err = tx.ExecContext(ctx, "SET LOCAL lock_timeout = '2s'"); err != nil {
		return err
	}
	since := time.Now()
	if err = tx.QueryRowContext(ctx,
		"UPDATE sikkerchat_leader SET term = term + 1, holder = $1, instance = $2, since = $3 WHERE id = 1 RETURNING term",
		l.holder, instance, since.UnixMilli()).Scan(&l.Term); err != nil {
		return fmt.Errorf("failed to take the next term: %w", err)
	}
	if err = installFence(ctx, tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("failed to commit the new term: %w", err)
	}
	l.Since = since
	return nil
}

type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func installFence(ctx context.Context, q execQuerier) error {
	if _, err := q.ExecContext(ctx, fenceFunction); err != nil {
		return fmt.Errorf("failed to create the fence: %w", err)
	}
	rows, err := q.QueryContext(ctx, unfencedTables)
	if err != nil {
		return fmt.Errorf("failed to list the tables to fence: %w", err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err = rows.Scan(&name); err != nil {
			_ = rows.Close()
			return err
		}
		tables = append(tables, name)
	}
	if err = rows.Close(); err != nil {
		return err
	}
	for _, table := range tables {
		quoted := `"` + strings.ReplaceAll(table, `"`, `""`) + `"`
		if _, err = q.ExecContext(ctx, "CREATE TRIGGER sikkerchat_fence BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "+
			quoted+" FOR EACH STATEMENT EXECUTE FUNCTION sikkerchat_fence()"); err != nil {
			return fmt.Errorf("failed to fence table %s: %w", table, err)
		}
	}
	return nil
}

// Fence puts the fence on tables created since the election (bridgev2 and
// sikkerchat create and upgrade theirs after it). Call it once the bridge has
// started.
func (l *Leader) Fence(ctx context.Context) error {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	tx, err := l.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err = installFence(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (l *Leader) terminate(ctx context.Context, former string) error {
	if former == "" || former == l.holder {
		return nil
	}
	if _, err := l.conn.ExecContext(ctx,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()`, former); err != nil {
		return fmt.Errorf("failed to end the former active's sessions: %w", err)
	}
	return nil
}

// Valid says whether the lock was confirmed within the lease, by every one of
// this process's clocks (clock.go): false at once after the process was
// paused, suspended or frozen for longer than the lease, before any timer has
// fired.
func (l *Leader) Valid() bool {
	if l.lost.Load() {
		return false
	}
	beat := l.beat.Load()
	return beat != nil && leaseHolds(*beat, l.clock(), l.lease)
}

// confirm asks, on the lock session, whether this process still holds the
// term. The lease counts from the reading taken before the question is sent:
// the database's idle_session_timeout counts from the moment the session
// goes idle after the answer, so this process's lease always runs out before
// the database can end the session and let a standby take over. (Counting
// from the answer's arrival, as a slow or descheduled process reads it late,
// would leave a moment in which both think they are active.)
func (l *Leader) confirm(ctx context.Context) error {
	l.connMu.Lock()
	sent := l.clock()
	var holder string
	err := l.conn.QueryRowContext(ctx, "SELECT holder FROM sikkerchat_leader WHERE id = 1").Scan(&holder)
	l.connMu.Unlock()
	if err != nil {
		return err
	}
	if holder != l.holder {
		return errors.New("another process holds the term")
	}
	l.beat.Store(&sent)
	return nil
}

// Watch confirms the lock every fifth of the lease and calls lost (once) when
// it cannot: the lock session failed, another process has the term, or no
// confirmation came within the lease. lost must end the process; a former
// active never becomes a standby again in the same process.
func (l *Leader) Watch(ctx context.Context, lost func(reason string)) {
	defer close(l.done)
	beat := time.NewTicker(l.lease / 5)
	defer beat.Stop()
	deadman := time.NewTicker(l.lease / 10)
	defer deadman.Stop()
	confirmed := make(chan error, 1)
	inFlight := false
	fail := func(reason string) {
		if l.lost.CompareAndSwap(false, true) {
			lost(reason)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if inFlight {
				continue
			}
			inFlight = true
			go func() {
				qctx, cancel := context.WithTimeout(ctx, l.lease/2)
				defer cancel()
				confirmed <- l.confirm(qctx)
			}()
		case err := <-confirmed:
			inFlight = false
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				fail("the active role could not be confirmed: " + err.Error())
				return
			}
		case <-deadman.C:
			if !l.Valid() {
				fail("the active role was not confirmed within the lease")
				return
			}
		}
	}
}

// Close ends the lock session (the lock goes with it). Only for tests and a
// clean shutdown; a lost leader exits instead.
func (l *Leader) Close() {
	discard(l.conn)
	_ = l.db.Close()
}
