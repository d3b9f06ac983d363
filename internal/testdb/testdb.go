// Package testdb gives tests a fresh, empty database: SQLite in a temporary
// folder by default, or a new PostgreSQL database when SIKKERCHAT_TEST_POSTGRES
// holds a DSN (scripts/test.sh sets it for the Postgres run).
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/lib/pq"
	_ "github.com/mattn/go-sqlite3"
	"go.mau.fi/util/dbutil"
)

// IsPostgres tells whether tests run against PostgreSQL.
func IsPostgres() bool {
	return os.Getenv("SIKKERCHAT_TEST_POSTGRES") != ""
}

// New returns an empty database that is dropped when the test ends.
func New(t testing.TB) (db *dbutil.Database, sqlitePath string) {
	t.Helper()
	dsn := os.Getenv("SIKKERCHAT_TEST_POSTGRES")
	if dsn == "" {
		path := filepath.Join(t.TempDir(), "test.db")
		db, err := dbutil.NewWithDialect("file:"+path+"?_txlock=immediate&_foreign_keys=on&_journal_mode=WAL&_secure_delete=on", "sqlite3")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db, path
	}
	db, err := dbutil.NewWithDialect(PostgresDSN(t), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, ""
}

// PostgresDSN creates an empty PostgreSQL database that is dropped when the
// test ends, and returns its DSN; the test is skipped when
// SIKKERCHAT_TEST_POSTGRES is not set.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("SIKKERCHAT_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SIKKERCHAT_TEST_POSTGRES is not set")
	}
	admin, err := dbutil.NewWithDialect(dsn, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "sikkerchat_test_" + hex.EncodeToString(suffix)
	if _, err = admin.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	t.Cleanup(func() {
		if cleanup, err := dbutil.NewWithDialect(dsn, "postgres"); err == nil {
			_, _ = cleanup.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = cleanup.Close()
		}
	})
	return u.String()
}
