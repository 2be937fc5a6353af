package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
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
	// Feed tuning (see FeedConfig); Store, Pool and Logger are taken from this Config.
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

// Runner feeds consumers from the global feed through a watermill Router and rebuilds
// read models. It is safe for concurrent use; Run may be called again after it returned.
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
	if cfg.Feed.BatchSize <= 0 {
		cfg.Feed.BatchSize = 500
	}
	cfg.Feed.Store, cfg.Feed.Pool, cfg.Feed.Logger = cfg.Store, cfg.Pool, cfg.Logger
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

// Run feeds every configured projection until ctx ends, then waits for the event in
// progress of each (up to CloseTimeout) and returns nil. Each consumer gets its own
// subscription, its own advisory lock and its own checkpoint: a slow or failing consumer
// never holds up another.
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
	feed := NewFeed(r.cfg.Feed)
	defer feed.Close()

	logger := watermill.NewSlogLoggerWithLevelMapping(r.log, map[slog.Level]slog.Level{
		slog.LevelInfo:  slog.LevelDebug, // router life-cycle chatter
		slog.LevelDebug: slog.LevelDebug - 4,
	})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.CloseTimeout}, logger)
	if err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	rc := r.cfg.Retry
	retry := middleware.Retry{
		MaxRetries:          rc.MaxAttempts - 1,
		InitialInterval:     rc.InitialInterval,
		MaxInterval:         rc.MaxInterval,
		Multiplier:          rc.Multiplier,
		RandomizationFactor: rc.Jitter,
		ResetContextOnRetry: true,
		ShouldRetry: func(p middleware.RetryParams) bool {
			return !errors.Is(p.Err, errPermanent) && !errors.Is(p.Err, errSplit)
		},
		OnRetryHook: func(n int, delay time.Duration) {
			r.log.Debug("projections: retrying event", "retry", n, "delay", delay)
		},
	}
	// First added runs outermost: park what retries could not fix; retry what failed or
	// panicked.
	router.AddMiddleware(r.parkMiddleware, retry.Middleware, r.attemptsMiddleware, middleware.Recoverer)
	for _, p := range r.cfg.Projections {
		router.AddConsumerHandler(p.Name(), p.Name(), feed, r.handler(p))
	}
	err = router.Run(ctx)
	_ = feed.Close()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	return errors.New("projections: router stopped")
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
	// errSplit marks a batch that could not be applied as a whole: it is neither retried
	// nor parked; the feed delivers its events again one by one.
	errSplit = errors.New("batch failed; its events are delivered one by one")
)

const attemptsKey = "projections_attempts"

// metaTried names, on a batch message that failed, the event whose Apply failed: that was
// its first attempt.
const metaTried = "projections_tried"

// handler is the innermost step: decode, then apply in a transaction.
func (r *Runner) handler(p Projection) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		if batch := batchFrom(msg); batch != nil {
			tried, err := r.processBatch(msg.Context(), p, batch)
			if tried != "" {
				msg.Metadata.Set(metaTried, tried)
			}
			return err
		}
		n, _ := strconv.Atoi(msg.Metadata.Get(attemptsKey))
		msg.Metadata.Set(attemptsKey, strconv.Itoa(n+1))

		rec, err := RecordFromMessage(msg)
		if err != nil {
			return fmt.Errorf("%w: %w", errPermanent, err)
		}
		ev, err := r.cfg.Codec.DecodeRecorded(rec)
		if err != nil {
			return fmt.Errorf("%w: %w", errPermanent, err)
		}
		_, err = r.process(msg.Context(), p, Envelope{Record: rec, Event: ev})
		return err
	}
}

// process applies one event to one consumer, exactly once: under the consumer's locked
// checkpoint row, skipping what the checkpoint already covers, and moving the checkpoint
// in the same transaction. It reports whether the event was applied.
func (r *Runner) process(ctx context.Context, p Projection, e Envelope) (applied bool, err error) {
	name := p.Name()
	if h := r.cfg.hooks.beforeLock; h != nil {
		h(name, e)
	}
	tx, err := r.begin(ctx)
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
	if err := advanceCheckpoint(ctx, tx, name, cp, e.Record.Position); err != nil {
		return false, err
	}
	if h := r.cfg.hooks.beforeCommit; h != nil {
		if err := h(name, e); err != nil {
			return false, err
		}
	}
	if err := commit(ctx, tx, name); err != nil {
		return false, err
	}
	if h := r.cfg.hooks.afterCommit; h != nil {
		h(name, e)
	}
	return true, nil
}

