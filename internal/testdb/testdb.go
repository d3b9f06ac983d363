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
	admin, err := dbutil.NewWithDialect(dsn, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "sikkerchat_test_" + hex.EncodeToString(suffix)
	ctx := context.Background()
	if _, err = admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	db, err = dbutil.NewWithDialect(u.String(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = db.Close()
		if cleanup, err := dbutil.NewWithDialect(dsn, "postgres"); err == nil {
			_, _ = cleanup.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = cleanup.Close()
		}
	})
	return db, ""
}
