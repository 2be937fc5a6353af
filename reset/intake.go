package reset

import (
	"context"
	stdsql "database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/pgmigrate"
	"selfreset/secret"
)

// The durable intake. Forgot Password and Resend publish their command with watermill's
// cqrs CommandBus over watermill-sql on PostgreSQL before answering; a CommandProcessor
// on every worker process (serve --role all or worker) consumes them.
//
// Each command has its own table (one topic each: a cqrs handler acks messages of
// another command type as "not mine", so two commands must never share a queue). The
// queue is watermill-sql's PostgreSQLQueueSchema with two changes (queueSchema):
// SELECT … FOR UPDATE SKIP LOCKED under READ COMMITTED, up to claimBatch rows at a time,
// so any number of subscribers, in one process or many, take distinct rows and never
// wait on each other; and the tables come from `migrate`, not from the hot path. A row is
// deleted in the transaction that holds its lock, after the handler returned: a crash
// before that leaves it for the next subscriber, and the handler makes the redelivery a
// no-op (commands.WithCommandID derives the event ids from the message uuid). For the
// same reason that transaction commits without waiting for its WAL flush
// (synchronous_commit off on the worker's queue pool): a delete lost in a database crash
// is one more redelivery. When the events are in the same database (SharedLog), so may
// the decision itself (eventstore.WithRedelivery, set by commandContext): the row was
// committed durably by the publisher before the 202, and the delete that acknowledges
// the command comes after the decision in the WAL, so a crash that loses the decision
// loses the delete too and the command is decided again. The mailer's lease is a
// durable commit, made before any mail leaves: it flushes the decision whose mail it
// takes.

// Topics (and their tables).
const (
	topicRequest = "reset_request_token"
	topicResend  = "reset_resend_token"
)

var tables = map[string]string{topicRequest: "reset_intake_request", topicResend: "reset_intake_resend"}

func tableName(topic string) string {
	if t, ok := tables[topic]; ok {
		return t
	}
	return "reset_intake_" + topic // not reached: only the two topics above are used
}

// emailLabel separates the queue's email encryption from every other use of the key.
const emailLabel = "reset.intake.email"

// RequestToken is Forgot Password's command as it waits in the queue. The email is
// encrypted with the server key (secret.Keyring.Encrypt): the queue never holds it in
// clear, and the worker opens it to give commands.RequestResetToken the address typed,
// which the domain compares with the recovery email and masks for unmatched requests.
type RequestToken struct {
	Provider    string `json:"provider"`
	Login       string `json:"login"`
	SealedEmail []byte `json:"sealed_email"`
}

// ResendToken is Resend's command: the reset id (sealed, no email in it) and when the
// client asked, which decides whether the reset id had expired.
type ResendToken struct {
	ResetID     string    `json:"reset_id"`
	RequestedAt time.Time `json:"requested_at"`
}

// Message metadata keys carrying the request metadata (commands.WithMetadata).
const (
	metaCorrelation = "correlation_id"
	metaClientIP    = "client_ip"
	metaUserAgent   = "user_agent"
)

func marshaler() cqrs.CommandEventMarshaler {
	return cqrs.JSONMarshaler{GenerateName: cqrs.StructName}
}

func topicFor(commandName string) (string, error) {
	switch commandName {
	case cqrs.StructName(&RequestToken{}):
		return topicRequest, nil
	case cqrs.StructName(&ResendToken{}):
		return topicResend, nil
	}
	return "", fmt.Errorf("reset: no queue for command %q", commandName)
}

// queueSchema is PostgreSQLQueueSchema made for competing consumers (see above).
type queueSchema struct {
	wsql.PostgreSQLQueueSchema
}

// claimBatch is how many rows a subscriber claims in one transaction. watermill-sql hands
// them to the handler one after another and deletes the decided ones in one statement
// before one commit (queueOffsets), so the claim, delete and commit are paid once per
// batch instead of once per command. A crash redelivers at most a batch per subscriber,
// which the command ids make a no-op. A claim takes what is queued up to the limit, so a
// short queue still goes to the first subscriber to ask; a long one (a burst's backlog)
// pays the claim's fixed costs once per 16 commands. Against 4, in alternating pairs on 2
// cores, the machine CPU per decision fell by about a tenth and the decisions at c = 8
// rose by about as much (docs/benchmarks.md, thirteenth session).
const claimBatch = 16

