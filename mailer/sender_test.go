package mailer_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/mailer"
	"selfreset/projections"
	"selfreset/secret"
)

const (
	stream    = "user-ACME-jane"
	recipient = "jane.doe@example.org"
	publicURL = "https://reset.example.org"
)

var quiet = slog.New(slog.DiscardHandler)

type fixture struct {
	pool   *pgxpool.Pool
	clock  *testkit.Clock
	keys   *secret.Keyring
	srv    *testkit.SMTPServer
	proj   *mailer.Projection
	sender *mailer.Sender
	cfg    mailer.SenderConfig
	rev    map[string]uint64
}

func openPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := mailer.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// newFixture: Postgres with the mailer's tables, an SMTP server, and a sender with
// base 10s / max 80s backoff, 4 attempts and a jitter of exactly 0.5.
func newFixture(t testing.TB, tune ...func(*mailer.SenderConfig)) *fixture {
	t.Helper()
	f := &fixture{pool: openPool(t), clock: newClock(), keys: testkit.Keyring(t, "k1"), srv: new(testkit.SMTPServer).Start(t), rev: map[string]uint64{}}
	f.proj = mailer.NewProjection(f.clock)
	// As many sessions as the default number of senders, as mailer.NewDriver does.
	drv, err := mailer.NewSMTPDriver(mailer.SMTPConfig{Addr: f.srv.Addr, TLS: mailer.TLSNone, Timeout: 5 * time.Second,
		Conns: mailer.DefaultSenders})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	f.cfg = mailer.SenderConfig{Pool: f.pool, Driver: drv, Secrets: f.keys, From: "Self Password Reset <no-reply@reset.example.org>",
		PublicURL: publicURL, RetryBase: 10 * time.Second, RetryMax: 80 * time.Second, MaxAttempts: 4,
		Clock: f.clock, Rand: fixedRand(0.5), Logger: quiet}
	for _, fn := range tune {
		fn(&f.cfg)
	}
	f.sender = f.newSender(t, f.cfg)
	return f
}

