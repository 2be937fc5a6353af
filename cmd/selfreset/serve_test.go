package main

import (
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