func newQueueSchema() queueSchema {
	return queueSchema{wsql.PostgreSQLQueueSchema{
		GenerateMessagesTableName: tableName,
		SubscribeBatchSize:        claimBatch,
	}}
}

func (s queueSchema) SelectQuery(params wsql.SelectQueryParams) (wsql.Query, error) {
	if params.ConsumerGroup != "" {
		return wsql.Query{}, errors.New("reset: the intake queue has no consumer groups")
	}
	return wsql.Query{Query: `SELECT "offset", uuid, payload, metadata FROM ` + tableName(params.Topic) +
		` WHERE acked = false ORDER BY "offset" LIMIT ` + strconv.Itoa(s.SubscribeBatchSize) + ` FOR UPDATE SKIP LOCKED`}, nil
}

// SubscribeIsolationLevel: READ COMMITTED, so a row another subscriber deleted after
// this transaction began is skipped rather than a serialization failure.
func (queueSchema) SubscribeIsolationLevel() stdsql.IsolationLevel { return stdsql.LevelReadCommitted }

// SchemaInitializingQueries: none; Migrate creates the tables.
func (queueSchema) SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return nil, nil
}

// queueOffsets deletes only the rows of a claimed batch that were decided. watermill-sql
// stops handing out a batch when the subscriber closes, and then acks it with every
// claimed row in Rows; the rows it handed out, in offset order, end at LastRow. The
// rest stay queued for the next subscriber.
type queueOffsets struct {
	wsql.PostgreSQLQueueOffsetsAdapter
}

func newQueueOffsets() queueOffsets {
	return queueOffsets{wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true, GenerateMessagesTableName: tableName}}
}

func (a queueOffsets) AckMessageQuery(params wsql.AckMessageQueryParams) (wsql.Query, error) {
	params.Rows = decidedRows(params.Rows, params.LastRow)
	return a.PostgreSQLQueueOffsetsAdapter.AckMessageQuery(params)
}

// decidedRows are the rows of a batch up to and including last.
func decidedRows(rows []wsql.Row, last wsql.Row) []wsql.Row {
	out := make([]wsql.Row, 0, len(rows))
	for _, r := range rows {
		if r.Offset <= last.Offset {
			out = append(out, r)
		}
	}
	return out
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate creates or upgrades the intake's queue tables, recording the version in
// reset_migrations (idempotent, safe from several processes at once).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pgmigrate.Up(ctx, pool, migrationFiles, "migrations", "reset_migrations"); err != nil {
		return fmt.Errorf("reset: migrate: %w", err)
	}
	return nil
}

func watermillLogger(l *slog.Logger) watermill.LoggerAdapter {
	// watermill's info lines (subscribing, closing) are routine here: debug.
	return watermill.NewSlogLoggerWithLevelMapping(l, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
}

// Bus publishes the asynchronous commands: Send returns once the row is committed.
type Bus struct {
	bus   *cqrs.CommandBus
	group *groupPublisher
	pool  *pgxpool.Pool
}

// Publishing: the rows of concurrent Sends go in one INSERT (groupPublisher), up to
// publishGroup of them, with at most publishConns INSERTs in flight, each on a
// connection of the Bus's own pool, so that the answers never wait behind the command
// side (which shares the read-model pool with the projections and the mailer).
const (
	// Two: the answers of a burst then wait for one INSERT more often and share it, so
	// each costs PostgreSQL less of a commit. With four, most INSERTs carried one row at
	// c = 8 (6,160 of about 7,300 in 8 s of a burst); with two, three alternating pairs gave
	// 13% more decisions at c = 8 and 21% more answers at c = 32, with a lower p99.
	publishConns = 2
	// A group's INSERT has a VALUES list of its own length, each length a statement in
	// the connection's cache (128, withStatementCache in cmd/selfreset): 32 leaves room.
	publishGroup = 32
	// publishTimeout bounds one INSERT: it runs for a whole group, on no single request's
	// context (each Send stops waiting when its own context ends).
	publishTimeout = 10 * time.Second
)

// NewBus publishes to the database of pool (the read-model database), on a pool of its
// own with pool's settings. Close it when done.
func NewBus(pool *pgxpool.Pool, logger *slog.Logger) (*Bus, error) {
	if logger == nil {
		logger = slog.Default()
	}
	pcfg := pool.Config()
	pcfg.MaxConns = publishConns
	own, err := pgxpool.NewWithConfig(context.Background(), pcfg) // connects lazily
	if err != nil {
		return nil, fmt.Errorf("reset: intake publish pool: %w", err)
	}
	pub, err := wsql.NewPublisher(wsql.BeginnerFromPgx(own), wsql.PublisherConfig{SchemaAdapter: newQueueSchema()}, watermillLogger(logger))
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("reset: intake publisher: %w", err)
	}
	group := &groupPublisher{next: pub, flushers: publishConns, maxGroup: publishGroup, timeout: publishTimeout}
	bus, err := cqrs.NewCommandBusWithConfig(group, cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) { return topicFor(p.CommandName) },
		OnSend: func(p cqrs.CommandBusOnSendParams) error {
			md := commands.RequestMetadata(p.Message.Context())
			p.Message.Metadata.Set(metaCorrelation, md.CorrelationID)
			p.Message.Metadata.Set(metaClientIP, md.ClientIP)
			p.Message.Metadata.Set(metaUserAgent, md.UserAgent)
			return nil
		},
		Marshaler: marshaler(),
	})
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("reset: command bus: %w", err)
	}
	return &Bus{bus: bus, group: group, pool: own}, nil
}

