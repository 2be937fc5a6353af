package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/audit"
	"selfreset/config"
)

const testSealKey = "cli-test-seal-key-0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ"

// TestAuditVerifyAndState drives audit seal, verify and state as an operator and an auditor would.
func TestAuditVerifyAndState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e[config.EnvAuditSealKey] = testSealKey
	e.ok(t, "", "migrate")
	e.ok(t, "", "provider", "add", "--code", "acme", "--name", "Acme Agency", "--allow-self-reset")
	e.ok(t, "B0b-has-a-long-passphrase\n", "user", "add", "--provider", "ACME", "--login", "bob", "--name", "Bob Builder", "--password-stdin")
	beforeLock := time.Now().UTC()
	e.ok(t, "", "user", "lock", "--provider", "ACME", "--login", "bob")

	if r := e.ok(t, "", "audit", "seal"); r.stdout != "1 seals appended\n" {
		t.Errorf("audit seal said %q", r.stdout)
	}
	r := e.ok(t, "", "audit", "verify")
	if !strings.Contains(r.stdout, "OK: no break found") || !strings.Contains(r.stdout, "1 checked, covering 4 events") {
		t.Errorf("audit verify of an untouched history:\n%s", r.stdout)
	}
	// An auditor without the seal key still checks chains, counts and digests.
	noKey := cliEnv{config.EnvDatabaseURL: e[config.EnvDatabaseURL]}
	if r := noKey.ok(t, "", "audit", "verify", "--provider", "ACME"); !strings.Contains(r.stdout, "signatures:        not checked") {
		t.Errorf("audit verify without the seal key:\n%s", r.stdout)
	}

	// State as of before the lock, and now.
	var st audit.ProviderState
	r = e.ok(t, "", "audit", "state", "--provider", "ACME", "--login", "bob", "--as-of", beforeLock.Format(time.RFC3339Nano))
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("audit state: %v\n%s", err, r.stdout)
	}
	if len(st.Users) != 1 || !st.Users[0].Exists || st.Users[0].AdminLocked || !st.SelfResetAllowed {
		t.Errorf("state before the lock: %s", r.stdout)
	}
	r = e.ok(t, "", "audit", "state", "--provider", "ACME", "--as-of", time.Now().UTC().Format(time.RFC3339))
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Users) != 1 || !st.Users[0].AdminLocked {
		t.Errorf("state now: %v\n%s", err, r.stdout)
	}
	if strings.Contains(r.stdout, "argon2id") {
		t.Error("audit state shows a password hash")
	}

	// Tamper with the history in the database: verify names the place and exits 1.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e[config.EnvDatabaseURL])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE events SET data = jsonb_set(data, '{by}', '"system:someone-else"')
		WHERE stream = 'user-ACME-bob' AND revision = 1`); err != nil {
		t.Fatal(err)
	}
	r = e.fails(t, exitFailure, "", "audit", "verify")
	if !strings.Contains(r.stdout, "BROKEN at user-ACME-bob@1") || !strings.Contains(r.stderr, "user-ACME-bob@1") {
		t.Errorf("verify after an edit:\nstdout %s\nstderr %s", r.stdout, r.stderr)
	}
	r = e.fails(t, exitFailure, "", "audit", "verify", "--format", "json")
	var rep audit.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Break == nil || rep.Break.Stream != "user-ACME-bob" {
		t.Errorf("verify --format json: %v %s", err, r.stdout)
	}
	// Another provider's history is not affected.
	e.ok(t, "", "audit", "verify", "--provider", "OTHER")

	for _, args := range [][]string{
		{"audit", "verify", "--since", "yesterday"},
		{"audit", "verify", "--format", "xml"},
		{"audit", "state", "--provider", "ACME"},
		{"audit", "state", "--provider", "ACME", "--as-of", "March"},
		{"audit", "--provider", "ACME", "--client-ip", "not-an-ip"},
		{"audit", "--provider", "ACME", "--until", "soon"},
	} {
		e.fails(t, exitUsage, "", args...)
	}
	noKey.fails(t, exitUsage, "", "audit", "seal")
}

func TestAuditListingFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.ok(t, "", "migrate")
	e.ok(t, "", "provider", "add", "--code", "acme", "--name", "Acme Agency")
	e.ok(t, "B0b-has-a-long-passphrase\n", "user", "add", "--provider", "ACME", "--login", "bob", "--name", "Bob Builder", "--password-stdin")
	mid := time.Now().UTC()
	e.ok(t, "", "user", "lock", "--provider", "ACME", "--login", "bob")

	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--type", "UserRegistered"}, []string{"UserRegistered"}},
		{[]string{"--until", mid.Format(time.RFC3339Nano)}, []string{"ProviderRegistered", "UserRegistered"}},
		{[]string{"--since", mid.Format(time.RFC3339Nano)}, []string{"AccountAdminLocked"}},
		{[]string{"--actor", "system:cli", "--login", "bob"}, []string{"UserRegistered", "AccountAdminLocked"}},
		{[]string{"--client-ip", "192.0.2.1"}, nil},
	}
	for _, tc := range cases {
		r := e.run(t, "", append([]string{"audit", "--provider", "ACME", "--format", "jsonl"}, tc.args...)...)
		if got := types(parseJSONL(t, r.stdout)); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("audit %v: %v, want %v", tc.args, got, tc.want)
		}
	}
}
