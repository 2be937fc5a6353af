package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/domain"
	"selfreset/eventstore"
)

// RetryConfig is the backoff between attempts at one event before it is parked.
type RetryConfig struct {
	// MaxAttempts is how many times Apply is tried before the event is parked (default 5).
	MaxAttempts int
	// InitialInterval is the first pause (default 100ms); each next one is Multiplier
	// (default 2) times longer, up to MaxInterval (default 5s).
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Multiplier      float64
	// Jitter spreads each pause over ±Jitter of its length (default 0.5).
	Jitter float64
}

// Config configures a Runner. Store and Pool are required.
type Config struct {
	Store eventstore.Store
	// Pool is the read-model database (checkpoints, parked events, read models).
	Pool *pgxpool.Pool
	// Codec decodes events (default domain.NewCodec()).
	Codec  *domain.Codec
	Logger *slog.Logger
	// Projections are the consumers Run feeds and Status reports (default ReadModels()).
	// Only ReadModels among them can be rebuilt.
	Projections []Projection
	Retry       RetryConfig
	// Feed tunes how each consumer follows the feed (see FeedConfig).
	Feed FeedConfig
	// LagCap bounds how many events Status counts behind a checkpoint (default 100000).
	LagCap int
	// RebuildBatch is how many events a rebuild reads per page and applies per
	// transaction, their writes pipelined (default 5000).
	RebuildBatch int
	// CloseTimeout bounds how long Run waits for an event in progress at shutdown (default 30s).
	CloseTimeout time.Duration

	hooks testHooks
}

// testHooks let tests stop a consumer at the two moments a crash matters: after the
// read-model write, before the commit (the transaction then rolls back) and right after
// the commit (before the message is acked).
type testHooks struct {
	beforeCommit func(consumer string, e Envelope) error
	afterCommit  func(consumer string, e Envelope)
	// beforeLock runs before the checkpoint row is locked; skipped when an event is
	// skipped; rebuildLocked inside a rebuild's final transaction, once it holds the
	// checkpoint rows.
	beforeLock    func(consumer string, e Envelope)
	skipped       func(consumer string, e Envelope)
	rebuildLocked func()
}

// Runner feeds consumers from the global feed, one goroutine each holding its lock
// connection, and rebuilds read models. It is safe for concurrent use; Run may be called
// again after it returned.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	byName map[string]Projection
	parked atomic.Int64
}

// New returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.Store == nil || cfg.Pool == nil {
		return nil, errors.New("projections: Config.Store and Config.Pool are required")
	}
	if cfg.Codec == nil {
		cfg.Codec = domain.NewCodec()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Projections == nil {
		for _, m := range ReadModels() {
			cfg.Projections = append(cfg.Projections, m)
		}
	}
	r := &cfg.Retry
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 5
	}
	if r.InitialInterval <= 0 {
		r.InitialInterval = 100 * time.Millisecond
	}
	if r.MaxInterval <= 0 {
		r.MaxInterval = 5 * time.Second
	}
	if r.Multiplier < 1 {
		r.Multiplier = 2
	}
	if r.Jitter <= 0 || r.Jitter >= 1 {
		r.Jitter = 0.5
	}
	if cfg.LagCap <= 0 {
		cfg.LagCap = 100000
	}
	if cfg.RebuildBatch <= 0 {
		cfg.RebuildBatch = 5000
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 30 * time.Second
	}
	cfg.Feed.setDefaults()
	byName := map[string]Projection{}
	for _, p := range cfg.Projections {
		name := p.Name()
		if name == "" {
			return nil, errors.New("projections: a projection has an empty name")
		}
		if _, dup := byName[name]; dup {
			return nil, fmt.Errorf("projections: two projections are named %q", name)
		}
		byName[name] = p
	}
	return &Runner{cfg: cfg, log: cfg.Logger, byName: byName}, nil
}

// Parked is how many events this Runner has parked since it was made (parked_events
// holds all of them, from every process).
func (r *Runner) Parked() int64 { return r.parked.Load() }

