package mailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/domain"
)

// Rand is the jitter source: Float64 in [0, 1). *math/rand/v2.Rand fits.
type Rand interface {
	Float64() float64
}

type globalRand struct{}

func (globalRand) Float64() float64 { return rand.Float64() }

// Secrets derives a token or code from its id at send time, and opens a typed address
// sealed into an event (reset_notice mails). *secret.Keyring fits.
type Secrets interface {
	Value(kind, keyID, id string) (string, error)
	Decrypt(label string, sealed []byte) ([]byte, error)
}

// Sender defaults.
const (
	DefaultBatchSize    = 20
	DefaultSendTimeout  = 15 * time.Second
	DefaultLease        = 45 * time.Second
	DefaultPollInterval = 2 * time.Second
)

// SenderConfig wires a Sender.
type SenderConfig struct {
	Pool    *pgxpool.Pool
	Driver  Driver
	Secrets Secrets
	// From is the sender address; PublicURL the base of links in emails. Both usually
	// come from Config (config.FromEnv validated them).
	From      string
	PublicURL string
	Paths     Paths // zero: the token email links to the bare Change Password page
	// Retry policy (zero means Config's defaults).
	RetryBase   time.Duration
	RetryMax    time.Duration
	MaxAttempts int

	Clock  domain.Clock // nil: the system clock
	Rand   Rand         // nil: math/rand/v2
	Logger *slog.Logger // nil: slog.Default()
	// BatchSize is how many due deliveries one SendDue claims (default 20).
	BatchSize int
	// Senders is how many of a claimed batch are sent at once (default DefaultSenders).
	Senders int
	// SendTimeout bounds one driver call (default 1m). Lease is how long a claimed
	// delivery is reserved for the sender that claimed it (default 3m); it must exceed
	// SendTimeout, and when it runs out (the sender crashed) another sender retries.
	SendTimeout time.Duration
	Lease       time.Duration
	// PollInterval is how often Run looks for due deliveries when no notification
	// arrives (default 2s).
	PollInterval time.Duration
}

// SenderConfigFrom fills the Config-derived fields of a SenderConfig.
func SenderConfigFrom(cfg Config, pool *pgxpool.Pool, driver Driver, secrets Secrets) SenderConfig {
	return SenderConfig{Pool: pool, Driver: driver, Secrets: secrets, From: cfg.From, PublicURL: cfg.PublicURL,
		RetryBase: cfg.RetryBase, RetryMax: cfg.RetryMax, MaxAttempts: cfg.MaxAttempts,
		SendTimeout: cfg.SendTimeout, Lease: cfg.Lease, Senders: cfg.Senders}
}

// Sender works through the delivery log: it claims due deliveries, skips what must not
// be sent any more, renders and sends the rest, and records the outcome.
//
// A claimed batch is sent by up to Senders goroutines, each taking the next delivery when
// it is done with one; the driver keeps as many connections open.
//
// Several senders (replicas) may run against one database: a claim takes due rows with
// SELECT … FOR UPDATE SKIP LOCKED and leases them (next_attempt_at moves to now+Lease)
// in one short transaction, then sends outside any transaction, so that neither a slow
// mail server nor another replica holds a lock or a transaction open (an open write
// transaction would also hold back the Postgres event feed). The outcome is written only
// if the lease is still this sender's (the attempt counter is the fencing token).
//
// Delivery is at least once: if the process dies after the mail server accepted a
// message but before the row is marked sent, the lease runs out and the message is sent
// again, once, with the same Message-ID header (mail clients commonly fold such
// duplicates). It is never lost: a crash before the send leaves the row pending.
type Sender struct {
	pool     *pgxpool.Pool
	driver   Driver
	secrets  Secrets
	render   *Renderer
	from     string
	clock    domain.Clock
	rand     Rand
	log      *slog.Logger
	base     time.Duration
	max      time.Duration
	attempts int
	batch    int
	senders  int
	timeout  time.Duration
	lease    time.Duration
	poll     time.Duration
}