// Close waits for the INSERTs on their way and releases the Bus's connections; Send
// fails afterwards.
func (b *Bus) Close() {
	_ = b.group.Close()
	b.pool.Close()
}

// Send queues cmd (a *RequestToken or *ResendToken); ctx bounds the insert and carries
// the request metadata.
func (b *Bus) Send(ctx context.Context, cmd any) error { return b.bus.Send(ctx, cmd) }

// WorkerConfig wires the command processor.
type WorkerConfig struct {
	Pool     *pgxpool.Pool // the database the Bus publishes to
	Commands Commands
	Keyring  *secret.Keyring
	Logger   *slog.Logger
	// Concurrency is how many Forgot Password commands one process runs at once
	// (SELFRESET_RESET_WORKERS, default 8); Resend gets a quarter of it (at least 1).
	// Each holds one PostgreSQL connection of a pool of its own while it runs.
	Concurrency int
	// PollInterval is how long an idle subscriber waits before looking again (default
	// 100ms): the delay between the answer and the decision when the queue was empty.
	PollInterval time.Duration
	// NoTypedAddressNotice turns off the "Password Reset Error" email to a typed address
	// that is not the account's verified one (SELFRESET_NOTIFY_UNKNOWN_RECIPIENTS=false).
	NoTypedAddressNotice bool
	// SharedLog says that the event store writes to the WAL of Pool's database, as the
	// queue does: then a decision may commit without waiting for its flush
	// (eventstore.WithRedelivery), since the delete that acknowledges its command comes
	// after it in that one log. With the events in another database server a lost
	// decision could leave its acknowledgement behind, so each must be durable first.
	SharedLog bool
	// Front, when set, is the answers in progress of the Service in this process: while
	// they saturate it, one subscriber claims and decides at a time (Front).
	Front *Front
	// ackDeadline is how long a subscriber waits for one command of its batch before it
	// gives the batch's undecided rows back (handlerTimeout; shorter in tests).
	ackDeadline time.Duration
}

// Worker consumes the intake queue: a watermill Router with a cqrs CommandProcessor.
type Worker struct {
	router *message.Router
	pool   *pgxpool.Pool
	cmds   Commands
	keys   *secret.Keyring
	log    *slog.Logger
	notice bool // mail typed addresses the fixed Password Reset Error text
	// sharedLog: decisions may commit without waiting for their flush (WorkerConfig.SharedLog)
	sharedLog bool
}

// handlerTimeout bounds one command; past it the row is left for redelivery.
const handlerTimeout = 30 * time.Second