// Run feeds every configured projection until ctx ends, then waits for the batch in
// progress (up to CloseTimeout) and returns nil. Each consumer has its own advisory lock
// and its own checkpoint; the consumers whose locks this process holds share one
// session, which applies a batch to all of them in one pass (feedAll, deliverAll).
func (r *Runner) Run(ctx context.Context) error {
	if len(r.cfg.Projections) == 0 {
		return errors.New("projections: nothing to run")
	}
	if err := r.checkTables(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a shutdown like any other
		}
		return err
	}
	done := make(chan struct{})
	go func() {
		r.feedAll(ctx)
		close(done)
	}()
	<-ctx.Done()
	select {
	case <-done:
	case <-time.After(r.cfg.CloseTimeout):
		// Its goroutine still owns its connection (and lock) and closes it on return.
		r.log.Error("projections: a consumer is still applying a batch; Run returns without it", "waited", r.cfg.CloseTimeout)
	}
	return nil
}

// checkTables fails fast, with the fix in the message, when the schema is missing.
func (r *Runner) checkTables(ctx context.Context) error {
	tables := []string{"projection_checkpoints", "parked_events"}
	for _, p := range r.cfg.Projections {
		if m, ok := p.(ReadModel); ok {
			tables = append(tables, m.Tables()...)
		}
	}
	for _, t := range tables {
		_, exists, err := tableSchema(ctx, r.cfg.Pool, t)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("projections: table %s does not exist; run 'selfreset migrate' first", t)
		}
	}
	return nil
}

// Errors by what the runner may do about them.
var (
	// errPermanent marks failures a retry cannot fix (an event the codec cannot decode):
	// the event is parked at once.
	errPermanent = errors.New("permanent failure")
	// errApply marks failures of the projection's own code (its error or panic): after
	// the retries the event is parked. Failures of the runner's own work (begin, lock,
	// commit, a lost connection) are retried without end instead: they say nothing about
	// the event, and parking a good event because the database blinked would lose it.
	errApply = errors.New("projection failed")
	// errSplit marks a batch that could not be applied as a whole: it is not retried;
	// deliver applies its events again one by one.
	errSplit = errors.New("batch failed; its events are delivered one by one")
)

// attemptsKey counts, on an event's message, the attempts at applying it.
const attemptsKey = "projections_attempts"

// decode turns a recorded event into an Envelope.
func (r *Runner) decode(rec eventstore.RecordedEvent) (Envelope, error) {
	ev, err := r.cfg.Codec.DecodeRecorded(rec)
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{Record: rec, Event: ev}, nil
}

