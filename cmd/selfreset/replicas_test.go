package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/config"
	"selfreset/domain"
	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/mailer"
	"selfreset/reset"
	"selfreset/secret"
)

// repSecret is the server secret shared by the test and the replicas.
const repSecret = "replicas-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"

// Shape of the load.
const (
	repAccounts  = 200 // seeded accounts, each enabled and configured
	repRequests  = 600 // POST /api/v1/password-resets in all
	repKillAfter = 300 // the lock holder is SIGKILLed once this many were dispatched
	repWorkers   = 16  // concurrent clients
	// repMaxBacklog bounds, per live replica, the requests answered 202 whose event has not
	// appeared yet, so that the load stays near what the command side decides (this test
	// is about the consumers' takeover; intake_test.go bursts without pacing).
	repMaxBacklog = 64
	repProvider   = "ACME"
)

// repRequest is one Forgot Password request and what became of it.
type repRequest struct {
	id           string // X-Request-Id: the events' correlation id
	login, email string
	matched      bool // names a configured account with its recovery email

	answeredBy int // replica index that answered 202, -1 if none
	answeredAt time.Time
	resent     bool // its first replica failed at the connection level (killed)
	err        error
}

// TestReplicasSurviveAKilledLockHolder is issue 5's "Done when" #1: three `serve` replicas
// share one database; the one feeding the read models and the mailer's intake is killed
// (SIGKILL) in the middle of a burst of Forgot Password requests; a survivor takes over
// every consumer, every token that was issued is mailed (at most one duplicate per kill),
// and the read models equal a rebuild from the events.
func TestReplicasSurviveAKilledLockHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary and runs three replicas under load (about 20-50 s)")
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	// 1. Database, binary, SMTP sink.
	dbURL := testdb.New(t)
	dir := t.TempDir()
	bin := buildBinary(t, ctx, dir)
	smtpSink := (&testkit.SMTPServer{Delay: repSMTPDelay}).Start(t)
	cliEnv := repEnv(t, dbURL, "cli")
	repCLI(t, bin, cliEnv, 60*time.Second, "migrate")

	pool, err := pgxpool.New(ctx, repWithAppName(t, dbURL, "test"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// 2. Seed in process: one provider, repAccounts enabled and configured users.
	keyID := config.KeyID([]byte(repSecret))
	keys, err := secret.NewKeyring(keyID, map[string][]byte{keyID: []byte(repSecret)})
	if err != nil {
		t.Fatal(err)
	}
	seedStart := time.Now()
	repSeed(t, ctx, dbURL, keys, keyID)
	t.Logf("seeded %d accounts in %s", repAccounts, time.Since(seedStart).Round(time.Millisecond))

	// 3. Three replicas. replica1 starts alone, so that it takes every consumer lock and
	// works off the seeding's events; then the other two join and wait for the locks.
	serveEnv := func(name string) []string {
		return repEnv(t, dbURL, name,
			config.EnvAddr+"=127.0.0.1:0",
			config.EnvRateLimitPerIP+"=0", // 0 also turns the per-account limit off (it defaults to the IP limit)
			config.EnvResetWorkers+"=4",   // three replicas share one PostgreSQL's connections
			config.EnvMailDriver+"=smtp",
			config.EnvSMTPAddr+"="+smtpSink.Addr,
			config.EnvSMTPTLS+"=none",
			config.EnvMailFrom+"=Self Password Reset <no-reply@reset.example.org>",
			config.EnvPublicURL+"=http://reset.example.org",
			// A short lease: mail the killed sender had claimed goes out again this soon.
			config.EnvMailSendTimeout+"=3s",
			config.EnvMailLease+"=6s",
		)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: repWorkers, MaxConnsPerHost: repWorkers, DisableCompression: true,
	}}
	defer client.CloseIdleConnections()

	replicas := []*repReplica{repStartReplica(t, bin, dir, "replica1", serveEnv("replica1"))}
	replicas[0].waitReady(t, client, 20*time.Second)
	repWait(t, 30*time.Second, "replica1 to hold every consumer lock", func() (bool, string) {
		h, err := repLockHolders(ctx, pool)
		return err == nil && repSoleHolder(h) == "replica1", fmt.Sprintf("holders %v, err %v", h, err)
	})
	catchUpStart := time.Now()
	// A bound, not a figure: five consumers work off ~3,000 events on a shared machine.
	repWaitZeroLag(t, bin, cliEnv, 90*time.Second)
	t.Logf("replica1 worked off the seeding's events in %s", time.Since(catchUpStart).Round(time.Millisecond))
	for _, name := range []string{"replica2", "replica3"} {
		replicas = append(replicas, repStartReplica(t, bin, dir, name, serveEnv(name)))
	}
	for _, r := range replicas[1:] {
		r.waitReady(t, client, 20*time.Second)
	}

	// 4. The burst, with the kill in the middle.
	reqs := repPlan()
	var (
		killed     *repReplica
		killedAt   time.Time
		takeover   = make(chan time.Duration, 1)
		resent     atomic.Int64
		killedName string
	)
	kill := func() {
		holders, err := repLockHolders(ctx, pool)
		if err != nil {
			t.Errorf("lock holders: %v", err)
			return
		}
		holder := repSoleHolder(holders)
		for _, r := range replicas {
			if r.Name == holder {
				killed = r
			}
		}
		if killed == nil {
			t.Errorf("no single replica holds every consumer lock at the kill: %v", holders)
			return
		}
		killedName = killed.Name
		killedAt = time.Now()
		if err := killed.kill(); err != nil {
			t.Errorf("kill %s: %v", killed.Name, err)
			return
		}
		t.Logf("SIGKILLed %s (pid %d), holder of %v", killed.Name, killed.cmd.Process.Pid, holders)
		go func() { // takeover: from the kill until survivors hold every consumer lock
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				h, err := repLockHolders(ctx, pool)
				if err == nil {
					all := true
					for _, c := range repConsumers() {
						if h[c] == "" || h[c] == killedName {
							all = false
						}
					}
					if all {
						takeover <- time.Since(killedAt)
						return
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			close(takeover)
		}()
	}

	loadStart := time.Now()
	backlog := newRepBacklog(len(replicas))
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- backlog.watch(watchCtx, pool, 25*time.Millisecond) }()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range repWorkers {
		wg.Go(func() {
			for i := range jobs {
				repSend(ctx, client, replicas, reqs[i], i%len(replicas), &resent)
				if reqs[i].answeredBy >= 0 {
					backlog.answered(reqs[i].id, reqs[i].answeredBy)
				}
			}
		})
	}
	var throttled time.Duration
	for i := range reqs {
		if i == repKillAfter {
			kill()
		}
		waited, err := backlog.waitBelow(repMaxBacklog, func(r int) bool { return replicas[r].killed.Load() }, 20*time.Second)
		throttled += waited
		if err != nil {
			t.Errorf("request %d: %v", i, err)
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	// Every request a survivor accepted has been decided (its event is in the store).
	if _, err := backlog.waitBelow(1, func(r int) bool { return replicas[r].killed.Load() }, 30*time.Second); err != nil {
		t.Errorf("after the load: %v", err)
	}
	// And the killed node's: its accepted commands wait in the intake queue for a survivor.
	repWait(t, 30*time.Second, "the intake queue to drain", func() (bool, string) {
		n, err := reset.Pending(ctx, pool)
		return err == nil && n == 0, fmt.Sprintf("pending %d, err %v", n, err)
	})
	stopWatch()
	if err := <-watched; err != nil {
		t.Errorf("watching the events: %v", err)
	}
	loadTime := time.Since(loadStart)
	if killed == nil {
		t.Fatal("nothing was killed")
	}
	var accepted int
	for i, r := range reqs {
		if r.err != nil {
			t.Errorf("request %d (%s): %v", i, r.id, r.err)
		} else {
			accepted++
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("load: %d requests, %d answered 202, %d re-sent after failing on %s, in %s (%s of it waiting for the command side)",
		len(reqs), accepted, resent.Load(), killedName, loadTime.Round(time.Millisecond), throttled.Round(time.Millisecond))

	survivors := slices.DeleteFunc(slices.Clone(replicas), func(r *repReplica) bool { return r == killed })
	survivorNames := []string{survivors[0].Name, survivors[1].Name}

	// 5. Takeover, then everything settles.
	took, ok := <-takeover
	if !ok {
		h, _ := repLockHolders(ctx, pool)
		t.Fatalf("no survivor took every consumer lock within 30s of the kill: %v", h)
	}
	holders, err := repLockHolders(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range repConsumers() {
		if !slices.Contains(survivorNames, holders[c]) {
			t.Errorf("consumer %s: lock held by %q, want one of the survivors %v", c, holders[c], survivorNames)
		}
	}
	t.Logf("takeover: %s after the kill; holders now %v", took.Round(time.Millisecond), holders)

	// The killed sender's claimed deliveries stay leased to it for SELFRESET_MAIL_LEASE
	// (6s here); then a survivor sends them (and may duplicate a mail the dead process sent
	// without recording it: the documented at-least-once price).
	settleStart := time.Now()
	repWait(t, 60*time.Second, "every issued token to be settled in the delivery log", func() (bool, string) {
		var issued, withRow, pending int
		err := pool.QueryRow(ctx, `
			SELECT count(*), count(d.event_id), (SELECT count(*) FROM mail_deliveries WHERE state = 'pending')
			FROM events e LEFT JOIN mail_deliveries d ON d.event_id = e.event_id
			WHERE e.type = 'ResetTokenIssued'`).Scan(&issued, &withRow, &pending)
		if err != nil {
			return false, err.Error()
		}
		return withRow == issued && pending == 0, fmt.Sprintf("issued %d, queued %d, pending %d", issued, withRow, pending)
	})
	repWaitZeroLag(t, bin, cliEnv, 30*time.Second)
	// Deliveries claimed before the kill and finished after it: the dead sender's leases.
	var stranded int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mail_deliveries WHERE attempts > 1 AND updated_at > $1`, killedAt).Scan(&stranded); err != nil {
		t.Fatal(err)
	}
	t.Logf("settled %s after the load; %d deliveries needed a second attempt after the kill",
		time.Since(settleStart).Round(time.Millisecond), stranded)

	// 6a. Every issued token has its one successful delivery.
	type tokenEvent struct {
		eventID, stream, tokenID, email string
		revision                        int64
		state, skip                     string
		supersededOK                    bool
	}
	rows, err := pool.Query(ctx, `
		SELECT e.event_id::text, e.stream, e.revision, e.data->>'token_id', e.data->>'email',
			coalesce(d.state, ''), coalesce(d.skip_reason, ''),
			EXISTS (SELECT 1 FROM mail_deliveries l WHERE l.stream = e.stream
				AND l.secret_kind = 'reset-token' AND l.revision > e.revision)
		FROM events e LEFT JOIN mail_deliveries d ON d.event_id = e.event_id
		WHERE e.type = 'ResetTokenIssued' ORDER BY e.seq`)
	if err != nil {
		t.Fatal(err)
	}
	var tokens []tokenEvent
	for rows.Next() {
		var te tokenEvent
		if err := rows.Scan(&te.eventID, &te.stream, &te.revision, &te.tokenID, &te.email, &te.state, &te.skip, &te.supersededOK); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, te)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var sent, superseded int
	byEvent := map[string]tokenEvent{}
	for _, te := range tokens {
		byEvent[te.eventID] = te
		switch {
		case te.state == mailer.StateSent:
			sent++
		case te.state == mailer.StateSkipped && te.skip == mailer.SkipSuperseded && te.supersededOK:
			superseded++
		default:
			t.Errorf("token event %s (%s): delivery state %q skip %q (later token: %v); want sent, or skipped as superseded",
				te.eventID, te.stream, te.state, te.skip, te.supersededOK)
		}
	}

	// 6b. The inbox: each token mail carries the token derived for its event, at most twice.
	seen := map[string]int{}
	var otherMail int
	for _, m := range smtpSink.Messages() {
		p, err := repParseMail(m)
		if err != nil {
			t.Fatalf("unreadable message: %v", err)
		}
		if p.Token == "" {
			otherMail++ // the seeding's verification codes
			continue
		}
		te, ok := byEvent[p.EventID]
		if !ok {
			t.Errorf("token mail for %v with Message-ID event %s, which is no ResetTokenIssued event", m.To, p.EventID)
			continue
		}
		want, err := keys.Value(secret.KindResetToken, keyID, te.tokenID)
		if err != nil {
			t.Fatal(err)
		}
		if p.Token != want || len(m.To) != 1 || m.To[0] != te.email {
			t.Errorf("event %s: mail to %v carries %q, want %q to %s", te.eventID, m.To, p.Token, want, te.email)
		}
		seen[p.EventID]++
	}
	const kills = 1
	var duplicates int
	for _, te := range tokens {
		n := seen[te.eventID]
		if n > 1+kills {
			t.Errorf("token of event %s arrived %d times; at most %d allowed after %d kill", te.eventID, n, 1+kills, kills)
		}
		if n > 1 {
			duplicates += n - 1
		}
		if te.state == mailer.StateSent && n == 0 {
			t.Errorf("token of event %s is recorded sent but never arrived", te.eventID)
		}
	}

	// 4 (continued). What became of each accepted request: every 202 reaches its decision,
	// the killed node's included (its commands wait in the intake queue for a survivor).
	outcomes := map[string][]string{} // correlation id → event types
	rows, err = pool.Query(ctx, `SELECT coalesce(metadata->>'correlation_id', ''), type, coalesce(data->>'reason', '')
		FROM events WHERE type IN ('ResetTokenIssued', 'ResetRequestRejected')`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var corr, typ, reason string
		if err := rows.Scan(&corr, &typ, &reason); err != nil {
			t.Fatal(err)
		}
		if reason != "" {
			typ += "(" + reason + ")"
		}
		outcomes[corr] = append(outcomes[corr], typ)
	}
	rows.Close()
	var lostOnKilled, twice int
	var lostAges []time.Duration
	ranTwice := map[string]bool{} // accounts with a request run both by the killed node and by a survivor
	for _, r := range reqs {
		got := outcomes[r.id]
		switch {
		case len(got) == 0 && replicas[r.answeredBy] == killed:
			// The durable intake: a 202 means the command was in PostgreSQL, so a
			// survivor decides it even though the node that answered is gone.
			lostOnKilled++
			lostAges = append(lostAges, killedAt.Sub(r.answeredAt))
			t.Errorf("request %s answered 202 by the killed %s left no event", r.id, replicas[r.answeredBy].Name)
		case len(got) == 0:
			t.Errorf("request %s answered 202 by surviving %s left no event", r.id, replicas[r.answeredBy].Name)
		case len(got) > 1 && r.resent:
			twice++ // re-sent after the kill, and the killed node had run it too
			ranTwice[r.login] = true
		case len(got) > 1:
			t.Errorf("request %s was sent once and decided %d times: %v", r.id, len(got), got)
		}
	}
	for _, r := range reqs {
		for _, typ := range outcomes[r.id] {
			switch {
			case r.matched && typ == "ResetTokenIssued":
			case r.matched && typ == "ResetRequestRejected(throttled)" && ranTwice[r.login]:
				// A request run twice can push its account past 3 tokens in 15 minutes.
			case r.matched:
				t.Errorf("request %s for configured account %s: %s, want ResetTokenIssued", r.id, r.login, typ)
			case typ == "ResetTokenIssued":
				t.Errorf("unmatched request %s issued a token", r.id)
			}
		}
	}
	sort.Slice(lostAges, func(i, j int) bool { return lostAges[i] < lostAges[j] })

	// 6c. The read models equal a rebuild from the events, done in place while the
	// survivors serve.
	before, err := repDumpReadModels(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	out := repCLI(t, bin, cliEnv, 60*time.Second, "projections", "rebuild")
	after, err := repDumpReadModels(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for table, want := range after {
		got := before[table]
		if len(got) != len(want) {
			t.Errorf("%s: %d rows live, %d after a rebuild", table, len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("%s row %d differs:\nlive:    %s\nrebuilt: %s", table, i, got[i], want[i])
				break
			}
		}
	}
	t.Logf("rebuild: %s", strings.TrimSpace(out))
	if n := len(before["admin_users"]); n != repAccounts {
		t.Errorf("admin_users has %d rows, want %d", n, repAccounts)
	}
	if n := len(before["reset_tokens"]); n != len(tokens) {
		t.Errorf("reset_tokens has %d rows, want %d (one per issued token)", n, len(tokens))
	}

	// 7. Graceful stop of the survivors.
	var stopWG sync.WaitGroup
	stopTimes := make([]time.Duration, len(survivors))
	stopErrs := make([]error, len(survivors))
	for i, r := range survivors {
		stopWG.Go(func() { stopTimes[i], stopErrs[i] = r.terminate(25 * time.Second) })
	}
	stopWG.Wait()
	for i, r := range survivors {
		if stopErrs[i] != nil {
			t.Errorf("%s after SIGTERM: %v", r.Name, stopErrs[i])
		} else if repCountLines(r.Logs, "stopped cleanly") != 1 {
			t.Errorf("%s exited 0 without logging 'stopped cleanly'", r.Name)
		}
	}

	maxLost := time.Duration(0)
	if len(lostAges) > 0 {
		maxLost = lostAges[len(lostAges)-1]
	}
	t.Logf("FIGURES: requests %d, answered 202 %d, re-sent after the kill %d (also run by the killed node: %d); "+
		"202s from %s whose command was lost with it: %d (oldest answered %s before the kill); "+
		"tokens issued %d: delivered sent %d, skipped superseded %d; leases stranded by the kill %d; "+
		"token mails in the inbox %d, duplicates %d; other mails %d; takeover %s; survivors stopped in %v; total run time %s",
		len(reqs), accepted, resent.Load(), twice, killedName, lostOnKilled, maxLost.Round(time.Millisecond),
		len(tokens), sent, superseded, stranded, repSum(seen), duplicates, otherMail, took.Round(time.Millisecond),
		[]string{stopTimes[0].Round(time.Millisecond).String(), stopTimes[1].Round(time.Millisecond).String()},
		time.Since(started).Round(time.Millisecond))
}

func repSum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// repPlan is the burst: every tenth request matches nothing (an unknown login, or a known
// login with the wrong email: neither sends mail); the others go three times to each
// account, repAccounts requests apart, the most the policy allows in 15 minutes.
func repPlan() []*repRequest {
	reqs := make([]*repRequest, repRequests)
	m := 0
	for i := range reqs {
		r := &repRequest{id: fmt.Sprintf("replicas-%04d", i), answeredBy: -1}
		switch {
		case i%20 == 19:
			r.login, r.email = fmt.Sprintf("ghost%04d", i), fmt.Sprintf("ghost%04d@example.org", i)
		case i%10 == 9:
			r.login, r.email = repLogin(i%repAccounts), fmt.Sprintf("someone-else%04d@example.org", i)
		default:
			a := m % repAccounts
			m++
			r.login, r.email, r.matched = repLogin(a), repEmail(a), true
		}
		reqs[i] = r
	}
	return reqs
}

func repLogin(i int) string { return fmt.Sprintf("user%04d", i) }
func repEmail(i int) string { return fmt.Sprintf("user%04d@example.org", i) }

// repSend posts r to replica first; when that replica was killed and the request failed
// at the connection level, it goes to the next live replica.
func repSend(ctx context.Context, client *http.Client, replicas []*repReplica, r *repRequest, first int, resent *atomic.Int64) {
	body := fmt.Sprintf(`{"login_name":%q,"provider_code":%q,"email":%q}`, r.login, repProvider, r.email)
	for k := range len(replicas) {
		idx := (first + k) % len(replicas)
		rep := replicas[idx]
		if k > 0 && rep.killed.Load() {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+rep.Addr+"/api/v1/password-resets", strings.NewReader(body))
		if err != nil {
			r.err = err
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Request-Id", r.id)
		resp, err := client.Do(req)
		if err != nil {
			if rep.killed.Load() && ctx.Err() == nil {
				if !r.resent {
					r.resent = true
					resent.Add(1)
				}
				continue
			}
			r.err = fmt.Errorf("%s: %w", rep.Name, err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			r.err = fmt.Errorf("%s: status %d: %s", rep.Name, resp.StatusCode, bytes.TrimSpace(b))
			return
		}
		r.answeredBy, r.answeredAt = idx, time.Now()
		return
	}
	r.err = errors.New("no replica left to send to")
}

// repSeed registers the provider and the accounts, each enabled, with its recovery email
// verified (the code derived with the shared secret) and Self Password Reset configured.
func repSeed(t *testing.T, ctx context.Context, dbURL string, keys *secret.Keyring, keyID string) {
	t.Helper()
	repSeedN(t, ctx, dbURL, keys, keyID, repAccounts)
}

// repSeedN is repSeed with n accounts.
func repSeedN(t *testing.T, ctx context.Context, dbURL string, keys *secret.Keyring, keyID string, n int) {
	t.Helper()
	store, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Tiny argon2id parameters (testkit.Hasher): the hash is only stored, never checked
	// here. A nil clock: the system clock.
	h := testkit.Handler(t, store, nil, keys)
	admin := domain.SystemActor("replicas-test")
	if err := h.RegisterProvider(ctx, commands.RegisterProvider{Actor: admin, Code: repProvider, Name: "Acme Care", AllowSelfReset: true}); err != nil {
		t.Fatal(err)
	}
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				errs <- repSeedOne(ctx, h, keys, keyID, admin, i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func repSeedOne(ctx context.Context, h *commands.Handler, keys *secret.Keyring, keyID string, admin domain.Actor, i int) error {
	login := repLogin(i)
	if err := h.RegisterUser(ctx, commands.RegisterUser{Actor: admin, Provider: repProvider, Login: login,
		DisplayName: "User " + login, Password: "Seeded-passphrase-4821"}); err != nil {
		return fmt.Errorf("register %s: %w", login, err)
	}
	if err := h.EnableSelfReset(ctx, commands.UserCommand{Actor: admin, Provider: repProvider, Login: login}); err != nil {
		return fmt.Errorf("enable %s: %w", login, err)
	}
	self := commands.SelfUser{Provider: repProvider, Login: login}
	codeID, err := h.StartEmailVerification(ctx, commands.StartEmailVerification{SelfUser: self, Email: repEmail(i)})
	if err != nil {
		return fmt.Errorf("start verification %s: %w", login, err)
	}
	code, err := keys.Value(secret.KindEmailCode, keyID, codeID)
	if err != nil {
		return err
	}
	if err := h.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: self, Code: code}); err != nil {
		return fmt.Errorf("verify %s: %w", login, err)
	}
	if err := h.ConfigureSelfReset(ctx, commands.ConfigureSelfReset{SelfUser: self}); err != nil {
		return fmt.Errorf("configure %s: %w", login, err)
	}
	return nil
}

// repWait polls cond every 100ms until it holds, failing the test after within.
func repWait(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last state: %s", within, what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// repWaitZeroLag polls `selfreset projections status` until every consumer, the mailer
// included, is zero events behind with nothing parked.
func repWaitZeroLag(t *testing.T, bin string, env []string, within time.Duration) {
	t.Helper()
	repWait(t, within, "`projections status` to show zero lag", func() (bool, string) {
		out, err := repCLIErr(bin, env, 20*time.Second, "projections", "status")
		if err != nil {
			return false, err.Error()
		}
		behind, parked := repStatusBehind(out)
		for _, c := range repConsumers() {
			if behind[c] != "0" || parked[c] != "0" {
				return false, out
			}
		}
		return true, out
	})
}
