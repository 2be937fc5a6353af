package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/config"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/mailer"
	"selfreset/reset"
	"selfreset/secret"
)

// Shape of TestForgotPasswordSurvivesKill9.
const (
	killRounds   = 10
	killAccounts = 40
	killBurst    = 300                    // requests per round
	killPace     = time.Millisecond       // one request per killPace: about 1,000 a second
	killMaxKill  = 300 * time.Millisecond // the kill falls at a random moment before this
	killWarmUp   = 16                     // requests sent before the burst, in parallel
)

// TestForgotPasswordSurvivesKill9 is issue 8's first "Done when": ten rounds of a burst of
// Forgot Password requests at about 1,000 a second against one `serve` (after a few
// requests that warm it up), SIGKILLed at a random moment of the burst, then restarted. Every request answered 202 reaches exactly
// one decision event (ResetTokenIssued or ResetRequestRejected, found by its request id),
// and every issued token has one sent delivery or is skipped as superseded.
func TestForgotPasswordSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary and kills `serve` ten times under load (about 30 s)")
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	dbURL := testdb.New(t)
	dir := t.TempDir()
	bin := buildBinary(t, ctx, dir)
	smtpSink := (&testkit.SMTPServer{}).Start(t)
	cliEnv := repEnv(t, dbURL, "cli")
	repCLI(t, bin, cliEnv, 60*time.Second, "migrate")
	pool, err := pgxpool.New(ctx, repWithAppName(t, dbURL, "test"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	keyID := config.KeyID([]byte(repSecret))
	keys, err := secret.NewKeyring(keyID, map[string][]byte{keyID: []byte(repSecret)})
	if err != nil {
		t.Fatal(err)
	}
	repSeedN(t, ctx, dbURL, keys, keyID, killAccounts)

	serveEnv := func(name string) []string {
		return repEnv(t, dbURL, name,
			config.EnvAddr+"=127.0.0.1:0",
			config.EnvRateLimitPerIP+"=0",
			config.EnvMailDriver+"=smtp",
			config.EnvSMTPAddr+"="+smtpSink.Addr,
			config.EnvSMTPTLS+"=none",
			config.EnvMailFrom+"=Self Password Reset <no-reply@reset.example.org>",
			config.EnvPublicURL+"=http://reset.example.org",
			config.EnvMailSendTimeout+"=2s",
			config.EnvMailLease+"=4s",
		)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	answered := map[string]bool{} // request id → answered 202
	var mu sync.Mutex
	var sent, failed atomic.Int64
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	for round := range killRounds {
		name := fmt.Sprintf("serve%02d", round)
		startAt := time.Now()
		srv := repStartReplica(t, bin, dir, name, serveEnv(name), "--migrate=false")
		srv.waitReady(t, client, 20*time.Second)
		ready := time.Since(startAt)
		// Warm up (the pools' first connections), so the burst meets a running server;
		// these requests are checked like the others.
		var warm sync.WaitGroup
		for i := range killWarmUp {
			id := fmt.Sprintf("warm-%02d-%02d", round, i)
			r := &repRequest{id: id, login: repLogin(i), email: repEmail(i), answeredBy: -1}
			sent.Add(1)
			warm.Go(func() {
				var resent atomic.Int64
				repSend(ctx, client, []*repReplica{srv}, r, 0, &resent)
				mu.Lock()
				defer mu.Unlock()
				if r.answeredBy == 0 {
					answered[id] = true
				} else {
					failed.Add(1)
				}
			})
		}
		warm.Wait()
		killAt := time.Duration(rng.Int64N(int64(killMaxKill)))
		timer := time.AfterFunc(killAt, func() { _ = srv.kill() })
		var wg sync.WaitGroup
		tick := time.NewTicker(killPace)
		for i := range killBurst {
			<-tick.C
			id := fmt.Sprintf("kill-%02d-%04d", round, i)
			login, email := repLogin(i%killAccounts), repEmail(i%killAccounts)
			if i%10 == 9 { // an unknown account now and then: the unmatched stream too
				login, email = fmt.Sprintf("ghost%04d", i), fmt.Sprintf("ghost%04d@example.org", i)
			}
			r := &repRequest{id: id, login: login, email: email, answeredBy: -1}
			sent.Add(1)
			wg.Go(func() {
				var resent atomic.Int64
				repSend(ctx, client, []*repReplica{srv}, r, 0, &resent)
				mu.Lock()
				defer mu.Unlock()
				if r.answeredBy == 0 {
					answered[id] = true
				} else {
					failed.Add(1)
				}
			})
		}
		tick.Stop()
		wg.Wait()
		timer.Stop()
		if !srv.killed.Load() {
			_ = srv.kill()
		}
		<-srv.done
		mu.Lock()
		t.Logf("round %d: ready in %s, killed after %s; answered 202 so far %d", round+1, ready.Round(time.Millisecond), killAt.Round(time.Millisecond), len(answered))
		mu.Unlock()
	}

	// The last restart works off what the killed processes left in the queue.
	final := repStartReplica(t, bin, dir, "final", serveEnv("final"), "--migrate=false")
	final.waitReady(t, client, 20*time.Second)
	repWait(t, 60*time.Second, "the intake queue to drain", func() (bool, string) {
		n, err := reset.Pending(ctx, pool)
		return err == nil && n == 0, fmt.Sprintf("pending %d, err %v", n, err)
	})

	decisions := map[string]int{}
	rows, err := pool.Query(ctx, `SELECT metadata->>'correlation_id', count(*) FROM events
		WHERE type IN ('ResetTokenIssued', 'ResetRequestRejected') GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		decisions[id] = n
	}
	rows.Close()
	var lost, twice, decidedUnanswered int
	for id := range answered {
		switch n := decisions[id]; {
		case n == 0:
			lost++
			t.Errorf("request %s was answered 202 and never decided", id)
		case n > 1:
			twice++
			t.Errorf("request %s was decided %d times", id, n)
		}
	}
	for id := range decisions {
		if !answered[id] {
			decidedUnanswered++ // queued, then the process died before the answer left
		}
	}

	repWait(t, 60*time.Second, "every issued token to be settled in the delivery log", func() (bool, string) {
		var issued, withRow, pending int
		err := pool.QueryRow(ctx, `
			SELECT count(*), count(d.event_id), (SELECT count(*) FROM mail_deliveries WHERE state = 'pending')
			FROM events e LEFT JOIN mail_deliveries d ON d.event_id = e.event_id
			WHERE e.type = 'ResetTokenIssued'`).Scan(&issued, &withRow, &pending)
		return err == nil && withRow == issued && pending == 0, fmt.Sprintf("issued %d, queued %d, pending %d, err %v", issued, withRow, pending, err)
	})
	var tokens, mailedOnce, superseded, bad int
	err = pool.QueryRow(ctx, `
		SELECT count(*),
			count(*) FILTER (WHERE d.state = $1),
			count(*) FILTER (WHERE d.state = $2 AND d.skip_reason = $3),
			count(*) FILTER (WHERE NOT (d.state = $1 OR (d.state = $2 AND d.skip_reason = $3)))
		FROM events e JOIN mail_deliveries d ON d.event_id = e.event_id
		WHERE e.type = 'ResetTokenIssued'`, mailer.StateSent, mailer.StateSkipped, mailer.SkipSuperseded).
		Scan(&tokens, &mailedOnce, &superseded, &bad)
	if err != nil {
		t.Fatal(err)
	}
	if bad > 0 {
		t.Errorf("%d issued tokens are neither sent nor skipped as superseded", bad)
	}
	t.Logf("FIGURES: %d rounds, %d requests sent, %d answered 202, %d failed at the kill; "+
		"of the answered: lost %d, decided twice %d; decided without an answer (died before replying) %d; "+
		"tokens issued %d: sent %d, skipped as superseded %d; run time %s",
		killRounds, sent.Load(), len(answered), failed.Load(), lost, twice, decidedUnanswered,
		tokens, mailedOnce, superseded, time.Since(started).Round(time.Millisecond))
}