// NewWorker builds the processor; Run runs it.
func NewWorker(ctx context.Context, c WorkerConfig) (*Worker, error) {
	if c.Pool == nil || c.Commands == nil || c.Keyring == nil {
		return nil, errors.New("reset: NewWorker needs Pool, Commands and Keyring")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.ackDeadline <= 0 {
		c.ackDeadline = handlerTimeout
	}
	resenders := max(1, c.Concurrency/4)
	// Subscribers hold a connection for as long as a command runs, and commands need
	// connections of their own (event store, read models): a pool of its own keeps the
	// queue from starving them.
	pcfg := c.Pool.Config()
	pcfg.MaxConns = int32(c.Concurrency + resenders)
	// This pool only claims and deletes queue rows (see the top of the file).
	pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("reset: intake pool: %w", err)
	}
	wlog := watermillLogger(c.Logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: handlerTimeout}, wlog)
	if err != nil {
		pool.Close()
		return nil, err
	}
	router.AddMiddleware(
		middleware.Recoverer,
		// Transient failures (contention, a store briefly down) are retried here, then
		// nacked, which makes watermill-sql deliver the same row again: an accepted
		// request is never dropped.
		middleware.Retry{MaxRetries: 5, InitialInterval: 50 * time.Millisecond, MaxInterval: 2 * time.Second,
			Multiplier: 2, RandomizationFactor: 0.5, Logger: wlog}.Middleware,
	)
	w := &Worker{router: router, pool: pool, cmds: c.Commands, keys: c.Keyring, log: c.Logger, notice: !c.NoTypedAddressNotice,
		sharedLog: c.SharedLog}
	beginner := claimBeginner(pool, c.Front)
	proc, err := cqrs.NewCommandProcessorWithConfig(router, cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return topicFor(p.CommandName)
		},
		SubscriberConstructor: func(cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return wsql.NewSubscriber(beginner, wsql.SubscriberConfig{
				SchemaAdapter:  newQueueSchema(),
				OffsetsAdapter: newQueueOffsets(),
				PollInterval:   c.PollInterval,
				AckDeadline:    &c.ackDeadline,
				ResendInterval: 100 * time.Millisecond,
				RetryInterval:  time.Second,
			}, wlog)
		},
		Marshaler: marshaler(),
		Logger:    wlog,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	// One router handler per concurrent subscriber, all on the same queue.
	for i := range c.Concurrency {
		if _, err := proc.AddHandler(cqrs.NewCommandHandler(fmt.Sprintf("reset-request-%d", i), w.handleRequest)); err != nil {
			pool.Close()
			return nil, err
		}
	}
	for i := range resenders {
		if _, err := proc.AddHandler(cqrs.NewCommandHandler(fmt.Sprintf("reset-resend-%d", i), w.handleResend)); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return w, nil
}

// claimBeginner begins the subscribers' claim transactions on pool (pipelinedBeginner),
// through the gate of front when there is one (Front); without, there is nothing to give
// way to.
func claimBeginner(pool *pgxpool.Pool, front *Front) wsql.Beginner {
	b := pipelinedBeginner{pool: pool}
	if front == nil {
		return b
	}
	return gatedBeginner{Beginner: b, gate: newYieldGate(front)}
}

// Run consumes until ctx ends, then lets running commands finish (up to 30s) and
// returns. A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	defer w.pool.Close()
	if err := w.router.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Running is closed once every subscriber is running.
func (w *Worker) Running() <-chan struct{} { return w.router.Running() }

// commandContext carries the message's id (derived event ids: a redelivery is a no-op),
// request metadata and, with a shared log, the mark that lets the decision commit
// without waiting for its flush; detached from the router's cancellation so a shutdown
// lets the command finish.
func (w *Worker) commandContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	msg := cqrs.OriginalMessageFromCtx(ctx)
	if msg == nil {
		return nil, nil, errors.New("reset: no message in the handler's context")
	}
	id, err := uuid.Parse(msg.UUID)
	if err != nil {
		id = uuid.NewSHA1(uuid.NameSpaceOID, []byte(msg.UUID))
	}
	md := eventstore.Metadata{CorrelationID: msg.Metadata.Get(metaCorrelation),
		ClientIP: msg.Metadata.Get(metaClientIP), UserAgent: msg.Metadata.Get(metaUserAgent)}
	ctx = commands.WithCommandID(commands.WithMetadata(context.WithoutCancel(ctx), md), id)
	if w.sharedLog {
		ctx = eventstore.WithRedelivery(ctx) // acknowledged after the handler returned, in the same WAL
	}
	ctx, cancel := context.WithTimeout(ctx, handlerTimeout)
	return ctx, cancel, nil
}

