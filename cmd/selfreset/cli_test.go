package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"selfreset/commands"
	"selfreset/config"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
	"selfreset/password"
	"selfreset/secret"
)

const testSecret = "cli-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"

type result struct {
	code           int
	stdout, stderr string
}

// cliEnv is one test's environment: a fresh database and a secret.
type cliEnv map[string]string

func newEnv(t *testing.T) cliEnv {
	t.Helper()
	return cliEnv{config.EnvDatabaseURL: testdb.New(t), config.EnvSecret: testSecret}
}

func (e cliEnv) getenv(k string) string { return e[k] }

// run drives the CLI in process, as main does.
func (e cliEnv) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut, e.getenv)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// ok runs a command that must succeed.
func (e cliEnv) ok(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := e.run(t, stdin, args...)
	if r.code != exitOK {
		t.Fatalf("selfreset %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs a command that must fail with code and exactly one line "selfreset: …" on stderr.
func (e cliEnv) fails(t *testing.T, code int, stdin string, args ...string) result {
	t.Helper()
	r := e.run(t, stdin, args...)
	if r.code != code {
		t.Fatalf("selfreset %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	assertOneErrorLine(t, args, r.stderr)
	return r
}

func assertOneErrorLine(t *testing.T, args []string, stderr string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || !strings.HasPrefix(stderr, "selfreset: ") {
		t.Errorf("selfreset %s: want one line \"selfreset: …\" on stderr, got %q", strings.Join(args, " "), stderr)
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Errorf("selfreset %s: stack trace on stderr: %q", strings.Join(args, " "), stderr)
	}
}

type auditLine struct {
	Position   eventstore.Position `json:"position"`
	Stream     string              `json:"stream"`
	Revision   uint64              `json:"revision"`
	EventID    string              `json:"event_id"`
	Type       string              `json:"type"`
	OccurredAt time.Time           `json:"occurred_at"`
	Metadata   struct {
		Actor         string `json:"actor"`
		CorrelationID string `json:"correlation_id"`
		ClientIP      string `json:"client_ip"`
		UserAgent     string `json:"user_agent"`
	} `json:"metadata"`
	Data        map[string]any `json:"data"`
	DecodeError string         `json:"decode_error"`
}

func parseJSONL(t *testing.T, out string) []auditLine {
	t.Helper()
	var lines []auditLine
	for l := range strings.Lines(out) {
		var a auditLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("audit line is not JSON: %v\n%s", err, l)
		}
		lines = append(lines, a)
	}
	return lines
}

// settled runs a provider-wide audit until it shows want events. On PostgreSQL a new user
// stream is found through the global feed, which may trail an append that has just committed
// (an older append to the same event store may still be open);
// once found, every later audit finds it too.
func (e cliEnv) settled(t *testing.T, want int, args ...string) result {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := e.ok(t, "", args...)
		if strings.Count(r.stdout, "\n") >= want || time.Now().After(deadline) {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func types(lines []auditLine) []string {
	var out []string
	for _, l := range lines {
		out = append(out, l.Type)
	}
	return out
}

// TestCLIEndToEnd is the scenario: migrate, a provider allowed to use Self Password
// Reset, two users (one a user-admin), one admin-locked, then the auditors' view.
func TestCLIEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	e.ok(t, "", "migrate")
	e.ok(t, "", "migrate") // idempotent
	if r := e.ok(t, "", "provider", "add", "--code", "acme", "--name", "Acme Agency", "--allow-self-reset"); !strings.Contains(r.stdout, "ACME") {
		t.Errorf("provider add said %q", r.stdout)
	}
	e.ok(t, "Adm1n-passphrase-for-alice\n", "user", "add", "--provider", "ACME", "--login", "Alice", "--name", "Alice Admin", "--role", "user-admin", "--password-stdin")
	e.ok(t, "B0b-has-a-long-passphrase\n", "user", "add", "--provider", "acme", "--login", "bob", "--name", "Bob Builder", "--password-stdin")
	e.ok(t, "", "user", "lock", "--provider", "ACME", "--login", "bob")
	// A provider whose code starts with ACME must not leak into ACME's history.
	e.ok(t, "", "provider", "add", "--code", "ACME2", "--name", "Acme Two")
	e.ok(t, "Zed-has-a-long-passphrase\n", "user", "add", "--provider", "ACME2", "--login", "zed", "--name", "Zed", "--password-stdin")

	// What the other front doors record: unmatched requests, a refused request from a
	// client, and the whole configure-and-reset flow (code and token hashes).
	requests(t, e)

	want := []string{
		"ProviderRegistered", "ProviderSelfResetAllowed", "UserRegistered",
		"ProviderUserAdminAdded", // alice, a user administrator, is counted on the provider's stream
		"UserRegistered", "AccountAdminLocked",
		"ResetRequestRejected", // unmatched: ACME/ghost
		"ResetRequestRejected", // bob is admin locked
		"SelfResetEnabled", "RecoveryEmailCodeSent", "RecoveryEmailVerified", "SelfResetConfigured",
		"ResetTokenIssued", "PasswordChanged",
	}
	r := e.settled(t, len(want), "audit", "--provider", "ACME", "--format", "jsonl")
	lines := parseJSONL(t, r.stdout)
	if got := types(lines); !slices.Equal(got, want) {
		t.Fatalf("audit types\n got %v\nwant %v\n%s", got, want, r.stdout)
	}
	for i, l := range lines {
		if i > 0 && !lines[i-1].Position.Less(l.Position) {
			t.Errorf("line %d: position %v does not follow %v", i, l.Position, lines[i-1].Position)
		}
		if l.EventID == "" || l.OccurredAt.IsZero() || l.Metadata.CorrelationID == "" || l.DecodeError != "" {
			t.Errorf("line %d: incomplete record %+v", i, l)
		}
	}
	for _, i := range []int{0, 1, 2, 3, 4, 5, 8} {
		if lines[i].Metadata.Actor != "system:cli" {
			t.Errorf("%s: actor %q, want system:cli", lines[i].Type, lines[i].Metadata.Actor)
		}
	}
	if l := lines[1]; l.Data["by"] != "system:cli" {
		t.Errorf("ProviderSelfResetAllowed data %v", l.Data)
	}
	if l := lines[2]; l.Stream != "user-ACME-alice" || l.Data["login"] != "alice" || !slices.Equal(l.Data["roles"].([]any), []any{"user-admin"}) {
		t.Errorf("alice's UserRegistered: %s %v", l.Stream, l.Data)
	}
	if l := lines[3]; l.Stream != "provider-ACME" || l.Data["login"] != "alice" {
		t.Errorf("alice counted: %s %v", l.Stream, l.Data)
	}
	if l := lines[6]; !domain.IsUnmatchedStream(l.Stream) || l.Data["login"] != "ghost" || l.Data["reason"] != "unknown_account" || l.Metadata.Actor != "anonymous" {
		t.Errorf("unmatched request: %s %v %+v", l.Stream, l.Data, l.Metadata)
	}
	if l := lines[7]; l.Stream != "user-ACME-bob" || l.Data["reason"] != "admin_locked" ||
		l.Metadata.ClientIP != "203.0.113.7" || l.Metadata.UserAgent != "curl/8.5.0" {
		t.Errorf("bob's refused request: %s %v %+v", l.Stream, l.Data, l.Metadata)
	}
	for _, l := range lines {
		for _, k := range []string{"password_hash", "token_hash", "code_hash"} {
			if v, ok := l.Data[k]; ok && v != "[redacted]" {
				t.Errorf("%s: %s = %v, want [redacted]", l.Type, k, v)
			}
		}
	}
	if lines[2].Data["password_hash"] != "[redacted]" || lines[9].Data["code_hash"] != "[redacted]" ||
		lines[12].Data["token_hash"] != "[redacted]" || lines[13].Data["password_hash"] != "[redacted]" {
		t.Errorf("hashes not redacted: %v / %v / %v / %v", lines[2].Data, lines[9].Data, lines[12].Data, lines[13].Data)
	}
	assertNoHashes(t, e, r.stdout)

	// One user: their stream and the unmatched requests naming them.
	r = e.ok(t, "", "audit", "--provider", "acme", "--login", "BOB", "--format", "jsonl")
	if got, want := types(parseJSONL(t, r.stdout)), []string{"UserRegistered", "AccountAdminLocked", "ResetRequestRejected"}; !slices.Equal(got, want) {
		t.Errorf("audit --login bob: %v, want %v", got, want)
	}
	// Auditors need no server key.
	noKey := cliEnv{config.EnvDatabaseURL: e[config.EnvDatabaseURL]}
	if r := noKey.ok(t, "", "audit", "--provider", "ACME", "--login", "bob"); strings.Count(r.stdout, "\n") != 3 {
		t.Errorf("audit without SELFRESET_SECRET: %q", r.stdout)
	}
	noKey.fails(t, exitUsage, "", "user", "lock", "--provider", "ACME", "--login", "bob")
	r = e.ok(t, "", "audit", "--provider", "ACME", "--login", "ghost", "--format", "jsonl")
	if got := parseJSONL(t, r.stdout); len(got) != 1 || !domain.IsUnmatchedStream(got[0].Stream) {
		t.Errorf("audit --login ghost: %s", r.stdout)
	}

	// The other provider sees only its own.
	r = e.settled(t, 3, "audit", "--provider", "ACME2", "--format", "jsonl")
	if got, want := types(parseJSONL(t, r.stdout)), []string{"ProviderRegistered", "UserRegistered", "ResetRequestRejected"}; !slices.Equal(got, want) {
		t.Errorf("audit ACME2: %v, want %v", got, want)
	}

	// --since.
	r = e.ok(t, "", "audit", "--provider", "ACME", "--format", "jsonl", "--since", lines[5].OccurredAt.Format(time.RFC3339Nano))
	if got := parseJSONL(t, r.stdout); len(got) != len(lines)-5 || got[0].EventID != lines[5].EventID {
		t.Errorf("audit --since the 6th event: %d events, want %d", len(got), len(lines)-5)
	}
	r = e.ok(t, "", "audit", "--provider", "ACME", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if r.stdout != "" || !strings.Contains(r.stderr, "no events") {
		t.Errorf("audit --since the future: stdout %q stderr %q", r.stdout, r.stderr)
	}

	// Text: one line per event, with who and from where.
	r = e.ok(t, "", "audit", "--provider", "ACME")
	text := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(text) != len(lines) {
		t.Fatalf("text audit has %d lines, want %d:\n%s", len(text), len(lines), r.stdout)
	}
	for i, l := range text {
		if !strings.Contains(l, " "+lines[i].Type+" ") || !strings.HasPrefix(l, lines[i].OccurredAt.Format(time.RFC3339Nano)+" ") {
			t.Errorf("text line %d: %q (want %s)", i, l, lines[i].Type)
		}
	}
	for _, frag := range []string{"provider-ACME@0 ProviderRegistered actor=system:cli", `name="Acme Agency"`,
		"user-ACME-bob@1 AccountAdminLocked actor=system:cli", "password_hash=[redacted]", `roles=["user-admin"]`} {
		if !strings.Contains(r.stdout, frag) {
			t.Errorf("text audit lacks %q:\n%s", frag, r.stdout)
		}
	}
	if !strings.Contains(text[7], `ip=203.0.113.7 ua=curl/8.5.0`) || !strings.Contains(text[7], "reason=admin_locked") {
		t.Errorf("text line for bob's refused request: %q", text[7])
	}
	assertNoHashes(t, e, r.stdout)

	// Refusals from the domain: exit 1, its message, one line.
	r = e.fails(t, exitFailure, "", "provider", "add", "--code", "ACME", "--name", "Again")
	if !strings.Contains(r.stderr, domain.ErrProviderExists.Message) {
		t.Errorf("duplicate provider: %q", r.stderr)
	}
	r = e.fails(t, exitFailure, "Some-long-passphrase-1\n", "user", "add", "--provider", "ACME", "--login", "bob", "--name", "B", "--password-stdin")
	if !strings.Contains(r.stderr, domain.ErrUserExists.Message) {
		t.Errorf("duplicate user: %q", r.stderr)
	}
	r = e.fails(t, exitFailure, "", "user", "lock", "--provider", "ACME", "--login", "nobody")
	if !strings.Contains(r.stderr, domain.ErrUserNotFound.Message) {
		t.Errorf("unknown user: %q", r.stderr)
	}
	r = e.fails(t, exitFailure, "Some-long-passphrase-1\n", "user", "add", "--provider", "NOPE", "--login", "x", "--name", "X", "--password-stdin")
	if !strings.Contains(r.stderr, domain.ErrProviderNotFound.Message) {
		t.Errorf("unknown provider: %q", r.stderr)
	}
	// A password the policy refuses is bad input.
	r = e.fails(t, exitUsage, "password\n", "user", "add", "--provider", "ACME", "--login", "carol", "--name", "Carol", "--password-stdin")
	if !strings.Contains(r.stderr, "too common") {
		t.Errorf("common password: %q", r.stderr)
	}
}

// requests records, through the command handler as the HTTP layer will, what the CLI
// cannot cause: requests that match no account, a refused request with client metadata,
// and alice configuring Self Password Reset and resetting her password.
func requests(t *testing.T, e cliEnv) {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, e[config.EnvDatabaseURL])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	keyID := config.KeyID([]byte(testSecret))
	keys, err := secret.NewKeyring(keyID, map[string][]byte{keyID: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(password.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	h := commands.New(commands.Config{Store: store, Hasher: password.NewBounded(hasher, 0), Secrets: keys, Common: password.NewCommonList(), Policy: domain.DefaultPolicy()})

	expect := func(err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("got %v, want %v", err, want)
		}
	}
	_, err = h.RequestResetToken(ctx, commands.RequestResetToken{Provider: "ACME", Login: "ghost", Email: "ghost@example.org"})
	expect(err, domain.ErrUnknownAccount)
	_, err = h.RequestResetToken(ctx, commands.RequestResetToken{Provider: "ACME2", Login: "ghost", Email: "ghost@example.org"})
	expect(err, domain.ErrUnknownAccount)
	client := commands.WithMetadata(ctx, eventstore.Metadata{ClientIP: "203.0.113.7", UserAgent: "curl/8.5.0"})
	_, err = h.RequestResetToken(client, commands.RequestResetToken{Provider: "ACME", Login: "bob", Email: "bob@example.org"})
	expect(err, domain.ErrAdminLocked)

	alice := commands.SelfUser{Provider: "ACME", Login: "alice"}
	expect(h.EnableSelfReset(ctx, commands.UserCommand{Actor: operator, Provider: "ACME", Login: "alice"}), nil)
	codeID, err := h.StartEmailVerification(ctx, commands.StartEmailVerification{SelfUser: alice, Email: "alice@example.org"})
	expect(err, nil)
	code, err := keys.Value(secret.KindEmailCode, keyID, codeID)
	expect(err, nil)
	expect(h.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: alice, Code: code}), nil)
	expect(h.ConfigureSelfReset(ctx, commands.ConfigureSelfReset{SelfUser: alice}), nil)
	tokenID, err := h.RequestResetToken(ctx, commands.RequestResetToken{Provider: "ACME", Login: "alice", Email: "alice@example.org"})
	expect(err, nil)
	token, err := keys.Value(secret.KindResetToken, keyID, tokenID)
	expect(err, nil)
	expect(h.ResetPassword(ctx, commands.ResetPassword{Provider: "ACME", Login: "alice", Token: token, NewPassword: "A-brand-new-passphrase-7"}), nil)
}

// assertNoHashes checks that no stored hash of the event store appears in out.
func assertNoHashes(t *testing.T, e cliEnv, out string) {
	t.Helper()
	if strings.Contains(out, "$argon2id$") {
		t.Errorf("audit output contains an argon2id hash")
	}
	ctx := context.Background()
	store, err := postgres.Open(ctx, e[config.EnvDatabaseURL])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var all []eventstore.RecordedEvent
	for _, stream := range []string{"user-ACME-alice", "user-ACME-bob", "user-ACME2-zed"} {
		events, err := store.ReadStream(ctx, stream, 0)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, events...)
	}
	hashes := 0
	for _, ev := range all {
		var m map[string]any
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"password_hash", "token_hash", "code_hash"} {
			if s, _ := m[k].(string); s != "" {
				hashes++
				if strings.Contains(out, s) {
					t.Errorf("audit output contains %s of %s", k, ev.Type)
				}
			}
		}
	}
	if hashes < 5 {
		t.Errorf("only %d hashes in the store; the test lost its teeth", hashes)
	}
}

// TestCLIStatusCommands runs every provider and user status command and reads the result back.
func TestCLIStatusCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.ok(t, "", "migrate")
	e.ok(t, "", "provider", "add", "--code", "BETA", "--name", "Beta")
	e.ok(t, "", "provider", "allow-self-reset", "--code", "beta")
	e.ok(t, "", "provider", "allow-self-reset", "--code", "BETA") // no change, no event
	e.ok(t, "", "provider", "revoke-self-reset", "--code", "BETA")
	e.fails(t, exitFailure, "", "provider", "allow-self-reset", "--code", "GAMMA")

	e.ok(t, "Carols-long-passphrase\n", "user", "add", "--provider", "BETA", "--login", "carol", "--name", "Carol", "--password-stdin")
	for _, verb := range []string{"lock", "lock", "unlock", "deactivate", "reactivate", "delete"} {
		e.ok(t, "", "user", verb, "--provider", "BETA", "--login", "carol")
	}
	e.fails(t, exitFailure, "", "user", "reactivate", "--provider", "BETA", "--login", "carol") // deleted is final

	want := []string{"ProviderRegistered", "ProviderSelfResetAllowed", "ProviderSelfResetRevoked", "UserRegistered",
		"AccountAdminLocked", "AccountAdminUnlocked", "AccountDeactivated", "AccountReactivated", "AccountDeleted"}
	r := e.settled(t, len(want), "audit", "--provider", "BETA", "--format", "jsonl")
	lines := parseJSONL(t, r.stdout)
	if got := types(lines); !slices.Equal(got, want) {
		t.Fatalf("audit types\n got %v\nwant %v", got, want)
	}
	for _, l := range lines {
		if l.Metadata.Actor != "system:cli" {
			t.Errorf("%s: actor %q", l.Type, l.Metadata.Actor)
		}
		if by, ok := l.Data["by"]; ok && by != "system:cli" {
			t.Errorf("%s: by %v", l.Type, by)
		}
	}
}

// TestCLIBadInput: mistakes in the call exit 2 with one line and touch nothing.
func TestCLIBadInput(t *testing.T) {
	t.Parallel()
	// No database: nothing here may get as far as connecting.
	e := cliEnv{config.EnvDatabaseURL: "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", config.EnvSecret: testSecret}
	const pw = "A-fine-long-passphrase\n"
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string // fragment of the message
	}{
		{"no command", "", nil, "no command"},
		{"only --dev", "", []string{"--dev"}, "no command"},
		{"unknown command", "", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown global flag", "", []string{"--verbose", "migrate"}, "-verbose"},
		{"migrate with an argument", "", []string{"migrate", "now"}, "unexpected argument"},
		{"provider without subcommand", "", []string{"provider"}, "missing subcommand"},
		{"provider unknown subcommand", "", []string{"provider", "rename"}, `unknown subcommand "rename"`},
		{"provider add without code", "", []string{"provider", "add", "--name", "X"}, "--code is required"},
		{"provider add without name", "", []string{"provider", "add", "--code", "ACME"}, "--name is required"},
		{"provider add invalid code", "", []string{"provider", "add", "--code", "AC-ME", "--name", "X"}, "not a provider code"},
		{"provider add one-letter code", "", []string{"provider", "add", "--code", "A", "--name", "X"}, "not a provider code"},
		{"provider add unknown flag", "", []string{"provider", "add", "--code", "ACME", "--name", "X", "--force"}, "-force"},
		{"provider add stray argument", "", []string{"provider", "add", "--code", "ACME", "--name", "X", "extra"}, "unexpected argument"},
		{"provider revoke without code", "", []string{"provider", "revoke-self-reset"}, "--code is required"},
		{"user without subcommand", "", []string{"user"}, "missing subcommand"},
		{"user add without --password-stdin", pw, []string{"user", "add", "--provider", "ACME", "--login", "c", "--name", "C"}, "--password-stdin is required"},
		{"user add with empty stdin", "", []string{"user", "add", "--provider", "ACME", "--login", "c", "--name", "C", "--password-stdin"}, "no password"},
		{"user add with unknown role", pw, []string{"user", "add", "--provider", "ACME", "--login", "c", "--name", "C", "--role", "root", "--password-stdin"}, "unknown role"},
		{"user add without login", pw, []string{"user", "add", "--provider", "ACME", "--name", "C", "--password-stdin"}, "--login is required"},
		{"user add invalid login", pw, []string{"user", "add", "--provider", "ACME", "--login", "no spaces", "--name", "C", "--password-stdin"}, "not a login name"},
		{"user add invalid provider", pw, []string{"user", "add", "--provider", "A_B", "--login", "c", "--name", "C", "--password-stdin"}, "not a provider code"},
		{"user lock without login", "", []string{"user", "lock", "--provider", "ACME"}, "--login is required"},
		{"user delete without provider", "", []string{"user", "delete", "--login", "c"}, "--provider is required"},
		{"audit without provider", "", []string{"audit"}, "--provider is required"},
		{"audit bad format", "", []string{"audit", "--provider", "ACME", "--format", "xml"}, `--format "xml"`},
		{"audit bad since", "", []string{"audit", "--provider", "ACME", "--since", "yesterday"}, "RFC 3339"},
		{"audit bad login", "", []string{"audit", "--provider", "ACME", "--login", "-x-"}, "not a login name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.fails(t, exitUsage, tt.stdin, tt.args...)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q, want it to mention %q", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// TestCLIConfiguration: bad configuration exits 2 with one line naming the variable.
func TestCLIConfiguration(t *testing.T) {
	t.Parallel()
	db := "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"
	tests := []struct {
		name string
		env  cliEnv
		args []string
		want string
	}{
		{"no secret", cliEnv{config.EnvDatabaseURL: db}, []string{"migrate"}, config.EnvSecret + ": not set"},
		{"short secret", cliEnv{config.EnvDatabaseURL: db, config.EnvSecret: "short"}, []string{"audit", "--provider", "ACME"}, "at least 32"},
		{"dev key without --dev", cliEnv{config.EnvDatabaseURL: db, config.EnvSecret: config.DevSecret}, []string{"migrate"}, "development key"},
		{"no database", cliEnv{config.EnvSecret: testSecret}, []string{"migrate"}, config.EnvDatabaseURL},
		{"bad token TTL", cliEnv{config.EnvDatabaseURL: db, config.EnvSecret: testSecret, config.EnvResetTokenTTL: "five minutes"}, []string{"migrate"}, config.EnvResetTokenTTL},
		{"zero code TTL", cliEnv{config.EnvDatabaseURL: db, config.EnvSecret: testSecret, config.EnvEmailCodeTTL: "0"}, []string{"migrate"}, config.EnvEmailCodeTTL},
		{"bad event store URL", cliEnv{config.EnvDatabaseURL: db, config.EnvSecret: testSecret, config.EnvEventStoreURL: "http://es:2113"}, []string{"migrate"}, config.EnvEventStoreURL},
		{"pool setting pgx cannot parse", cliEnv{config.EnvDatabaseURL: db + "&statement_cache_capacity=many", config.EnvSecret: testSecret}, []string{"audit", "--provider", "ACME"}, config.EnvDatabaseURL + ": cannot parse"},
		{"unknown log level", cliEnv{config.EnvDatabaseURL: db, config.EnvSecret: testSecret, config.EnvLogLevel: "verbose"}, []string{"migrate"}, config.EnvLogLevel + `: is "verbose"`},
		{"pool setting in a separate event store URL", cliEnv{config.EnvDatabaseURL: db, config.EnvSecret: testSecret, config.EnvEventStoreURL: db + "&pool_max_conns=lots"}, []string{"audit", "--provider", "ACME"}, config.EnvEventStoreURL + ": cannot parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.env.fails(t, exitUsage, "", tt.args...)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q, want %q", r.stderr, tt.want)
			}
			if strings.Contains(r.stderr, testSecret) {
				t.Errorf("the secret was printed")
			}
		})
	}

	// An unreachable database is a runtime failure, not a configuration error.
	r := cliEnv{config.EnvDatabaseURL: db, config.EnvSecret: testSecret}.fails(t, exitFailure, "", "migrate")
	if !strings.Contains(r.stderr, "PostgreSQL") {
		t.Errorf("unreachable database: %q", r.stderr)
	}
}

// TestLogLevel: SELFRESET_LOG_LEVEL drops the lines below it and keeps the rest.
func TestLogLevel(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		level      string
		info, warn bool
	}{
		{"", true, true},
		{"warn", false, true},
		{"error", false, false},
	} {
		var out strings.Builder
		log, err := newLogger(&out, cliEnv{config.EnvLogLevel: tt.level}.getenv)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("an info line")
		log.Warn("a warning")
		if got := strings.Contains(out.String(), "an info line"); got != tt.info {
			t.Errorf("%s=%q: info line written %v, want %v", config.EnvLogLevel, tt.level, got, tt.info)
		}
		if got := strings.Contains(out.String(), "a warning"); got != tt.warn {
			t.Errorf("%s=%q: warning written %v, want %v", config.EnvLogLevel, tt.level, got, tt.warn)
		}
	}
}

// TestCLIDevMode: --dev runs without SELFRESET_SECRET and says so loudly.
func TestCLIDevMode(t *testing.T) {
	t.Parallel()
	e := cliEnv{config.EnvDatabaseURL: testdb.New(t)}
	r := e.ok(t, "", "--dev", "migrate")
	if !strings.Contains(r.stderr, "DEVELOPMENT MODE") {
		t.Errorf("no development-mode warning: %q", r.stderr)
	}
	if strings.Contains(r.stderr, config.DevSecret) {
		t.Errorf("the development key was logged")
	}
	e.ok(t, "", "--dev", "provider", "add", "--code", "DEV", "--name", "Dev")
}

// TestCLIHelp: help goes where it was asked for, and lists every group.
func TestCLIHelp(t *testing.T) {
	t.Parallel()
	e := cliEnv{}
	r := e.ok(t, "", "help")
	for _, g := range groups {
		if !strings.Contains(r.stdout, g.name) {
			t.Errorf("help does not list %s", g.name)
		}
	}
	r = e.ok(t, "", "provider", "help")
	if !strings.Contains(r.stdout, "allow-self-reset") {
		t.Errorf("provider help: %q", r.stdout)
	}
	r = e.ok(t, "", "user", "add", "-h")
	if !strings.Contains(r.stderr, "--password-stdin") && !strings.Contains(r.stderr, "-password-stdin") {
		t.Errorf("user add -h: %q", r.stderr)
	}
}

// TestBinaryExitCodes builds the real binary: bad configuration exits 2 with one line
// and no stack trace, before anything connects anywhere.
func TestBinaryExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary with the go tool (about 10 s on two cores); runs in `make test`")
	}
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	bin := filepath.Join(t.TempDir(), "selfreset")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	db := config.EnvDatabaseURL + "=postgres://nobody@127.0.0.1:1/none?sslmode=disable"
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"missing secret", []string{db}, []string{"migrate"}, config.EnvSecret},
		{"bad reset token TTL", []string{db, config.EnvSecret + "=" + testSecret, config.EnvResetTokenTTL + "=soon"}, []string{"migrate"}, config.EnvResetTokenTTL},
		{"unknown command", []string{db, config.EnvSecret + "=" + testSecret}, []string{"frobnicate"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tt.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != exitUsage {
				t.Fatalf("exit: %v, want code 2\nstderr: %s", err, stderr.String())
			}
			assertOneErrorLine(t, tt.args, stderr.String())
			if !strings.Contains(stderr.String(), tt.want) || stdout.Len() != 0 {
				t.Errorf("stdout %q stderr %q, want %q", stdout.String(), stderr.String(), tt.want)
			}
		})
	}
}
