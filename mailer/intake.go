package mailer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/secret"
)

// ProjectionName is the mailer's consumer name (its checkpoint).
const ProjectionName = "mailer"

// notifyChannel wakes senders when a delivery is queued (delivered on commit).
const notifyChannel = "mail_deliveries"

// Delivery states.
const (
	StatePending = "pending"
	StateSent    = "sent"
	StateSkipped = "skipped"
	StateFailed  = "failed"
)

// Reasons a pending delivery is skipped instead of sent.
const (
	SkipExpired    = "expired"
	SkipSuperseded = "superseded"
	// SkipCapped: the recipient already had MaxErrorMails "Password Reset Error" mails
	// within ErrorMailWindow (owner and typed-address ones together).
	SkipCapped = "capped"
)

// The per-recipient cap on "Password Reset Error" mails: as many as an account may get
// tokens in the throttling window (domain.DefaultPolicy), at most 3 per 15 minutes.
var (
	MaxErrorMails   = domain.DefaultPolicy().MaxTokensPerWindow
	ErrorMailWindow = domain.DefaultPolicy().TokenWindow
)

// Delivery is one row of the delivery log.
type Delivery struct {
	EventID   uuid.UUID
	Stream    string
	Revision  uint64
	Kind      string // MailEmailCode, MailResetToken, MailResetError, MailResetNotice, MailPasswordChanged
	Recipient string // "" for MailResetNotice: see RecipientSealed
	// RecipientSealed is a MailResetNotice's typed address, encrypted with the server key
	// (domain.NoticeEmailLabel); the sender opens it at send time.
	RecipientSealed []byte
	// RecipientHash is a keyed hash of the recipient of reset_error and reset_notice
	// mails, by which the intake caps them.
	RecipientHash string
	RetryAt       time.Time // reset_error: when the owner may ask again (zero: at once)
	SecretKind    string    // secret.KindResetToken, secret.KindEmailCode, or ""
	// SecretKeyID and SecretID locate the secret; its value is derived at send time and
	// never stored.
	SecretKeyID string
	SecretID    string
	OccurredAt  time.Time
	ExpiresAt   time.Time // zero when the mail carries no secret
	// Reason is the recorded refusal code for reset_error mails and the method for
	// password_changed mails.
	Reason            string
	State             string
	SkipReason        string
	Attempts          int
	NextAttemptAt     time.Time
	LastError         string
	ProviderMessageID string
	CreatedAt         time.Time
	SentAt            time.Time // zero until sent
}

// DeliveryFor says which mail, if any, an event calls for. It is pure: the projection
// stores what it returns.
func DeliveryFor(rec eventstore.RecordedEvent, ev domain.Event) (Delivery, bool) {
	d := Delivery{EventID: rec.ID, Stream: rec.Stream, Revision: rec.Revision, OccurredAt: rec.OccurredAt}
	at := func(t time.Time) {
		if !t.IsZero() {
			d.OccurredAt = t
		}
	}
	switch e := deref(ev).(type) {
	case domain.RecoveryEmailCodeSent:
		d.Kind, d.Recipient = MailEmailCode, e.Email
		d.SecretKind, d.SecretKeyID, d.SecretID, d.ExpiresAt = secret.KindEmailCode, e.KeyID, e.CodeID, e.ExpiresAt
		at(e.SentAt)
	case domain.ResetTokenIssued:
		d.Kind, d.Recipient = MailResetToken, e.Email
		d.SecretKind, d.SecretKeyID, d.SecretID, d.ExpiresAt = secret.KindResetToken, e.KeyID, e.TokenID, e.ExpiresAt
		at(e.IssuedAt)
	case domain.ResetRequestRejected:
		switch {
		case e.NotifyEmail != "":
			d.Kind, d.Recipient, d.Reason, d.RetryAt = MailResetError, e.NotifyEmail, string(e.Reason), e.RetryAt
			at(e.NotifiedAt)
		case len(e.NoticeEmail) > 0 && e.EmailHash != "":
			// The reason stays out of the row: the mail says the same whatever it was.
			d.Kind, d.RecipientSealed = MailResetNotice, e.NoticeEmail
			at(e.NoticeAt)
		default:
			return Delivery{}, false
		}
		d.RecipientHash = e.EmailHash
	case domain.PasswordChanged:
		if e.NotifyEmail == "" {
			return Delivery{}, false
		}
		d.Kind, d.Recipient, d.Reason = MailPasswordChanged, e.NotifyEmail, e.Method
		at(e.ChangedAt)
	default:
		return Delivery{}, false
	}
	if (d.Recipient == "" && d.RecipientSealed == nil) || (d.SecretKind != "" && (d.SecretID == "" || d.SecretKeyID == "" || d.ExpiresAt.IsZero())) {
		return Delivery{}, false // malformed; nothing sensible to send
	}
	return d, true
}

