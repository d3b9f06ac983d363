package failover

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// ErrSQLiteInUse is the refusal of a second process on one SQLite database.
var ErrSQLiteInUse = errors.New("another sikkerchat process is using this SQLite database; " +
	"only one may run on SQLite (a standby needs PostgreSQL, see docs/operations.md)")

// SQLitePath is the database file of a go-sqlite3 URI ("file:PATH?…" or a
// plain path); "" for an in-memory database.
func SQLitePath(uri string) string {
	path := uri
	if rest, ok := strings.CutPrefix(uri, "file:"); ok {
		path = rest
	}
	path, _, _ = strings.Cut(path, "?")
	if strings.HasPrefix(path, "//") {
		if u, err := url.Parse("file:" + path); err == nil {
			path = u.Path
		}
	}
	if path == "" || path == ":memory:" || strings.Contains(uri, "mode=memory") {
		return ""
	}
	return path
}

// LockSQLite takes an exclusive flock(2) on PATH.lock and holds it for the
// life of the process: the kernel releases it when the process ends, however
// it ends, so a crashed bridge never leaves it behind. A second process gets
// ErrSQLiteInUse at once.
func LockSQLite(dbPath string) (*os.File, error) {
	f, err := os.OpenFile(dbPath+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open the database lock file: %w", err)
	}
	if err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s.lock is held)", ErrSQLiteInUse, dbPath)
		}
		return nil, fmt.Errorf("failed to lock the database: %w", err)
	}
	return f, nil
}