func (f *fixture) newSender(t testing.TB, cfg mailer.SenderConfig) *mailer.Sender {
	t.Helper()
	s, err := mailer.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// record makes the next recorded event of a stream.
func (f *fixture) record(s string, ev domain.Event) eventstore.RecordedEvent {
	rev := f.rev[s]
	f.rev[s] = rev + 1
	return eventstore.RecordedEvent{ID: uuid.New(), Type: ev.EventType(), SchemaVersion: 1, Stream: s, Revision: rev,
		OccurredAt: f.clock.Now()}
}

// apply runs the projection on an event in its own transaction, as the runner does.
func (f *fixture) apply(t testing.TB, rec eventstore.RecordedEvent, ev domain.Event) {
	t.Helper()
	ctx := context.Background()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := f.proj.Apply(ctx, tx, projections.Envelope{Record: rec, Event: ev}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) emit(t testing.TB, ev domain.Event) eventstore.RecordedEvent {
	t.Helper()
	rec := f.record(stream, ev)
	f.apply(t, rec, ev)
	return rec
}

// issueToken emits a ResetTokenIssued valid for 5 minutes and returns it with its value.
func (f *fixture) issueToken(t *testing.T) (eventstore.RecordedEvent, string) {
	t.Helper()
	s, err := f.keys.Issue(secret.KindResetToken)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	rec := f.emit(t, domain.ResetTokenIssued{TokenID: s.ID, KeyID: s.KeyID, TokenHash: s.Hash, Email: recipient,
		IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute)})
	v, err := f.keys.Value(secret.KindResetToken, s.KeyID, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	return rec, v
}

func (f *fixture) sendDue(t *testing.T) mailer.Result {
	t.Helper()
	return sendDueWith(t, f.sender)
}

func sendDueWith(t *testing.T, s *mailer.Sender) mailer.Result {
	t.Helper()
	res, err := s.SendDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (f *fixture) delivery(t *testing.T, id uuid.UUID) mailer.Delivery {
	t.Helper()
	d, err := mailer.LoadDelivery(context.Background(), f.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM mail_deliveries`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTokenMailIsDeliveredOverSMTP(t *testing.T) {
	f := newFixture(t)
	rec, token := f.issueToken(t)

	d := f.delivery(t, rec.ID)
	if d.State != mailer.StatePending || d.Kind != mailer.MailResetToken || d.Recipient != recipient || d.SecretKind != secret.KindResetToken ||
		d.SecretKeyID != "k1" || d.Stream != stream || !d.ExpiresAt.Equal(f.clock.Now().Add(5*time.Minute)) || !d.NextAttemptAt.Equal(f.clock.Now()) {
		t.Fatalf("queued %+v", d)
	}
	// The log never holds the token.
	var row string
	if err := f.pool.QueryRow(context.Background(), `SELECT row_to_json(d)::text FROM mail_deliveries d`).Scan(&row); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(row, token) {
		t.Fatalf("the delivery log holds the token: %s", row)
	}

	f.clock.Add(3 * time.Second)
	if res := f.sendDue(t); res.Sent != 1 || res.Claimed != 1 {
		t.Fatalf("result %+v", res)
	}
	inbox := f.srv.Messages()
	if len(inbox) != 1 || inbox[0].To[0] != recipient || inbox[0].From != "no-reply@reset.example.org" {
		t.Fatalf("inbox %+v", inbox)
	}
	m := parseMail(t, inbox[0])
	if got := testkit.AloneOnLine(t, m.Text, testkit.TokenLine); got != token {
		t.Fatalf("mailed token %q, keyring derives %q", got, token)
	}
	if m.Header.Get("Subject") != "Your password token" || m.Header.Get("Date") != "Fri, 27 Nov 2026 09:00:03 +0000" ||
		m.Header.Get("Message-Id") != "<"+rec.ID.String()+"@reset.example.org>" {
		t.Errorf("headers %v", m.Header)
	}
	if !strings.Contains(m.Text, publicURL+"/change-password") || strings.Contains(m.Text, "login=") || !strings.Contains(m.HTML, token) ||
		!strings.Contains(m.Text, "until Fri, 27 Nov 2026 at 09:05 UTC") {
		t.Errorf("bodies:\n%s\n%s", m.Text, m.HTML)
	}

	d = f.delivery(t, rec.ID)
	if d.State != mailer.StateSent || d.Attempts != 1 || d.ProviderMessageID != m.Header.Get("Message-Id") ||
		!d.SentAt.Equal(f.clock.Now()) || d.LastError != "" {
		t.Fatalf("after send %+v", d)
	}
	if res := f.sendDue(t); res.Claimed != 0 || len(f.srv.Messages()) != 1 {
		t.Fatalf("sent again: %+v", res)
	}
}

func TestEveryMailWorthyEvent(t *testing.T) {
	f := newFixture(t)
	code, err := f.keys.Issue(secret.KindEmailCode)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	codeRec := f.emit(t, domain.RecoveryEmailCodeSent{CodeID: code.ID, KeyID: code.KeyID, CodeHash: code.Hash, Email: "new@example.org",
		SentAt: now, ExpiresAt: now.Add(10 * time.Minute)})
	errRec := f.emit(t, domain.ResetRequestRejected{Reason: domain.ReasonAdminLocked, Provider: "ACME", Login: "jane", NotifyEmail: recipient})
	chRec := f.emit(t, domain.PasswordChanged{PasswordHash: "$argon2id$…", Method: domain.PasswordChangedBySelfReset, ChangedAt: now, NotifyEmail: recipient})
	// Not mail-worthy: no one to notify, or nothing to say.
	f.emit(t, domain.ResetRequestRejected{Reason: domain.ReasonIdentifiersMismatch, Provider: "ACME", Login: "jane", EmailMasked: "x***@e***.org"})
	f.emit(t, domain.PasswordChanged{PasswordHash: "$argon2id$…", Method: domain.PasswordChangedBySelfReset, ChangedAt: now})
	f.emit(t, domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1})
	f.emit(t, domain.SelfResetConfigured{Email: recipient})
	f.emit(t, &domain.AccountLocked{FailedAttempts: 5})
	if n := f.count(t); n != 3 {
		t.Fatalf("%d deliveries queued, want 3", n)
	}

	if res := f.sendDue(t); res.Sent != 3 {
		t.Fatalf("result %+v", res)
	}
	bySubject := map[string]testkit.Message{}
	for _, r := range f.srv.Messages() {
		m := parseMail(t, r)
		bySubject[m.Header.Get("Subject")] = m
	}
	codeValue, _ := f.keys.Value(secret.KindEmailCode, code.KeyID, code.ID)
	if m, ok := bySubject["Your Self Password Reset verification code"]; !ok || testkit.AloneOnLine(t, m.Text, testkit.CodeLine) != codeValue ||
		m.Header.Get("To") != "<new@example.org>" {
		t.Errorf("code mail: %+v", m)
	}
	if m, ok := bySubject["Password Reset Error"]; !ok || !strings.Contains(m.Text, "The account has been Admin Locked.") {
		t.Errorf("error mail: %+v", m)
	}
	if m, ok := bySubject["Your password was changed"]; !ok || !strings.Contains(m.Text, "using Self Password Reset") {
		t.Errorf("changed mail: %+v", m)
	}
	for _, id := range []uuid.UUID{codeRec.ID, errRec.ID, chRec.ID} {
		if d := f.delivery(t, id); d.State != mailer.StateSent {
			t.Errorf("%s: %+v", d.Kind, d)
		}
	}
}

func TestTransientFailureIsRetriedWithBackoff(t *testing.T) {
	f := newFixture(t)
	rec, token := f.issueToken(t)
	f.srv.TempFail(2) // greylisted twice, then accepted

	res := f.sendDue(t)
	d := f.delivery(t, rec.ID)
	// 1st retry: base 10s, jitter 0.5 → 5s + 0.5·5s.
	if res.Retried != 1 || d.State != mailer.StatePending || d.Attempts != 1 || !strings.Contains(d.LastError, "451") ||
		!d.NextAttemptAt.Equal(f.clock.Now().Add(7500*time.Millisecond)) {
		t.Fatalf("after the first failure: %+v %+v", res, d)
	}
	if res := f.sendDue(t); res.Claimed != 0 {
		t.Fatalf("retried before it was due: %+v", res)
	}
	f.clock.Add(7500 * time.Millisecond)
	f.sendDue(t)
	d = f.delivery(t, rec.ID)
	// 2nd retry: 20s → 10s + 0.5·10s.
	if d.Attempts != 2 || !d.NextAttemptAt.Equal(f.clock.Now().Add(15*time.Second)) {
		t.Fatalf("after the second failure: %+v", d)
	}
	f.clock.Add(15 * time.Second)
	if res := f.sendDue(t); res.Sent != 1 {
		t.Fatalf("third attempt: %+v", res)
	}
	d = f.delivery(t, rec.ID)
	if d.State != mailer.StateSent || d.Attempts != 3 || d.LastError != "" {
		t.Fatalf("after success: %+v", d)
	}
	inbox := f.srv.Messages()
	if len(inbox) != 1 || testkit.AloneOnLine(t, parseMail(t, inbox[0]).Text, testkit.TokenLine) != token {
		t.Fatalf("inbox %d", len(inbox))
	}
}

func TestPermanentFailureDoesNotHoldUpLaterMail(t *testing.T) {
	f := newFixture(t)
	f.srv.Refuse("gone@example.org", errMailbox)
	bad := f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(), NotifyEmail: "gone@example.org"})
	f.clock.Add(time.Second)
	good := f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(), NotifyEmail: recipient})

	res := f.sendDue(t)
	if res.Failed != 1 || res.Sent != 1 {
		t.Fatalf("result %+v", res)
	}
	if d := f.delivery(t, bad.ID); d.State != mailer.StateFailed || d.Attempts != 1 || !strings.Contains(d.LastError, "550") {
		t.Fatalf("bad address: %+v", d)
	}
	if d := f.delivery(t, good.ID); d.State != mailer.StateSent {
		t.Fatalf("good address: %+v", d)
	}
	if inbox := f.srv.Messages(); len(inbox) != 1 || inbox[0].To[0] != recipient {
		t.Fatalf("inbox %+v", inbox)
	}
	f.clock.Add(time.Hour)
	if res := f.sendDue(t); res.Claimed != 0 {
		t.Fatalf("failed mail retried: %+v", res)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	f := newFixture(t)
	rec := f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(), NotifyEmail: recipient})
	f.srv.TempFail(1000)
	var waits []time.Duration
	for i := 1; i <= 4; i++ {
		res := f.sendDue(t)
		d := f.delivery(t, rec.ID)
		if d.Attempts != i {
			t.Fatalf("attempt %d: %+v %+v", i, res, d)
		}
		if i < 4 {
			wait := d.NextAttemptAt.Sub(f.clock.Now())
			waits = append(waits, wait)
			f.clock.Add(wait)
		} else if d.State != mailer.StateFailed || !strings.Contains(d.LastError, "gave up after 4 attempts") || !strings.Contains(d.LastError, "451") {
			t.Fatalf("after the last attempt: %+v", d)
		}
	}
	// 10s, 20s, 40s, each jittered to ¾.
	if want := []time.Duration{7500 * time.Millisecond, 15 * time.Second, 30 * time.Second}; !equalDurations(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	f.clock.Add(time.Hour)
	if res := f.sendDue(t); res.Claimed != 0 || len(f.srv.Messages()) != 0 {
		t.Fatalf("after giving up: %+v", res)
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBackoff(t *testing.T) {
	pool := openPool(t)
	mk := func(r float64) *mailer.Sender {
		s, err := mailer.NewSender(mailer.SenderConfig{Pool: pool, Driver: mailer.NewConsoleDriver(&bytes.Buffer{}), Secrets: testkit.Keyring(t, "k1"),
			RetryBase: 5 * time.Second, RetryMax: time.Minute, Rand: fixedRand(r), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	lo, hi := mk(0), mk(0.999999)
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}
	for i, full := range want {
		n := i + 1
		if got := lo.Backoff(n); got != full/2 {
			t.Errorf("attempt %d, no jitter: %s, want %s", n, got, full/2)
		}
		if got := hi.Backoff(n); got <= full*99/100 || got > full {
			t.Errorf("attempt %d, most jitter: %s, want just under %s", n, got, full)
		}
	}
	if got := lo.Backoff(1000); got != 30*time.Second {
		t.Errorf("huge attempt count: %s", got)
	}
}

func TestExpiredTokenIsSkipped(t *testing.T) {
	f := newFixture(t)
	rec, _ := f.issueToken(t)
	f.clock.Add(5 * time.Minute) // the token's last instant has passed
	res := f.sendDue(t)
	if res.Skipped != 1 || res.Sent != 0 {
		t.Fatalf("result %+v", res)
	}
	d := f.delivery(t, rec.ID)
	if d.State != mailer.StateSkipped || d.SkipReason != mailer.SkipExpired || d.Attempts != 0 {
		t.Fatalf("%+v", d)
	}
	if n := len(f.srv.Messages()); n != 0 {
		t.Fatalf("%d mails sent", n)
	}
}

func TestTokenExpiringDuringRetriesIsSkipped(t *testing.T) {
	f := newFixture(t, func(c *mailer.SenderConfig) {
		c.RetryBase, c.RetryMax, c.MaxAttempts = 4*time.Minute, 8*time.Minute, 10
	})
	rec, _ := f.issueToken(t)
	f.srv.TempFail(1)
	f.sendDue(t) // retry in 3 minutes
	f.clock.Add(3 * time.Minute)
	f.sendDue(t)
	if d := f.delivery(t, rec.ID); d.State != mailer.StateSent {
		t.Fatalf("%+v", d)
	}

	rec2, _ := f.issueToken(t)
	f.srv.TempFail(1)
	f.sendDue(t) // retry in 3 minutes…
	f.clock.Add(6 * time.Minute)
	f.sendDue(t) // …but the token is gone by then
	if d := f.delivery(t, rec2.ID); d.State != mailer.StateSkipped || d.SkipReason != mailer.SkipExpired || d.Attempts != 1 {
		t.Fatalf("%+v", d)
	}
	if n := len(f.srv.Messages()); n != 1 {
		t.Fatalf("%d mails sent", n)
	}
}

func TestSupersededTokenIsSkipped(t *testing.T) {
	f := newFixture(t)
	old, _ := f.issueToken(t)
	f.emit(t, domain.ResetTokenRejected{Reason: "wrong_token", Attempts: 1})
	f.clock.Add(time.Minute)
	newer, token := f.issueToken(t) // Resend: the old token dies
	// Another user's token is not affected.
	other, _ := f.keys.Issue(secret.KindResetToken)
	otherRec := f.record("user-ACME-john", domain.ResetTokenIssued{})
	f.apply(t, otherRec, domain.ResetTokenIssued{TokenID: other.ID, KeyID: other.KeyID, Email: "john@example.org",
		IssuedAt: f.clock.Now(), ExpiresAt: f.clock.Now().Add(5 * time.Minute)})

	res := f.sendDue(t)
	if res.Skipped != 1 || res.Sent != 2 {
		t.Fatalf("result %+v", res)
	}
	if d := f.delivery(t, old.ID); d.State != mailer.StateSkipped || d.SkipReason != mailer.SkipSuperseded {
		t.Fatalf("old token: %+v", d)
	}
	if d := f.delivery(t, newer.ID); d.State != mailer.StateSent {
		t.Fatalf("new token: %+v", d)
	}
	var mine []string
	for _, r := range f.srv.Messages() {
		if r.To[0] == recipient {
			mine = append(mine, testkit.AloneOnLine(t, parseMail(t, r).Text, testkit.TokenLine))
		}
	}
	if len(mine) != 1 || mine[0] != token {
		t.Fatalf("jane got %q, want only %q", mine, token)
	}
}

func TestReplayQueuesAndSendsOnce(t *testing.T) {
	f := newFixture(t)
	s, _ := f.keys.Issue(secret.KindResetToken)
	ev := domain.ResetTokenIssued{TokenID: s.ID, KeyID: s.KeyID, Email: recipient, IssuedAt: f.clock.Now(), ExpiresAt: f.clock.Now().Add(5 * time.Minute)}
	rec := f.record(stream, ev)
	ch := domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(), NotifyEmail: recipient}
	chRec := f.record(stream, ch)

	f.apply(t, rec, ev)
	f.apply(t, chRec, ch)
	if res := f.sendDue(t); res.Sent != 2 {
		t.Fatalf("result %+v", res)
	}
	// The feed is replayed from the start (rebuild, lost checkpoint, a second consumer).
	f.clock.Add(time.Second)
	f.apply(t, rec, ev)
	f.apply(t, chRec, ch)
	if n := f.count(t); n != 2 {
		t.Fatalf("%d deliveries after the replay, want 2", n)
	}
	if res := f.sendDue(t); res.Claimed != 0 {
		t.Fatalf("second SendDue: %+v", res)
	}
	if n := len(f.srv.Messages()); n != 2 {
		t.Fatalf("%d mails, want 2", n)
	}
	if d := f.delivery(t, rec.ID); !d.CreatedAt.Equal(f.clock.Now().Add(-time.Second)) {
		t.Fatalf("the replay rewrote the row: %+v", d)
	}
}

func TestUnknownKeyFailsWithoutRetry(t *testing.T) {
	f := newFixture(t)
	rec := f.emit(t, domain.ResetTokenIssued{TokenID: "abc", KeyID: "retired", Email: recipient, IssuedAt: f.clock.Now(),
		ExpiresAt: f.clock.Now().Add(5 * time.Minute)})
	if res := f.sendDue(t); res.Failed != 1 {
		t.Fatalf("result %+v", res)
	}
	if d := f.delivery(t, rec.ID); d.State != mailer.StateFailed || !strings.Contains(d.LastError, "unknown key") {
		t.Fatalf("%+v", d)
	}
}

func TestCompetingSendersSendEachMailOnce(t *testing.T) {
	f := newFixture(t, func(c *mailer.SenderConfig) { c.BatchSize = 3 })
	const n = 30
	for i := range n {
		f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(),
			NotifyEmail: "user" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@example.org"})
	}
	senders := []*mailer.Sender{f.sender, f.newSender(t, f.cfg), f.newSender(t, f.cfg), f.newSender(t, f.cfg)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := mailer.Result{}
	for _, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				res, err := s.SendDue(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total.Sent += res.Sent
				total.Lost += res.Lost
				mu.Unlock()
				if res.Claimed == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, r := range f.srv.Messages() {
		seen[r.To[0]]++
	}
	if total.Sent != n || total.Lost != 0 || len(seen) != n {
		t.Fatalf("sent %d, lost %d, %d distinct recipients; want %d", total.Sent, total.Lost, len(seen), n)
	}
	for to, c := range seen {
		if c != 1 {
			t.Errorf("%s got %d mails", to, c)
		}
	}
}

// crashingDriver lets a test act in the middle of a send.
type hookDriver struct {
	mailer.Driver
	during func()
}

func (h *hookDriver) Send(ctx context.Context, m mailer.Message) (string, error) {
	id, err := h.Driver.Send(ctx, m)
	if h.during != nil {
		fn := h.during
		h.during = nil
		fn()
	}
	return id, err
}

// TestAtLeastOnceAfterALostLease shows the documented edge: a sender that stalls (or
// dies) after the server accepted a mail but before recording it loses its lease, and
// the mail goes out once more, with the same Message-ID.
func TestAtLeastOnceAfterALostLease(t *testing.T) {
	f := newFixture(t, func(c *mailer.SenderConfig) { c.Lease, c.SendTimeout = 2*time.Minute, time.Minute })
	rec := f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(), NotifyEmail: recipient})

	second := f.newSender(t, f.cfg)
	var secondRes mailer.Result
	cfg := f.cfg
	cfg.Driver = &hookDriver{Driver: f.cfg.Driver, during: func() {
		// The first sender has handed the mail over and stalls past its lease…
		f.clock.Add(2*time.Minute + time.Second)
		// …so another replica takes the delivery and sends it too.
		secondRes = sendDueWith(t, second)
	}}
	first := f.newSender(t, cfg)
	res := sendDueWith(t, first)
	if res.Lost != 1 || secondRes.Sent != 1 {
		t.Fatalf("first %+v, second %+v", res, secondRes)
	}
	d := f.delivery(t, rec.ID)
	if d.State != mailer.StateSent || d.Attempts != 2 {
		t.Fatalf("%+v", d)
	}
	inbox := f.srv.Messages()
	if len(inbox) != 2 {
		t.Fatalf("%d mails, want 2 (at least once)", len(inbox))
	}
	if a, b := parseMail(t, inbox[0]).Header.Get("Message-Id"), parseMail(t, inbox[1]).Header.Get("Message-Id"); a != b {
		t.Fatalf("Message-IDs differ: %s %s", a, b)
	}
}

// A sender that died after claiming leaves the row pending; once the lease runs out the
// mail is sent. Nothing is lost.
func TestClaimedButNeverFinishedIsRetriedAfterTheLease(t *testing.T) {
	f := newFixture(t, func(c *mailer.SenderConfig) { c.Lease, c.SendTimeout = 2*time.Minute, time.Minute })
	rec := f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(), NotifyEmail: recipient})
	ctx := context.Background()
	// What a claim writes, as if the process died right after it.
	if _, err := f.pool.Exec(ctx, `UPDATE mail_deliveries SET attempts = 1, next_attempt_at = $2 WHERE event_id = $1`,
		rec.ID, f.clock.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if res := f.sendDue(t); res.Claimed != 0 {
		t.Fatalf("took a leased delivery: %+v", res)
	}
	f.clock.Add(2 * time.Minute)
	if res := f.sendDue(t); res.Sent != 1 {
		t.Fatalf("after the lease: %+v", res)
	}
	if d := f.delivery(t, rec.ID); d.State != mailer.StateSent || d.Attempts != 2 {
		t.Fatalf("%+v", d)
	}
}

func TestRunSendsUntilCancelled(t *testing.T) {
	f := newFixture(t, func(c *mailer.SenderConfig) { c.PollInterval = 20 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.sender.Run(ctx) }()
	rec, _ := f.issueToken(t)
	deadline := time.Now().Add(10 * time.Second)
	for f.delivery(t, rec.ID).State != mailer.StateSent {
		if time.Now().After(deadline) {
			t.Fatal("Run did not send the mail")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := mailer.Migrate(ctx, pool); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mailer_migrations`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d migrations recorded (%v)", n, err)
	}
}

func TestNewSenderChecksItsConfiguration(t *testing.T) {
	pool := openPool(t)
	ok := mailer.SenderConfig{Pool: pool, Driver: mailer.NewConsoleDriver(&bytes.Buffer{}), Secrets: testkit.Keyring(t, "k1")}
	if _, err := mailer.NewSender(ok); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*mailer.SenderConfig){
		"no driver":           func(c *mailer.SenderConfig) { c.Driver = nil },
		"no secrets":          func(c *mailer.SenderConfig) { c.Secrets = nil },
		"lease below timeout": func(c *mailer.SenderConfig) { c.Lease, c.SendTimeout = time.Minute, 2*time.Minute },
		"max below base":      func(c *mailer.SenderConfig) { c.RetryBase, c.RetryMax = time.Minute, time.Second },
		"relative public URL": func(c *mailer.SenderConfig) { c.PublicURL = "reset.example.org" },
	} {
		c := ok
		mut(&c)
		if _, err := mailer.NewSender(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Shutting down mid-batch records what was sent and hands back what was not attempted
// (one sender: the second mail is not in flight when the first is done).
func TestShutdownReleasesUnattemptedClaims(t *testing.T) {
	f := newFixture(t, func(c *mailer.SenderConfig) { c.Senders = 1 })
	first := f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(), NotifyEmail: recipient})
	f.clock.Add(time.Second)
	second := f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(), NotifyEmail: "john@example.org"})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := f.cfg
	cfg.Driver = &hookDriver{Driver: f.cfg.Driver, during: cancel}
	s := f.newSender(t, cfg)
	res, err := s.SendDue(ctx)
	if err == nil || res.Sent != 1 {
		t.Fatalf("result %+v, err %v", res, err)
	}
	if d := f.delivery(t, first.ID); d.State != mailer.StateSent {
		t.Fatalf("first: %+v", d)
	}
	if d := f.delivery(t, second.ID); d.State != mailer.StatePending || d.Attempts != 0 || !d.NextAttemptAt.Equal(f.clock.Now()) {
		t.Fatalf("second: %+v", d)
	}
	if res := f.sendDue(t); res.Sent != 1 || len(f.srv.Messages()) != 2 {
		t.Fatalf("after restart: %+v", res)
	}
}

// A claimed batch is leased in one statement, whatever its size, and every mail of it
// still carries its own attempt (the fencing token of its outcome).
func TestAClaimedBatchIsLeasedInOneStatement(t *testing.T) {
	testABatchTakesOneStatement(t, "attempts = attempts + 1")
}

// TestABatchsSentMailsAreRecordedInOneStatement: the mails of a batch the server accepted
// are marked sent together, in one statement and one commit.
func TestABatchsSentMailsAreRecordedInOneStatement(t *testing.T) {
	testABatchTakesOneStatement(t, "SET state = 'sent'")
}

// testABatchTakesOneStatement sends a batch of n mails and checks that one statement
// containing what did its part for all of them.
func testABatchTakesOneStatement(t *testing.T, what string) {
	const n = 6
	f := newFixture(t, func(c *mailer.SenderConfig) { c.BatchSize = n })
	trips := &testkit.Trips{Keep: func(_ *pgx.Conn, sql string) bool { return strings.Contains(sql, what) }}
	pool := testkit.TracedPool(t, f.pool, trips)
	var ids []uuid.UUID
	for i := range n {
		rec := f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(),
			NotifyEmail: "user" + string(rune('a'+i)) + "@example.org"})
		ids = append(ids, rec.ID)
	}
	counted := f.cfg
	counted.Pool = pool
	res, err := f.newSender(t, counted).SendDue(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Claimed != n || res.Sent != n {
		t.Fatalf("result %+v, want %d claimed and sent", res, n)
	}
	if statements, _ := trips.Take(); statements != 1 {
		t.Errorf("%d statements with %q for a batch of %d, want 1", statements, what, n)
	}
	for _, id := range ids {
		if d := f.delivery(t, id); d.State != mailer.StateSent || d.Attempts != 1 {
			t.Errorf("delivery %s: state %s after %d attempts, want sent after 1", id, d.State, d.Attempts)
		}
	}
}