// deref accepts events decoded as values (the codec's way) or as pointers.
func deref(ev domain.Event) domain.Event {
	switch e := ev.(type) {
	case *domain.RecoveryEmailCodeSent:
		return *e
	case *domain.ResetTokenIssued:
		return *e
	case *domain.ResetRequestRejected:
		return *e
	case *domain.PasswordChanged:
		return *e
	}
	return ev
}

// Execer is what Enqueue writes through: a pgx.Tx (the runner's), a pgx.Conn or a pool.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Projection is the mailer's intake: a consumer of the global feed that queues a delivery
// for every mail-worthy event, in the runner's transaction (which also advances the
// "mailer" checkpoint). It never sends: Sender does, so a slow mail server never holds
// back the feed, and a queued mail survives a crash. It only writes (WritesOnly), so the
// runner sends a batch's statements together: the intake had been the consumer furthest
// behind under load, paying a round trip per statement for every refused request.
type Projection struct {
	clock domain.Clock
}

// NewProjection returns the intake. clock stamps created_at and the first due time;
// nil means the system clock.
func NewProjection(clock domain.Clock) *Projection {
	if clock == nil {
		clock = domain.SystemClock{}
	}
	return &Projection{clock: clock}
}

// Name is the consumer's name.
func (p *Projection) Name() string { return ProjectionName }

// WritesOnly implements projections.WriteOnly: ApplyEvent never reads what it wrote.
func (p *Projection) WritesOnly() {}

