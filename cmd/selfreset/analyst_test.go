package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"selfreset/config"
	"selfreset/projections"
)

// TestAnalystRole migrates a fresh database with the real command (three processes'
// worth at once, then once more) and reads as selfreset_analyst: every table and view of
// the read models' schema answers; every table of the default schema (the event store,
// sessions, the mail log, the runner's bookkeeping and whatever else lives there) is
// refused with insufficient_privilege.
func TestAnalystRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var wg sync.WaitGroup
	results := make([]result, 3)
	for i := range results {
		wg.Go(func() { results[i] = e.run(t, "", "migrate") })
	}
	wg.Wait()
	for _, r := range results {
		if r.code != exitOK {
			t.Fatalf("concurrent migrate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	e.ok(t, "", "migrate") // the role exists now: still fine

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, e[config.EnvDatabaseURL])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	relations := func(schema string, kinds ...string) []string {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relkind = ANY($2) ORDER BY 1`, schema, kinds)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	readable := relations(projections.Schema, "r", "v", "m", "p")
	secret := relations("public", "r", "v", "m", "p")
	for _, want := range []string{"admin_users", "reset_tokens", "login_activity_daily", "configuration_funnel_daily",
		"enablement_history", "mail_outcomes_daily", "reset_durations", "reset_durations_daily"} {
		if !slices.Contains(readable, want) {
			t.Errorf("%s.%s missing (have %v)", projections.Schema, want, readable)
		}
	}
	for _, want := range []string{"events", "http_sessions", "mail_deliveries", "projection_checkpoints"} {
		if !slices.Contains(secret, want) {
			t.Errorf("public.%s missing (have %v)", want, secret)
		}
	}

	// As the analyst, each read in a transaction of its own (a refusal aborts it).
	read := func(schema, rel string) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+projections.AnalystRole); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, "SELECT * FROM "+pgx.Identifier{schema, rel}.Sanitize()+" LIMIT 1")
		if err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}
	for _, rel := range readable {
		if err := read(projections.Schema, rel); err != nil {
			t.Errorf("the analyst cannot read %s.%s: %v", projections.Schema, rel, err)
		}
	}
	for _, rel := range secret {
		var pgErr *pgconn.PgError
		if err := read("public", rel); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("the analyst reading public.%s: %v, want insufficient_privilege (42501)", rel, err)
		}
	}

	// The role itself cannot log in: a person gets a login role that is granted it.
	var canLogin bool
	if err := conn.QueryRow(ctx, `SELECT rolcanlogin FROM pg_roles WHERE rolname = $1`, projections.AnalystRole).Scan(&canLogin); err != nil {
		t.Fatal(err)
	}
	if canLogin {
		t.Errorf("%s can log in; it should be NOLOGIN with no password", projections.AnalystRole)
	}
}
