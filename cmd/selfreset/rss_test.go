package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"selfreset/commands"
	"selfreset/config"
	"selfreset/domain"
	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/password"
	"selfreset/secret"
)

// rssAccounts is how many Change Password completes run at once.
const rssAccounts = 50

// rssLimit is issue 8's bound on serve's peak resident memory during those completes:
// 150 MB (decimal, the stricter reading; 143 MiB).
const rssLimit = 150_000_000

// TestPeakRSSOfConcurrentCompletes is issue 8's "peak RSS of serve during 50 concurrent
// completes stays under 150 MB": a `serve` process, 50 accounts whose passwords are
// argon2id hashes with the production parameters (password.DefaultParams), 50 tokens issued through
// Forgot Password and mailed to an SMTP sink, then 50 concurrent
// POST /api/v1/password-resets/{id}/complete — each verifies the old hash and hashes the
// new password. VmHWM (peak RSS) is read from /proc before and after. With the default
// SELFRESET_HASH_CONCURRENCY it must stay under 150 MB; the same burst with 50 slots
// (no bound in effect) is measured too, for comparison, and only logged.
func TestPeakRSSOfConcurrentCompletes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary, seeds 50 argon2id accounts and runs serve (about 20-40 s)")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc/<pid>/status (Linux) to read VmHWM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()

	dbURL := testdb.New(t)
	dir := t.TempDir()
	bin := buildBinary(t, ctx, dir)
	sink := (&testkit.SMTPServer{}).Start(t)
	repCLI(t, bin, repEnv(t, dbURL, "cli"), 60*time.Second, "migrate")
	rssSeed(t, ctx, dbURL)

	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: rssAccounts}}
	defer client.CloseIdleConnections()

	for round, tc := range []struct {
		name   string
		slots  string // SELFRESET_HASH_CONCURRENCY; "" is the default, one per two CPUs
		assert bool
	}{
		{name: "default (one slot per two CPUs)", slots: "", assert: true},
		{name: "50 slots (no bound in effect)", slots: strconv.Itoa(rssAccounts)},
	} {
		env := repEnv(t, dbURL, fmt.Sprintf("rss%d", round),
			config.EnvAddr+"=127.0.0.1:0",
			config.EnvRateLimitPerIP+"=1000", // on (the budgets are spent in PostgreSQL) but not in the way
			config.EnvHashConcurrency+"="+tc.slots,
			config.EnvMailDriver+"=smtp",
			config.EnvSMTPAddr+"="+sink.Addr,
			config.EnvSMTPTLS+"=none",
			config.EnvMailFrom+"=Self Password Reset <no-reply@reset.example.org>",
			config.EnvPublicURL+"=http://reset.example.org",
		)
		srv := repStartReplica(t, bin, dir, fmt.Sprintf("rss%d", round), env)
		srv.waitReady(t, client, 30*time.Second)
		base := "http://" + srv.Addr

		// Tokens: Forgot Password for every account, the token read off its mail.
		seq := len(sink.Messages())
		resetIDs := make([]string, rssAccounts)
		for i := range rssAccounts {
			var out struct {
				ResetID string `json:"reset_id"`
			}
			status := rssPost(t, ctx, client, base+"/api/v1/password-resets",
				map[string]string{"provider_code": repProvider, "login_name": rssLogin(i), "email": rssEmail(i)}, &out)
			if status != http.StatusAccepted || out.ResetID == "" {
				t.Fatalf("forgot password %d: status %d", i, status)
			}
			resetIDs[i] = out.ResetID
		}
		tokens := make([]string, rssAccounts)
		for i := range rssAccounts {
			m := sink.WaitFor(t, func(m testkit.Message) bool {
				return m.Seq >= seq && slices.Contains(m.To, rssEmail(i)) && len(testkit.MatchingLines(m.Text, testkit.TokenLine)) == 1
			}, 60*time.Second)
			tokens[i] = testkit.MatchingLines(m.Text, testkit.TokenLine)[0]
		}

		before := vmHWM(t, srv.cmd.Process.Pid)
		newPW := fmt.Sprintf("Fresh-passphrase-%d-7731", round)
		statuses := make([]int, rssAccounts)
		start := make(chan struct{})
		var wg sync.WaitGroup
		began := time.Now()
		for i := range rssAccounts {
			wg.Go(func() {
				<-start
				statuses[i] = rssPost(t, ctx, client, base+"/api/v1/password-resets/"+resetIDs[i]+"/complete",
					map[string]string{"token": tokens[i], "new_password": newPW, "confirm_password": newPW}, nil)
			})
		}
		close(start)
		wg.Wait()
		took := time.Since(began)
		after := vmHWM(t, srv.cmd.Process.Pid)
		// On a quiet machine every complete answers 204. On a crowded one some may still
		// wait in line at the request deadline (25 s) and answer 503: that is the designed
		// outcome, and the memory bound must hold either way. Anything else is a failure.
		counts := map[int]int{}
		for i, s := range statuses {
			counts[s]++
			if s != http.StatusNoContent && s != http.StatusServiceUnavailable {
				t.Errorf("%s: complete %d answered %d, want 204 (or 503 past the request deadline)", tc.name, i, s)
			}
		}
		if _, err := srv.terminate(30 * time.Second); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		t.Logf("%s: VmHWM %.1f MB before, %.1f MB after %d concurrent completes (%d × 204, %d × 503, in %s)",
			tc.name, float64(before)/1e6, float64(after)/1e6, rssAccounts,
			counts[http.StatusNoContent], counts[http.StatusServiceUnavailable], took.Round(time.Millisecond))
		if tc.assert && after >= rssLimit {
			t.Errorf("%s: peak RSS %.1f MB, want under %d MB", tc.name, float64(after)/1e6, rssLimit/1_000_000)
		}
	}
}

