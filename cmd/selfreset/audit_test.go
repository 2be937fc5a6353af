package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
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

	// One seal, or two when the feed trailed the last append for a moment.
	if r := e.ok(t, "", "audit", "seal"); r.stdout != "1 seals appended\n" && r.stdout != "2 seals appended\n" {
		t.Errorf("audit seal said %q", r.stdout)
	}
	r := e.ok(t, "", "audit", "verify")
	if !strings.Contains(r.stdout, "OK: no break found") || !strings.Contains(r.stdout, "covering 4 events; 0 events after the last seal") {
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
	r = e.ok(t, "", "audit", "state", "--provider", "ACME", "--as-of", time.Now().UTC().Format(time.RFC3339Nano))
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

// TestServeSealsAndServesTheAuditAPI runs serve in process with a seal key: its workers
// seal the feed, and an auditor reads the history over HTTP.
func TestServeSealsAndServesTheAuditAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := freeAddr(t)
	e[config.EnvAuditSealKey] = testSealKey
	e[config.EnvAuditSealInterval] = "100ms"
	e[config.EnvAddr] = addr
	e.ok(t, "", "migrate")
	e.ok(t, "", "provider", "add", "--code", "ACME", "--name", "Acme Agency")
	e.ok(t, "Ann-has-a-long-passphrase\n", "user", "add", "--provider", "ACME", "--login", "ann", "--name", "Ann Auditor", "--role", "auditor", "--password-stdin")

	ctx, stop := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var out bytes.Buffer
	go func() { done <- run(ctx, []string{"--dev", "serve"}, strings.NewReader(""), &out, &out, e.getenv) }()
	defer func() {
		stop()
		if code := <-done; code != exitOK {
			t.Errorf("serve exited %d:\n%s", code, out.String())
		}
	}()

	// The workers seal the two events written before serve started.
	var rep audit.Report
	for deadline := time.Now().Add(60 * time.Second); rep.SealedEvents < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no seal within 60s: %+v", rep)
		}
		r := e.run(t, "", "audit", "verify", "--format", "json")
		if r.code != exitOK {
			t.Fatalf("audit verify while serving: %d %s %s", r.code, r.stdout, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatal(err)
		}
	}
	if !rep.SignaturesChecked || rep.Seals == 0 {
		t.Errorf("report %+v", rep)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	var res *http.Response
	var err error
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		res, err = client.Post("http://"+addr+"/api/v1/sessions", "application/json",
			strings.NewReader(`{"provider_code":"ACME","login_name":"ann","password":"Ann-has-a-long-passphrase"}`))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not answering: %v", err)
		}
	}
	var session struct{ Token string }
	err = json.NewDecoder(res.Body).Decode(&session)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("sign in: %d %v", res.StatusCode, err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/audit/events?provider=ACME&type=UserRegistered", nil)
	req.Header.Set("Authorization", "Bearer "+session.Token)
	res, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var page struct{ Events []audit.Record }
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil || res.StatusCode != http.StatusOK || len(page.Events) != 1 {
		t.Errorf("audit events: %d %v %+v", res.StatusCode, err, page)
	}
}