// NewSender checks c and returns a Sender.
func NewSender(c SenderConfig) (*Sender, error) {
	if c.Pool == nil || c.Driver == nil || c.Secrets == nil {
		return nil, errors.New("mailer: sender needs a pool, a driver and secrets")
	}
	if c.From == "" {
		c.From = DefaultFrom
	}
	if c.PublicURL == "" {
		c.PublicURL = DefaultPublicURL
	}
	r, err := NewRenderer(c.PublicURL, c.Paths)
	if err != nil {
		return nil, err
	}
	s := &Sender{pool: c.Pool, driver: c.Driver, secrets: c.Secrets, render: r, from: c.From,
		clock: c.Clock, rand: c.Rand, log: c.Logger, base: c.RetryBase, max: c.RetryMax, attempts: c.MaxAttempts,
		batch: c.BatchSize, senders: orDefault(c.Senders, DefaultSenders), timeout: c.SendTimeout, lease: c.Lease, poll: c.PollInterval}
	if s.clock == nil {
		s.clock = domain.SystemClock{}
	}
	if s.rand == nil {
		s.rand = globalRand{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.base <= 0 {
		s.base = DefaultRetryBase
	}
	if s.max <= 0 {
		s.max = DefaultRetryMax
	}
	if s.max < s.base {
		return nil, fmt.Errorf("mailer: retry max %s is shorter than retry base %s", s.max, s.base)
	}
	if s.attempts <= 0 {
		s.attempts = DefaultMaxAttempts
	}
	if s.batch <= 0 {
		s.batch = DefaultBatchSize
	}
	if s.timeout <= 0 {
		s.timeout = DefaultSendTimeout
	}
	if s.lease <= 0 {
		s.lease = DefaultLease
	}
	if s.lease <= s.timeout {
		return nil, fmt.Errorf("mailer: lease %s must be longer than the send timeout %s", s.lease, s.timeout)
	}
	if s.poll <= 0 {
		s.poll = DefaultPollInterval
	}
	return s, nil
}

// Result counts what one SendDue did.
type Result struct {
	Claimed int // due deliveries taken
	Sent    int
	Skipped int // expired or superseded: not sent, on purpose
	Retried int // transient failure; due again later
	Failed  int // permanent failure, or out of attempts
	Lost    int // the lease ran out before the outcome was recorded; another sender owns it
}

func (r *Result) add(o Result) {
	r.Claimed += o.Claimed
	r.Sent += o.Sent
	r.Skipped += o.Skipped
	r.Retried += o.Retried
	r.Failed += o.Failed
	r.Lost += o.Lost
}

// Backoff is the delay before attempt n+1 after n failed attempts: RetryBase·2^(n−1),
// capped at RetryMax, of which the second half is random ("equal jitter"), so replicas
// retrying together spread out.
func (s *Sender) Backoff(n int) time.Duration {
	d := s.base
	for i := 1; i < n && d < s.max; i++ {
		d *= 2
	}
	d = min(d, s.max)
	half := d / 2
	return half + time.Duration(s.rand.Float64()*float64(d-half))
}

// claimed is a delivery this sender holds the lease on.
type claimed struct {
	Delivery
	attempt int // the attempts value written by the claim: the fencing token
}

// SendDue claims the deliveries due now (at most BatchSize), sends them, up to Senders
// at once, and records each outcome. Tests call it directly as the step function of Run.
func (s *Sender) SendDue(ctx context.Context) (Result, error) {
	var res Result
	batch, err := s.claim(ctx, &res)
	if err != nil {
		return res, err
	}
	o, err := s.sendAll(ctx, batch)
	res.add(o)
	return res, err
}

// sendAll delivers a claimed batch with up to Senders goroutines, each taking the next
// delivery when it is done with one. Once ctx ends (shutdown) or recording an outcome
// fails, no further delivery starts, and those not attempted are handed back so they
// neither wait for the lease nor lose an attempt.
func (s *Sender) sendAll(ctx context.Context, batch []claimed) (Result, error) {
	var (
		mu       sync.Mutex
		res      Result
		firstErr error
		unsent   []claimed
		sent     []sentMail
		wg       sync.WaitGroup
	)
	next := make(chan claimed)
	for range min(s.senders, len(batch)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				mu.Lock()
				stop := ctx.Err() != nil || firstErr != nil
				if stop {
					unsent = append(unsent, c)
				}
				mu.Unlock()
				if stop {
					continue
				}
				o, ok, err := s.deliver(ctx, c)
				mu.Lock()
				res.add(o)
				if ok != nil {
					sent = append(sent, *ok)
				}
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for i, c := range batch {
		mu.Lock()
		stop := ctx.Err() != nil || firstErr != nil
		if stop {
			unsent = append(unsent, batch[i:]...)
		}
		mu.Unlock()
		if stop {
			break
		}
		next <- c
	}
	close(next)
	wg.Wait()
	if len(sent) > 0 {
		o, err := s.recordSent(ctx, sent)
		res.add(o)
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if len(unsent) > 0 {
		s.release(unsent)
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return res, firstErr
}

// release undoes the claim of deliveries that were not attempted.
func (s *Sender) release(batch []claimed) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := s.clock.Now()
	for _, c := range batch {
		if _, err := s.pool.Exec(ctx, `UPDATE mail_deliveries SET attempts = attempts - 1, next_attempt_at = $3, updated_at = $3
			WHERE event_id = $1 AND attempts = $2 AND state = 'pending'`, c.EventID, c.attempt, now); err != nil {
			s.log.Warn("mailer: release claim", "event_id", c.EventID, "error", err)
			return
		}
	}
}

// claim, in one short transaction, takes due pending rows nobody else holds, settles
// those that must not be sent (expired, superseded, out of attempts) and leases the rest.
// Its commit waits for the WAL flush, so that every event a leased mail stems from is
// durable before the mail leaves: queued decisions commit without waiting for theirs
// (eventstore.WithRedelivery), and so do the consumers that queue the mails.
func (s *Sender) claim(ctx context.Context, res *Result) ([]claimed, error) {
	now := s.clock.Now()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("mailer: claim: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // no-op after Commit
	rows, err := tx.Query(ctx, `
		SELECT `+deliveryColumns+`,
			EXISTS (SELECT 1 FROM mail_deliveries later
				WHERE later.stream = d.stream AND later.secret_kind = d.secret_kind AND later.revision > d.revision) AS superseded
		FROM mail_deliveries d
		WHERE state = 'pending' AND next_attempt_at <= $1
		ORDER BY next_attempt_at, created_at
		LIMIT $2
		FOR UPDATE OF d SKIP LOCKED`, now, s.batch)
	if err != nil {
		return nil, fmt.Errorf("mailer: claim: %w", err)
	}
	type due struct {
		Delivery
		superseded bool
	}
	var dues []due
	for rows.Next() {
		var x due
		if x.Delivery, err = scanDelivery(rows, &x.superseded); err != nil {
			rows.Close()
			return nil, fmt.Errorf("mailer: claim: %w", err)
		}
		dues = append(dues, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailer: claim: %w", err)
	}

	var out []claimed
	for _, x := range dues {
		res.Claimed++
		switch {
		case x.SecretKind != "" && !now.Before(x.ExpiresAt):
			err = s.settleTx(ctx, tx, x.EventID, StateSkipped, SkipExpired, "", now)
			res.Skipped++
			s.log.Info("mail skipped", "event_id", x.EventID, "kind", x.Kind, "reason", SkipExpired)
		case x.superseded:
			err = s.settleTx(ctx, tx, x.EventID, StateSkipped, SkipSuperseded, "", now)
			res.Skipped++
			s.log.Info("mail skipped", "event_id", x.EventID, "kind", x.Kind, "reason", SkipSuperseded)
		case x.Attempts >= s.attempts:
			// Only after a crash: the last attempt's outcome was never recorded.
			last := x.LastError
			if last == "" {
				last = "the outcome of the last attempt is unknown"
			}
			err = s.settleTx(ctx, tx, x.EventID, StateFailed, "", fmt.Sprintf("gave up after %d attempts: %s", x.Attempts, last), now)
			res.Failed++
			s.log.Warn("mail failed", "event_id", x.EventID, "kind", x.Kind, "attempts", x.Attempts)
		default:
			out = append(out, claimed{Delivery: x.Delivery, attempt: x.Attempts + 1})
		}
		if err != nil {
			return nil, fmt.Errorf("mailer: claim %s: %w", x.EventID, err)
		}
	}
	if err := s.leaseTx(ctx, tx, out, now); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("mailer: claim: commit: %w", err)
	}
	return out, nil
}

// leaseTx takes the claimed rows for this attempt in one statement: their attempt counter
// moves on (the fencing token of finish) and they are due again only once the lease has
// run out. A statement per row cost a write per mail, most of a burst being small batches.
func (s *Sender) leaseTx(ctx context.Context, tx pgx.Tx, batch []claimed, now time.Time) error {
	if len(batch) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(batch))
	for i, c := range batch {
		ids[i] = c.EventID
	}
	if _, err := tx.Exec(ctx, `UPDATE mail_deliveries SET attempts = attempts + 1, next_attempt_at = $2, updated_at = $3
		WHERE event_id = ANY($1)`, ids, now.Add(s.lease), now); err != nil {
		return fmt.Errorf("mailer: claim: lease: %w", err)
	}
	return nil
}

func (s *Sender) settleTx(ctx context.Context, tx pgx.Tx, id uuid.UUID, state, skip, lastErr string, now time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE mail_deliveries SET state = $2, skip_reason = $3, last_error = $4, updated_at = $5
		WHERE event_id = $1`, id, state, skip, lastErr, now)
	return err
}

// deliver renders and sends one leased delivery and records the outcome, except that of
// a mail the server accepted: that one it returns, for its batch to record with the
// others (recordSent). The returned error is a database failure only; send failures are
// outcomes.
func (s *Sender) deliver(ctx context.Context, c claimed) (Result, *sentMail, error) {
	log := s.log.With("event_id", c.EventID, "kind", c.Kind, "to", domain.MaskEmail(c.Recipient), "attempt", c.attempt)
	now := s.clock.Now()
	if c.SecretKind != "" && !now.Before(c.ExpiresAt) { // expired while the batch was being worked on
		log.Info("mail skipped", "reason", SkipExpired)
		o, err := s.finish(ctx, c, log, Result{Skipped: 1}, `state = 'skipped', skip_reason = 'expired'`, now)
		return o, nil, err
	}

	msg, err := s.message(c.Delivery, now)
	var providerID string
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, s.timeout)
		providerID, err = s.driver.Send(sctx, msg)
		cancel()
	} else {
		err = Permanent(err) // rendering will not work better next time
	}
	now = s.clock.Now()
	if err == nil {
		log.Info("mail sent", "provider_id", providerID)
		return Result{}, &sentMail{claimed: c, providerID: providerID, at: now}, nil
	}
	o, err := s.failed(ctx, c, log, err, now)
	return o, nil, err
}

// failed records a send that did not go: failed for good, or due again later.
func (s *Sender) failed(ctx context.Context, c claimed, log *slog.Logger, err error, now time.Time) (Result, error) {
	switch {
	case IsPermanent(err):
		log.Warn("mail failed", "error", err)
		return s.finish(ctx, c, log, Result{Failed: 1}, `state = 'failed', last_error = $4`, now, truncate(err.Error(), 1000))
	case c.attempt >= s.attempts:
		log.Warn("mail failed: out of attempts", "error", err)
		return s.finish(ctx, c, log, Result{Failed: 1}, `state = 'failed', last_error = $4`, now,
			truncate(fmt.Sprintf("gave up after %d attempts: %v", c.attempt, err), 1000))
	default:
		next := now.Add(s.Backoff(c.attempt))
		log.Info("mail will be retried", "error", err, "next_attempt_at", next)
		return s.finish(ctx, c, log, Result{Retried: 1}, `next_attempt_at = $4, last_error = $5`, now, next,
			truncate(err.Error(), 1000))
	}
}

// sentMail is a delivery the mail server accepted, not yet recorded.
type sentMail struct {
	claimed
	providerID string
	at         time.Time
}

// recordSent marks a batch's accepted mails sent in one statement (one commit where each
// used to cost one), each only where this sender still holds its lease; the others are
// lost to the sender that took them over. A crash before it runs sends them again once
// their lease is out, as a crash between one mail's send and its record always did.
func (s *Sender) recordSent(ctx context.Context, sent []sentMail) (Result, error) {
	ids := make([]uuid.UUID, len(sent))
	attempts := make([]int, len(sent))
	ats := make([]time.Time, len(sent))
	providerIDs := make([]string, len(sent))
	for i, m := range sent {
		ids[i], attempts[i], ats[i], providerIDs[i] = m.EventID, m.attempt, m.at, m.providerID
	}
	// Record even when ctx has just been cancelled (shutdown): the sends already happened.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rows, err := s.pool.Query(wctx, `UPDATE mail_deliveries d
		SET state = 'sent', sent_at = v.at, provider_message_id = v.provider_id, last_error = '', updated_at = v.at
		FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::text[]) AS v(event_id, attempt, at, provider_id)
		WHERE d.event_id = v.event_id AND d.attempts = v.attempt AND d.state = 'pending'
		RETURNING d.event_id`, ids, attempts, ats, providerIDs)
	if err != nil {
		return Result{}, fmt.Errorf("mailer: record %d sent mails: %w", len(sent), err)
	}
	recorded, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return Result{}, fmt.Errorf("mailer: record %d sent mails: %w", len(sent), err)
	}
	res := Result{Sent: len(recorded), Lost: len(sent) - len(recorded)}
	if res.Lost > 0 {
		for _, m := range sent {
			if !slices.Contains(recorded, m.EventID) {
				s.log.Warn("mail outcome not recorded: the lease ran out and another sender took the delivery",
					"event_id", m.EventID, "kind", m.Kind, "attempt", m.attempt)
			}
		}
	}
	return res, nil
}

// finish records an outcome if this sender still holds the lease. set is the SET clause
// fragment; $1 is the event id, $2 the attempt, $3 now, further arguments from $4.
func (s *Sender) finish(ctx context.Context, c claimed, log *slog.Logger, o Result, set string, now time.Time, args ...any) (Result, error) {
	// Record even when ctx has just been cancelled (shutdown): the send already happened.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	tag, err := s.pool.Exec(wctx, `UPDATE mail_deliveries SET `+set+`, updated_at = $3
		WHERE event_id = $1 AND attempts = $2 AND state = 'pending'`,
		append([]any{c.EventID, c.attempt, now}, args...)...)
	if err != nil {
		return Result{}, fmt.Errorf("mailer: record outcome of %s: %w", c.EventID, err)
	}
	if tag.RowsAffected() == 0 {
		log.Warn("mail outcome not recorded: the lease ran out and another sender took the delivery")
		return Result{Lost: 1}, nil
	}
	return o, nil
}

// message renders a delivery, deriving its secret.
func (s *Sender) message(d Delivery, now time.Time) (Message, error) {
	var value string
	if d.SecretKind != "" {
		v, err := s.secrets.Value(d.SecretKind, d.SecretKeyID, d.SecretID)
		if err != nil {
			return Message{}, fmt.Errorf("mailer: derive %s: %w", d.SecretKind, err)
		}
		value = v
	}
	to := d.Recipient
	if d.RecipientSealed != nil {
		// The typed address exists in clear only here, for the send.
		addr, err := s.secrets.Decrypt(domain.NoticeEmailLabel, d.RecipientSealed)
		if err != nil {
			return Message{}, fmt.Errorf("mailer: open the recipient of %s: %w", d.EventID, err)
		}
		if to = domain.NormalizeEmail(string(addr)); !domain.ValidEmail(to) {
			return Message{}, fmt.Errorf("mailer: the recipient of %s is not a valid address", d.EventID)
		}
	}
	subject, text, html, err := s.render.Render(d, value)
	if err != nil {
		return Message{}, err
	}
	return Message{ID: d.EventID.String(), From: s.from, To: to, Subject: subject, Text: text, HTML: html,
		Date: now, Tag: d.Kind}, nil
}

// Run sends due mail until ctx ends, then returns nil. It wakes on a notification from
// the intake (LISTEN mail_deliveries) or every PollInterval, whichever comes first, and
// keeps going without pause while full batches come back.
func (s *Sender) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	go s.listen(ctx, wake)
	for {
		res, err := s.SendDue(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.log.Error("mailer: send due mail", "error", err)
		} else if res.Claimed >= s.batch {
			continue
		}
		t := time.NewTimer(s.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// listen turns notifications from Enqueue into wake-ups. Losing the connection only
// costs latency (polling continues), so it reconnects quietly.
func (s *Sender) listen(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := s.pool.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
				conn.Conn().Close(context.Background()) // do not return a listening connection to the pool
				return err
			}
			for {
				if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
					conn.Conn().Close(context.Background())
					return err
				}
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}()
		if ctx.Err() != nil {
			return
		}
		s.log.Debug("mailer: listen", "error", err)
		t := time.NewTimer(s.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