func rssLogin(i int) string { return fmt.Sprintf("rss%02d", i) }
func rssEmail(i int) string { return fmt.Sprintf("rss%02d@example.org", i) }

// rssSeed registers the provider and the accounts, each enabled and configured, with
// passwords hashed with the production argon2id parameters, so that verifying them in
// the completes costs what it costs in production.
func rssSeed(t *testing.T, ctx context.Context, dbURL string) {
	t.Helper()
	store, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	keyID := config.KeyID([]byte(repSecret))
	keys, err := secret.NewKeyring(keyID, map[string][]byte{keyID: []byte(repSecret)})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(password.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	h := testkit.Handler(t, store, nil, keys, func(c *commands.Config) { c.Hasher = password.NewBounded(hasher, 0) })
	admin := domain.SystemActor("rss-test")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.RegisterProvider(ctx, commands.RegisterProvider{Actor: admin, Code: repProvider, Name: "Acme Care", AllowSelfReset: true}))
	for i := range rssAccounts {
		login := rssLogin(i)
		must(h.RegisterUser(ctx, commands.RegisterUser{Actor: admin, Provider: repProvider, Login: login,
			DisplayName: "User " + login, Password: "Seeded-passphrase-4821"}))
		must(h.EnableSelfReset(ctx, commands.UserCommand{Actor: admin, Provider: repProvider, Login: login}))
		self := commands.SelfUser{Provider: repProvider, Login: login}
		codeID, err := h.StartEmailVerification(ctx, commands.StartEmailVerification{SelfUser: self, Email: rssEmail(i)})
		must(err)
		code, err := keys.Value(secret.KindEmailCode, keyID, codeID)
		must(err)
		must(h.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: self, Code: code}))
		must(h.ConfigureSelfReset(ctx, commands.ConfigureSelfReset{SelfUser: self}))
	}
}

// rssPost is postJSON, reporting a failure on t; it returns the status.
func rssPost(t *testing.T, ctx context.Context, client *http.Client, url string, body any, out any) int {
	status, answer, err := postJSON(ctx, client, url, body, out)
	if err != nil {
		t.Errorf("%s: %v: %s", url, err, answer)
	}
	return status
}

// vmHWM is the peak resident set size of process pid so far, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
