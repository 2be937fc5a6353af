package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"selfreset/domain"
	"selfreset/eventstore"
)

// floorTable is the scratch table of the one-row INSERT floor; the run drops it.
const floorTable = "selfreset_bench_floor"

func (b *httpBench) createFloorTable(ctx context.Context) error {
	_, err := b.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+pgx.Identifier{floorTable}.Sanitize()+
		` (id bigserial PRIMARY KEY, worker int NOT NULL, at timestamptz NOT NULL DEFAULT now())`)
	return err
}

func (b *httpBench) dropFloorTable(ctx context.Context) {
	if _, err := b.pool.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{floorTable}.Sanitize()); err != nil {
		b.c.log.Warn("bench: dropping the floor table failed", "table", floorTable, "err", err)
	}
}

// insertFloor: one-row INSERTs, each its own committed transaction.
func (b *httpBench) insertFloor(ctx context.Context, rec *recorder, w int) {
	for rec.next(ctx) {
		t0 := time.Now()
		_, err := b.pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{floorTable}.Sanitize()+` (worker) VALUES ($1)`, w)
		rec.done("answer", time.Since(t0), outcomeOf(err, "inserted"), err != nil)
	}
}

// appendFloor: the store's own append of one event to a fresh stream, the kind of event an
// unmatched Forgot Password appends (so that the consumers apply it as they would a real one).
func (b *httpBench) appendFloor(ctx context.Context, rec *recorder) {
	for rec.next(ctx) {
		t0 := time.Now()
		err := b.appendOne(ctx)
		rec.done("answer", time.Since(t0), outcomeOf(err, "appended"), err != nil)
	}
}

func (b *httpBench) appendOne(ctx context.Context) error {
	id := uuid.New()
	typ, ver, data, err := b.codec.Encode(domain.ResetRequestRejected{Reason: domain.ReasonUnknownAccount,
		Provider: b.provider, Login: "floor-" + id.String()[:8]})
	if err != nil {
		return err
	}
	_, err = b.store.Append(ctx, domain.UnmatchedStream+"-bench-"+id.String(), eventstore.NoStream, eventstore.EventData{
		ID: id, Type: typ, SchemaVersion: ver, OccurredAt: time.Now(), Data: data,
		Metadata: eventstore.Metadata{Actor: "bench", CorrelationID: id.String()}})
	return err
}

func outcomeOf(err error, ok string) string {
	if err != nil {
		return "error"
	}
	return ok
}

// forgotKind picks what request k of a phase is: every fourth names no account; the rest
// go round the pool, matched while the account has tokens left in its window, throttled after.
func (b *httpBench) forgotKind(k int64, pool []string) (login, kind string) {
	if k%4 == 3 {
		return "nobody." + strconv.FormatInt(k, 10), "unmatched"
	}
	n := k - k/4 // requests before k that named an account
	acct, use := n%int64(len(pool)), n/int64(len(pool))
	if use < int64(b.maxUses) {
		return pool[acct], "matched"
	}
	return pool[acct], "throttled"
}

// forgotLoop sends Forgot Password until the phase ends; with ticks, one per tick.
func (b *httpBench) forgotLoop(ctx context.Context, rec *recorder, pool []string, pick *atomic.Int64, ticks <-chan struct{}) {
	for {
		if ticks != nil {
			if _, ok := <-ticks; !ok {
				return
			}
		}
		if !rec.next(ctx) {
			return
		}
		login, kind := b.forgotKind(pick.Add(1)-1, pool)
		t0 := time.Now()
		status, _, err := b.post(ctx, "/api/v1/password-resets", map[string]string{
			"login_name": login, "provider_code": b.provider, "email": benchEmail(login)}, nil)
		ok := err == nil && status == http.StatusAccepted
		rec.done("answer", time.Since(t0), answerOutcome(kind, status, err), !ok)
	}
}