// ApplyEvent queues the mail rec calls for, if any. The insert is keyed by event id and
// does nothing on conflict, so replays and competing consumers never queue twice. An
// error mail to a recipient that already had MaxErrorMails of them within
// ErrorMailWindow before it (by event time, so a replay decides alike) is logged as
// skipped (SkipCapped): the INSERT counts them itself, after a transaction-scoped advisory
// lock on the recipient (a statement of its own, so the count's snapshot sees what a
// competing intake committed before it let go).
func (p *Projection) ApplyEvent(ctx context.Context, tx Execer, rec eventstore.RecordedEvent, ev domain.Event) error {
	d, ok := DeliveryFor(rec, ev)
	if !ok {
		return nil
	}
	if d.EventID == uuid.Nil {
		return errors.New("mailer: event without id")
	}
	capped := d.RecipientHash != "" // error mails carry their recipient's hash
	if capped {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('mail-cap:' || $1, 0))`, d.RecipientHash); err != nil {
			return fmt.Errorf("mailer: lock recipient: %w", err)
		}
	}
	_, err := enqueue(ctx, tx, d, p.clock.Now(), capped)
	return err
}

// Enqueue inserts d as a pending delivery due at now (or, when d.State is StateSkipped,
// as skipped for d.SkipReason), unless its event id is already in the log. It reports
// whether a row was inserted.
func Enqueue(ctx context.Context, tx Execer, d Delivery, now time.Time) (bool, error) {
	return enqueue(ctx, tx, d, now, false)
}

// enqueueSQL inserts a delivery and, for a pending one, wakes the senders (delivered on
// commit), in one statement; a row comes back per row inserted (the woke CTE must be
// referenced to run). With $21 true a delivery to a recipient that had $22 error mails
// within the window ($19, $20: its bounds) is stored skipped as capped instead. The
// count repeats the recipient index's predicate (a recipient hash that is not empty), so
// that a generic plan, where $16 is unknown, can still use the index rather than read
// the whole log.
const enqueueSQL = `
	WITH c AS (
		SELECT $21::boolean AND (SELECT count(*) FROM mail_deliveries
			WHERE recipient_hash = $16 AND recipient_hash <> '' AND kind IN ('reset_error', 'reset_notice') AND skip_reason <> $24
			  AND occurred_at > $19 AND occurred_at <= $20 AND event_id <> $1) >= $22 AS capped),
	ins AS (
		INSERT INTO mail_deliveries (event_id, stream, revision, kind, recipient, secret_kind, secret_key_id, secret_id,
			occurred_at, expires_at, reason, state, skip_reason, attempts, next_attempt_at, created_at, updated_at,
			recipient_sealed, recipient_hash, retry_at)
		SELECT $1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, ''), NULLIF($8, ''), $9, $10, $11,
			CASE WHEN c.capped THEN $23 ELSE $13 END, CASE WHEN c.capped THEN $24 ELSE $14 END, 0, $12, $12, $12,
			$15, $16, $17
		FROM c
		ON CONFLICT (event_id) DO NOTHING
		RETURNING state),
	woke AS (SELECT pg_notify($18, '') FROM ins WHERE state = 'pending')
	SELECT (SELECT count(*) FROM woke) FROM ins`

// enqueue is Enqueue, with the cap on error mails when capped is set.
func enqueue(ctx context.Context, tx Execer, d Delivery, now time.Time, capped bool) (bool, error) {
	state := StatePending
	if d.State == StateSkipped {
		state = StateSkipped
	}
	tag, err := tx.Exec(ctx, enqueueSQL,
		d.EventID, d.Stream, int64(d.Revision), d.Kind, d.Recipient, d.SecretKind, d.SecretKeyID, d.SecretID,
		d.OccurredAt, nullTime(d.ExpiresAt), d.Reason, now, state, d.SkipReason, d.RecipientSealed, d.RecipientHash,
		nullTime(d.RetryAt), notifyChannel, d.OccurredAt.Add(-ErrorMailWindow), d.OccurredAt, capped, MaxErrorMails,
		StateSkipped, SkipCapped)
	if err != nil {
		return false, fmt.Errorf("mailer: queue %s mail for event %s: %w", d.Kind, d.EventID, err)
	}
	return tag.RowsAffected() > 0, nil
}

// Querier reads the delivery log: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

const deliveryColumns = `event_id, stream, revision, kind, recipient, coalesce(secret_kind, ''), coalesce(secret_key_id, ''),
	coalesce(secret_id, ''), occurred_at, expires_at, reason, state, skip_reason, attempts, next_attempt_at, last_error,
	provider_message_id, created_at, sent_at, recipient_sealed, recipient_hash, retry_at`

func scanDelivery(row pgx.Row, extra ...any) (Delivery, error) {
	var d Delivery
	var rev int64
	var attempts int32
	var expires, sent, retry *time.Time
	dest := append([]any{&d.EventID, &d.Stream, &rev, &d.Kind, &d.Recipient, &d.SecretKind, &d.SecretKeyID, &d.SecretID,
		&d.OccurredAt, &expires, &d.Reason, &d.State, &d.SkipReason, &attempts, &d.NextAttemptAt, &d.LastError,
		&d.ProviderMessageID, &d.CreatedAt, &sent, &d.RecipientSealed, &d.RecipientHash, &retry}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Delivery{}, err
	}
	d.Revision, d.Attempts = uint64(rev), int(attempts)
	if expires != nil {
		d.ExpiresAt = *expires
	}
	if retry != nil {
		d.RetryAt = *retry
	}
	if sent != nil {
		d.SentAt = *sent
	}
	return d, nil
}

// ErrNoDelivery is returned by LoadDelivery for an event that queued no mail.
var ErrNoDelivery = errors.New("mailer: no delivery for this event")

// LoadDelivery reads the delivery queued for an event (for operators and tests).
func LoadDelivery(ctx context.Context, q Querier, eventID uuid.UUID) (Delivery, error) {
	d, err := scanDelivery(q.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM mail_deliveries WHERE event_id = $1`, eventID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Delivery{}, ErrNoDelivery
	}
	return d, err
}

// ListDeliveries reads the deliveries of a stream in stream order ("" for all, in queue order).
func ListDeliveries(ctx context.Context, q Querier, stream string) ([]Delivery, error) {
	rows, err := q.Query(ctx, `SELECT `+deliveryColumns+` FROM mail_deliveries
		WHERE $1 = '' OR stream = $1 ORDER BY created_at, stream, revision`, stream)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
