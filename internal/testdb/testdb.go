// Package testdb gives each test a fresh, empty PostgreSQL database of its own, so tests
// can run in parallel and never see each other's rows.
//
// Under `go test -short` (the tier that runs without any database) New skips the test
// instead, saying what it needs: every test that needs PostgreSQL gets its database here,
// so this is the one place that decides. The full run (`make test`) never skips: there a
// server that cannot be reached fails the test.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding the server to create test databases on.
const EnvURL = "SELFRESET_TEST_DATABASE_URL"

// DefaultURL is the server used when EnvURL is unset: the one scripts/test.sh provisions.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// SkipShort is why a test that needs PostgreSQL does not run under -short.
const SkipShort = "-short: needs PostgreSQL (" + EnvURL + "); runs in `make test`"

// SkipIfShort skips t under -short (SkipShort). New calls it; call it directly in a
// test that needs PostgreSQL before (or without) creating a database.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip(SkipShort)
	}
}

// New creates an empty database for t and returns its connection URL. The database is
// dropped (WITH (FORCE), so open connections do not block it) when t ends. Under -short
// it skips t (SkipIfShort). Otherwise a server that cannot be reached fails the test: a
// database test that skips would hide a broken setup.
func New(t testing.TB) string {
	t.Helper()
	SkipIfShort(t)
	base := os.Getenv(EnvURL)
	if base == "" {
		base = DefaultURL
	}
	name := "selfreset_t_" + randomHex(8)
	ident := pgx.Identifier{name}.Sanitize()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testdb: cannot reach PostgreSQL at %s: %v\n"+
			"Run the tests with scripts/test.sh (see README), which provisions PostgreSQL, "+
			"or point %s at a server you run.", redact(base), err, EnvURL)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("testdb: create database %s: %v", name, err)
	}

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("testdb: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("testdb: drop database %s: %v", name, err)
		}
	})
	return withDatabase(base, name)
}

// withDatabase points a connection string (URL or key=value form) at another database.
func withDatabase(base, name string) string {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		u.RawPath = ""
		return u.String()
	}
	// In key=value form a later keyword overrides an earlier one.
	return strings.TrimSpace(base) + " dbname=" + name
}

// redact hides a password in a URL before it goes into a test log.
func redact(base string) string {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Redacted()
	}
	return "the key=value connection string in " + EnvURL
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b)
}