// processBatch applies a batch of events to one consumer in one transaction with one
// checkpoint update, skipping what the checkpoint already covers. Any failure of the
// events or the projection (decoding, Apply, a panic) rolls it all back and returns
// errSplit, so each event is then handled alone; failures of the runner's own work are
// returned as they are and retried.
func (r *Runner) processBatch(ctx context.Context, p Projection, batch []eventstore.RecordedEvent) (tried string, err error) {
	name := p.Name()
	envs := make([]Envelope, 0, len(batch))
	for _, rec := range batch {
		ev, derr := r.cfg.Codec.DecodeRecorded(rec)
		if derr != nil {
			return "", fmt.Errorf("%w: %s: decode event %s: %w", errSplit, name, rec.ID, derr)
		}
		envs = append(envs, Envelope{Record: rec, Event: ev})
	}
	if h := r.cfg.hooks.beforeLock; h != nil {
		for _, e := range envs {
			h(name, e)
		}
	}
	tx, err := r.begin(ctx)
	if err != nil {
		return "", fmt.Errorf("projections: %s: begin: %w", name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after Commit

	cp, err := lockCheckpoint(ctx, tx, name)
	if err != nil {
		return "", err
	}
	// A read model's writes are pipelined (its contract lets Apply ignore command tags);
	// other projections (the mailer's intake) read theirs.
	var atx pgx.Tx = tx
	var pt *pipelinedTx
	if _, ok := p.(ReadModel); ok {
		pt = &pipelinedTx{Tx: tx}
		atx = pt
	}
	applied := envs[:0:0]
	if err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		for _, e := range envs {
			if !cp.Less(e.Record.Position) {
				if h := r.cfg.hooks.skipped; h != nil {
					h(name, e)
				}
				continue
			}
			tried = e.Record.ID.String()
			if err := p.Apply(ctx, atx, e); err != nil {
				return fmt.Errorf("apply %s (event %s at %s): %w", e.Record.Type, e.Record.ID, e.Record.Position, err)
			}
			applied = append(applied, e)
		}
		if pt != nil {
			return pt.flush(ctx)
		}
		return nil
	}(); err != nil {
		if ctx.Err() != nil || tx.Conn().IsClosed() {
			return "", fmt.Errorf("projections: %s: %w", name, err)
		}
		if errors.Is(err, errPipelined) {
			tried = "" // a pipelined write failed: which event's is not known
		}
		return tried, fmt.Errorf("%w: %s: %w", errSplit, name, err)
	}
	if len(applied) == 0 {
		return "", commit(ctx, tx, name)
	}
	if err := advanceCheckpoint(ctx, tx, name, cp, applied[len(applied)-1].Record.Position); err != nil {
		return "", err
	}
	if h := r.cfg.hooks.beforeCommit; h != nil {
		for _, e := range applied {
			if err := h(name, e); err != nil {
				return "", err
			}
		}
	}
	if err := commit(ctx, tx, name); err != nil {
		return "", err
	}
	if h := r.cfg.hooks.afterCommit; h != nil {
		for _, e := range applied {
			h(name, e)
		}
	}
	return "", nil
}

// begin starts a consumer's transaction on the connection holding its lock (from the
// message's context), or on the pool when the feed takes no locks, with Schema first on
// its search_path (UseSchema).
func (r *Runner) begin(ctx context.Context) (pgx.Tx, error) {
	opts := pgx.TxOptions{BeginQuery: sqlBeginInSchema}
	if conn := connFrom(ctx); conn != nil {
		return conn.BeginTx(ctx, opts)
	}
	return r.cfg.Pool.BeginTx(ctx, opts)
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
	case errors.Is(err, errSplit):
		return false // the feed delivers the batch's events one by one
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

// attemptsMiddleware stops the retries of an event that failed its last attempt, counting
// the attempt it had inside a batch (the feed then marks its message, see MetaTried).
func (r *Runner) attemptsMiddleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil && batchFrom(msg) == nil && parkable(err) {
			if n, _ := strconv.Atoi(msg.Metadata.Get(attemptsKey)); n >= r.cfg.Retry.MaxAttempts {
				return nil, fmt.Errorf("%w: %w", errPermanent, err)
			}
		}
		return out, err
	}
}

// parkMiddleware is the outermost step: an event the retries could not apply is parked
// and acked, so the consumer moves on. Shutdown and infrastructure failures are returned
// (the message is nacked and delivered again later).
func (r *Runner) parkMiddleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err == nil {
			return out, nil
		}
		ctx := msg.Context()
		if ctx.Err() != nil || !parkable(err) || batchFrom(msg) != nil {
			return nil, err
		}
		consumer := message.HandlerNameFromCtx(ctx)
		rec, derr := RecordFromMessage(msg)
		if derr != nil || consumer == "" {
			return nil, errors.Join(err, derr)
		}
		attempts, _ := strconv.Atoi(msg.Metadata.Get(attemptsKey))
		if perr := r.park(ctx, consumer, rec, err, attempts); perr != nil {
			return nil, errors.Join(err, perr)
		}
		return nil, nil
	}
}

// park records rec as parked for consumer and moves the checkpoint past it, in one
// transaction. An event the checkpoint already covers is left alone.
func (r *Runner) park(ctx context.Context, consumer string, rec eventstore.RecordedEvent, cause error, attempts int) error {
	tx, err := r.begin(ctx)
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
