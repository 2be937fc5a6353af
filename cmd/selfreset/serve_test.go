package main

import (
	"strings"
	"testing"

	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
)

// /readyz asks the event store too: a store that cannot answer makes the ping fail.
func TestEventStorePing(t *testing.T) {
	ctx := t.Context()
	s, err := postgres.Open(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := (eventStorePing{s}).Ping(ctx); err != nil {
		t.Fatalf("ping a live store: %v", err)
	}
	s.Close()
	if err := (eventStorePing{s}).Ping(ctx); err == nil {
		t.Fatal("ping of a closed store succeeded")
	}
}

// Outside --dev, serve refuses the console mail driver (it would print tokens to the logs),
// before it connects to anything.
func TestServeRefusesConsoleMailOutsideDev(t *testing.T) {
	e := cliEnv{"SELFRESET_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "SELFRESET_SECRET": testSecret}
	r := e.fails(t, exitUsage, "", "serve")
	if !strings.Contains(r.stderr, "SELFRESET_MAIL_DRIVER is console") {
		t.Fatalf("stderr: %s", r.stderr)
	}
}