// forgotPaced offers Forgot Password at rate per second (open loop: a tick no worker is
// free for is missed, not queued) and returns how many ticks were missed.
func (b *httpBench) forgotPaced(ctx context.Context, rec *recorder, conc int, pool []string, rate float64) int64 {
	if rate <= 0 {
		return 0
	}
	ticks := make(chan struct{})
	var missed int64
	var pick atomic.Int64
	go func() {
		defer close(ticks)
		start := time.Now()
		for i := 0; ; i++ {
			at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if !at.Before(rec.deadline) || ctx.Err() != nil {
				return
			}
			time.Sleep(time.Until(at))
			select {
			case ticks <- struct{}{}:
			default:
				missed++
			}
		}
	}()
	workers(conc, func(int) { b.forgotLoop(ctx, rec, pool, &pick, ticks) })
	return missed
}

func answerOutcome(kind string, status int, err error) string {
	if err != nil {
		return kind + " error"
	}
	return kind + " " + strconv.Itoa(status)
}

// resetFlowLoop runs whole resets: Forgot Password, the token read off the mail the sink
// received, then complete with a new password.
func (b *httpBench) resetFlowLoop(ctx context.Context, rec *recorder, pool []string, pick *atomic.Int64) {
	for rec.next(ctx) {
		s := pick.Add(1) - 1
		acct, use := s%int64(len(pool)), s/int64(len(pool))
		if use >= int64(b.maxUses) {
			rec.done("pool", 0, errPoolExhausted.Error(), false)
			return
		}
		login := pool[acct]
		t0 := time.Now()
		outcome, err := b.resetFlow(ctx, rec, login, int(use))
		rec.done("flow", time.Since(t0), outcome, err != nil)
	}
}

func (b *httpBench) resetFlow(ctx context.Context, rec *recorder, login string, use int) (string, error) {
	email := benchEmail(login)
	tokens := b.mail.expect(email)
	defer b.mail.forget(email)
	t0 := time.Now()
	var answer struct {
		ResetID string `json:"reset_id"`
	}
	status, _, err := b.post(ctx, "/api/v1/password-resets", map[string]string{
		"login_name": login, "provider_code": b.provider, "email": email}, &answer)
	rec.done("request", time.Since(t0), "", false)
	if err != nil || status != http.StatusAccepted {
		return answerOutcome("request", status, err), fmt.Errorf("forgot password: %d %v", status, err)
	}
	t1 := time.Now()
	var token string
	select {
	case token = <-tokens:
	case <-time.After(30 * time.Second):
		return "no token mail within 30s", fmt.Errorf("no token mail")
	case <-ctx.Done():
		return "cancelled", ctx.Err()
	}
	rec.done("token_mail", time.Since(t1), "", false)
	pw := fmt.Sprintf("Bench-new-%s-%d-passphrase", login, use)
	t2 := time.Now()
	status, body, err := b.post(ctx, "/api/v1/password-resets/"+answer.ResetID+"/complete",
		map[string]string{"token": token, "new_password": pw, "confirm_password": pw}, nil)
	rec.done("complete", time.Since(t2), "", false)
	if err != nil || status != http.StatusNoContent {
		return answerOutcome("complete", status, err), fmt.Errorf("complete: %d %s %v", status, body, err)
	}
	return "reset 204", nil
}

// loginLoop signs one account in again and again.
func (b *httpBench) loginLoop(ctx context.Context, rec *recorder, login string) {
	for rec.next(ctx) {
		t0 := time.Now()
		status, _, err := b.post(ctx, "/api/v1/sessions", map[string]string{
			"provider_code": b.provider, "login_name": login, "password": benchPassword(login)}, nil)
		rec.done("answer", time.Since(t0), answerOutcome("login", status, err), err != nil || status != http.StatusCreated)
	}
}

// post sends body as JSON to a path of the serve under test (see postJSON).
func (b *httpBench) post(ctx context.Context, path string, body any, out any) (int, []byte, error) {
	return postJSON(ctx, b.client, b.cfg.base+path, body, out)
}

// postJSON sends body as JSON to url; it returns the status and the answer (at most 64 KiB),
// decoded into out when out is set and the status is a success.
func postJSON(ctx context.Context, client *http.Client, url string, body any, out any) (int, []byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	if err == nil && out != nil && res.StatusCode < 300 {
		err = json.Unmarshal(answer, out)
	}
	return res.StatusCode, answer, err
}