func (w *Worker) handleRequest(ctx context.Context, cmd *RequestToken) error {
	ctx, cancel, err := w.commandContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	email, err := w.keys.Decrypt(emailLabel, cmd.SealedEmail)
	if err != nil {
		// Under a key this server no longer has: it can never be decided. Drop it, loudly.
		w.log.LogAttrs(ctx, slog.LevelError, "intake: forgot-password command cannot be opened; dropped",
			slog.String("error", err.Error()))
		return nil
	}
	c := commands.RequestResetToken{Provider: cmd.Provider, Login: cmd.Login, Email: string(email)}
	if w.notice {
		// Encrypted afresh for the event (its own label), normalized as the domain checks
		// it: the mailer opens it at send time.
		if c.NoticeEmail, err = w.keys.Encrypt(domain.NoticeEmailLabel, []byte(domain.NormalizeEmail(string(email)))); err != nil {
			return err
		}
	}
	_, err = w.cmds.RequestResetToken(ctx, c)
	return w.outcome(ctx, "request-reset-token", err)
}

func (w *Worker) handleResend(ctx context.Context, cmd *ResendToken) error {
	ctx, cancel, err := w.commandContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	ref, ok := openResetID(w.keys, cmd.ResetID)
	if !ok {
		w.log.LogAttrs(ctx, slog.LevelError, "intake: resend command names a reset id that does not open; dropped")
		return nil
	}
	ttl := w.cmds.Policy().ResetTokenTTL
	// The command decides on one fold of the account whether this request may resend
	// (ForRequest), and then a fresh token or a recorded refusal (after expiry the owner
	// gets a Password Reset Error email).
	_, err = w.cmds.ResendResetToken(ctx, commands.ResendResetToken{Provider: ref.Provider, Login: ref.Login,
		ForRequest: func(u domain.User) bool { return resendFor(w.keys, u, ref, cmd.RequestedAt, ttl) }})
	if errors.Is(err, commands.ErrNotForRequest) {
		return nil
	}
	return w.outcome(ctx, "resend-reset-token", err)
}

// resendFor reports whether a Resend of the request ref names, asked for at, may act on
// u: only when a token was sent for that request (nothing to resend otherwise), and not
// when an old reset id would replace the live token of a later request.
func resendFor(k *secret.Keyring, u domain.User, ref Ref, at time.Time, ttl time.Duration) bool {
	if !tokenForRequest(k, u, ref) {
		return false
	}
	expired := !at.Before(ref.IssuedAt.Add(ttl))
	return !expired || u.Token.State != domain.TokenActive || !at.Before(u.Token.ExpiresAt)
}

// outcome acks decisions and asks for a retry of failures. Refusals are decisions (the
// events hold them); so is a redelivery of a decided command. Never the email or token
// in the log.
func (w *Worker) outcome(ctx context.Context, what string, err error) error {
	attrs := []slog.Attr{slog.String("work", what), slog.String("correlation_id", commands.RequestMetadata(ctx).CorrelationID)}
	switch {
	case err == nil:
		w.log.LogAttrs(ctx, slog.LevelDebug, "intake: decided", attrs...)
		return nil
	case errors.Is(err, commands.ErrAlreadyDecided):
		w.log.LogAttrs(ctx, slog.LevelDebug, "intake: redelivered command already decided", attrs...)
		return nil
	case domain.Code(err) != "":
		w.log.LogAttrs(ctx, slog.LevelDebug, "intake: refused", append(attrs, slog.String("code", domain.Code(err)))...)
		return nil
	default:
		w.log.LogAttrs(ctx, slog.LevelWarn, "intake: command failed; will retry", append(attrs, slog.String("error", err.Error()))...)
		return err
	}
}

// Pending counts the commands queued and not yet decided (tests and operators).
func Pending(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var n int
	err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+tables[topicRequest]+`) + (SELECT count(*) FROM `+tables[topicResend]+`)`).Scan(&n)
	return n, err
}