// process applies one event to one consumer on conn, the connection holding its lock,
// exactly once: under the consumer's locked checkpoint row, skipping what the checkpoint
// already covers, and moving the checkpoint in the same transaction. It reports whether
// the event was applied.
func (r *Runner) process(ctx context.Context, conn *pgx.Conn, p Projection, e Envelope) (applied bool, err error) {
	name := p.Name()
	if h := r.cfg.hooks.beforeLock; h != nil {
		h(name, e)
	}
	tx, err := begin(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("projections: %s: begin: %w", name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after Commit

	cp, err := lockCheckpoint(ctx, tx, name)
	if err != nil {
		return false, err
	}
	if !cp.Less(e.Record.Position) {
		// Already applied (a redelivery, a replay, or a rebuild got there first).
		if h := r.cfg.hooks.skipped; h != nil {
			h(name, e)
		}
		return false, commit(ctx, tx, name)
	}
	if err := p.Apply(ctx, tx, e); err != nil {
		if ctx.Err() != nil || tx.Conn().IsClosed() {
			return false, fmt.Errorf("projections: %s: apply %s: %w", name, e.Record.Type, err)
		}
		return false, fmt.Errorf("%w: %s: apply %s (event %s at %s): %w", errApply, name, e.Record.Type, e.Record.ID, e.Record.Position, err)
	}
	return true, r.commitApplied(ctx, tx, name, cp, []Envelope{e})
}

// processBatch applies a batch of events to one consumer on conn in one transaction with
// one checkpoint update, skipping what the checkpoint already covers. Any failure of the
// events or the projection (decoding, Apply, a panic) rolls it all back and returns
// errSplit, with tried naming the event whose Apply failed, so each event is then handled
// alone; failures of the runner's own work are returned as they are and retried. When
// the session knows where its checkpoint is (cur) and p's writes are pipelined, the
// pass is a single batch (applyPipelined); otherwise, or when the checkpoint turns out to
// have moved, it locks the checkpoint row and reads it first. Either way cur ends up where
// the checkpoint is, or unknown.
func (r *Runner) processBatch(ctx context.Context, conn *pgx.Conn, p Projection, batch []eventstore.RecordedEvent, cur *cursor) (tried string, err error) {
	name := p.Name()
	envs := make([]Envelope, 0, len(batch))
	for _, rec := range batch {
		e, derr := r.decode(rec)
		if derr != nil {
			return "", fmt.Errorf("%w: %s: decode event %s: %w", errSplit, name, rec.ID, derr)
		}
		envs = append(envs, e)
	}
	if h := r.cfg.hooks.beforeLock; h != nil {
		for _, e := range envs {
			h(name, e)
		}
	}
	if cur.known && pipelined(p) {
		to, tried, err := r.applyPipelined(ctx, conn, p, cur.pos, envs)
		if !errors.Is(err, errCheckpointMoved) {
			if err == nil {
				cur.pos = to
			}
			return tried, err // on failure nothing committed: the checkpoint is still at cur
		}
		cur.known = false // a rebuild moved it: read it under the lock
	}
	tx, err := begin(ctx, conn)
	if err != nil {
		return "", fmt.Errorf("projections: %s: begin: %w", name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after Commit

	cp, err := lockCheckpoint(ctx, tx, name)
	if err != nil {
		return "", err
	}
	applied, tried, err := r.applyAfter(ctx, tx, p, cp, envs)
	if err != nil {
		return batchFailed(ctx, conn, name, tried, err)
	}
	if len(applied) == 0 {
		err = commit(ctx, tx, name)
	} else {
		err = r.commitApplied(ctx, tx, name, cp, applied)
		cp = applied[len(applied)-1].Record.Position
	}
	if err == nil {
		*cur = cursor{pos: cp, known: true}
	}
	return "", err
}

// batchFailed is processBatch's answer to a failed Apply or write: the batch is split
// unless the failure is the session's (ctx ended, connection lost).
func batchFailed(ctx context.Context, conn *pgx.Conn, name, tried string, err error) (string, error) {
	if ctx.Err() != nil || conn.IsClosed() {
		return "", fmt.Errorf("projections: %s: %w", name, err)
	}
	if errors.Is(err, errPipelined) {
		tried = "" // a pipelined write failed: which event's is not known
	}
	return tried, fmt.Errorf("%w: %s: %w", errSplit, name, err)
}

// applyAfter applies to p, in tx, the events after the checkpoint cp, and returns them;
// tried is the id of the last event Apply was called with, and a panic is an error. The
// writes of read models and WriteOnly projections are pipelined (their contract lets
// Apply ignore command tags); other projections read theirs.
func (r *Runner) applyAfter(ctx context.Context, tx pgx.Tx, p Projection, cp eventstore.Position, envs []Envelope) (applied []Envelope, tried string, err error) {
	if !pipelined(p) {
		return r.applyEach(ctx, tx, p, cp, envs)
	}
	pt := &pipelinedTx{Tx: tx}
	if applied, tried, err = r.applyPart(ctx, pt, p, cp, envs); err != nil {
		return applied, tried, err
	}
	return applied, tried, pt.flush(ctx)
}

// applyEach applies to p, in atx, the events of envs after cp, and returns them; tried
// is the id of the last event Apply was called with, and a panic is an error.
func (r *Runner) applyEach(ctx context.Context, atx pgx.Tx, p Projection, cp eventstore.Position, envs []Envelope) (applied []Envelope, tried string, err error) {
	defer recoverApply(&err)
	for _, e := range r.pastCheckpoint(p, cp, envs) {
		tried = e.Record.ID.String()
		if err := p.Apply(ctx, atx, e); err != nil {
			return applied, tried, fmt.Errorf("apply %s (event %s at %s): %w", e.Record.Type, e.Record.ID, e.Record.Position, err)
		}
		applied = append(applied, e)
	}
	return applied, tried, nil
}

// pastCheckpoint is the part of envs after cp; the test hook hears of the others.
func (r *Runner) pastCheckpoint(p Projection, cp eventstore.Position, envs []Envelope) []Envelope {
	for i, e := range envs {
		if cp.Less(e.Record.Position) {
			return envs[i:] // the feed delivers in order
		}
		if h := r.cfg.hooks.skipped; h != nil {
			h(p.Name(), e)
		}
	}
	return nil
}

// recoverApply makes a panic in a projection's Apply the error *err.
func recoverApply(err *error) {
	if v := recover(); v != nil {
		*err = fmt.Errorf("panic: %v", v)
	}
}

// commitApplied moves the checkpoint from cp to the last of applied and commits, with
// the test hooks around the commit.
func (r *Runner) commitApplied(ctx context.Context, tx pgx.Tx, name string, cp eventstore.Position, applied []Envelope) error {
	if err := advanceCheckpoint(ctx, tx, name, cp, applied[len(applied)-1].Record.Position); err != nil {
		return err
	}
	if err := r.beforeCommit(name, applied); err != nil {
		return err
	}
	if err := commit(ctx, tx, name); err != nil {
		return err
	}
	r.afterCommit(name, applied)
	return nil
}

// beforeCommit runs the test hook of that name for each of applied; its error stops the commit.
func (r *Runner) beforeCommit(name string, applied []Envelope) error {
	if h := r.cfg.hooks.beforeCommit; h != nil {
		for _, e := range applied {
			if err := h(name, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// afterCommit runs the test hook of that name for each of applied.
func (r *Runner) afterCommit(name string, applied []Envelope) {
	if h := r.cfg.hooks.afterCommit; h != nil {
		for _, e := range applied {
			h(name, e)
		}
	}
}

// begin starts a consumer's transaction on conn, the connection holding its lock, with
// Schema first on its search_path (UseSchema).
func begin(ctx context.Context, conn *pgx.Conn) (pgx.Tx, error) {
	return conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: sqlBeginInSchema})
}

func commit(ctx context.Context, tx pgx.Tx, name string) error {
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("projections: %s: commit: %w", name, err)
	}
	return nil
}

// parkable reports whether err is the event's fault rather than the infrastructure's.
func parkable(err error) bool {
	var panicked middleware.RecoveredPanicError
	switch {
	case errors.Is(err, errPermanent), errors.As(err, &panicked):
		return true
	case errors.Is(err, errApply):
		// A projection's error that is really a lost connection is not the event's fault.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && len(pgErr.Code) == 5 {
			switch pgErr.Code[:2] {
			case "08", "40", "53", "57", "58":
				// connection, deadlock or serialization, resources, cancelled or shut down, system
				return false
			}
			return true
		}
		return !pgconn.SafeToRetry(err) && !pgconn.Timeout(err)
	}
	return false
}

// park records rec as parked for consumer and moves the checkpoint past it, in one
// transaction on conn, the connection holding the consumer's lock. An event the checkpoint already covers is left alone.
func (r *Runner) park(ctx context.Context, conn *pgx.Conn, consumer string, rec eventstore.RecordedEvent, cause error, attempts int) error {
	tx, err := begin(ctx, conn)
	if err != nil {
		return fmt.Errorf("projections: park: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	cp, err := lockCheckpoint(ctx, tx, consumer)
	if err != nil {
		return err
	}
	if !cp.Less(rec.Position) {
		return commit(ctx, tx, consumer)
	}
	if err := insertParked(ctx, tx, consumer, rec, cause.Error(), attempts); err != nil {
		return err
	}
	if err := advanceCheckpoint(ctx, tx, consumer, cp, rec.Position); err != nil {
		return err
	}
	if err := commit(ctx, tx, consumer); err != nil {
		return err
	}
	r.parked.Add(1)
	r.log.Error("projections: event parked; the consumer moved past it",
		"consumer", consumer, "event_id", rec.ID, "type", rec.Type, "stream", rec.Stream,
		"revision", rec.Revision, "position", rec.Position.String(), "attempts", attempts, "error", cause)
	return nil
}
