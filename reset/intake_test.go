package reset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/internal/teststore"
	"selfreset/secret"
)

type fixture struct {
	t     *testing.T
	ctx   context.Context
	store *postgres.Store
	clock *testkit.Clock
	keys  *secret.Keyring
	cmds  *commands.Handler
	svc   *Service
	bus   *Bus
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, store.Pool()); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ctx: ctx, store: store, clock: testkit.NewClock(time.Date(2030, 1, 2, 9, 0, 0, 0, time.UTC)), keys: testkit.Keyring(t, "k1")}
	f.cmds = testkit.Handler(t, store, f.clock, f.keys)
	if f.bus, err = NewBus(store.Pool(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.bus.Close)
	if f.svc, err = New(Config{Commands: f.cmds, Keyring: f.keys, Clock: f.clock, Intake: f.bus}); err != nil {
		t.Fatal(err)
	}
	f.seed()
	return f
}

// seed opens ACME with jane configured (recovery email jane@example.org).
func (f *fixture) seed() {
	f.t.Helper()
	sys := domain.SystemActor("test")
	must := func(err error) {
		f.t.Helper()
		if err != nil {
			f.t.Fatal(err)
		}
	}
	must(f.cmds.RegisterProvider(f.ctx, commands.RegisterProvider{Actor: sys, Code: "ACME", Name: "Acme", AllowSelfReset: true}))
	must(f.cmds.RegisterUser(f.ctx, commands.RegisterUser{Actor: sys, Provider: "ACME", Login: "jane", DisplayName: "Jane", Password: "Jane-pass-8812"}))
	must(f.cmds.EnableSelfReset(f.ctx, commands.UserCommand{Actor: sys, Provider: "ACME", Login: "jane"}))
	self := commands.SelfUser{Provider: "ACME", Login: "jane"}
	codeID, err := f.cmds.StartEmailVerification(f.ctx, commands.StartEmailVerification{SelfUser: self, Email: "jane@example.org"})
	must(err)
	code, err := f.keys.Value(secret.KindEmailCode, "k1", codeID)
	must(err)
	must(f.cmds.VerifyEmailCode(f.ctx, commands.VerifyEmailCode{SelfUser: self, Code: code}))
	must(f.cmds.ConfigureSelfReset(f.ctx, commands.ConfigureSelfReset{SelfUser: self}))
}

// runWorker runs a worker over cmds until the test ends.
func (f *fixture) runWorker(cmds Commands, concurrency int) {
	f.t.Helper()
	w, err := NewWorker(f.ctx, WorkerConfig{Pool: f.store.Pool(), Commands: cmds, Keyring: f.keys, Concurrency: concurrency, PollInterval: 5 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	f.t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			f.t.Error(err)
		}
	})
	<-w.Running()
}

func (f *fixture) drain() {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := Pending(f.ctx, f.store.Pool())
		if err != nil {
			f.t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d commands still queued", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) stream(name string) []eventstore.RecordedEvent {
	f.t.Helper()
	recs, err := f.store.ReadStream(f.ctx, name, 0)
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		f.t.Fatal(err)
	}
	return recs
}

// unmatched reads every unmatched-requests shard, in feed order.
func (f *fixture) unmatched() []eventstore.RecordedEvent {
	f.t.Helper()
	recs, err := teststore.ReadUnmatched(f.ctx, f.store)
	if err != nil {
		f.t.Fatal(err)
	}
	return recs
}

func count(recs []eventstore.RecordedEvent, typ string) int {
	n := 0
	for _, r := range recs {
		if r.Type == typ {
			n++
		}
	}
	return n
}

// The queued message holds no email in clear, carries the request metadata, and the
// worker's decision carries it on to the event.
func TestRequestIsQueuedSealedAndDecidedWithItsMetadata(t *testing.T) {
	f := newFixture(t)
	ctx := commands.WithMetadata(f.ctx, eventstore.Metadata{CorrelationID: "req-1", ClientIP: "192.0.2.7", UserAgent: "test-agent"})
	a, err := f.svc.RequestReset(ctx, "acme", "Jane", "Jane@Example.org")
	if err != nil {
		t.Fatal(err)
	}
	if a.ResetID == "" || a.ExpiresIn != f.cmds.Policy().ResetTokenTTL {
		t.Fatalf("accepted %+v", a)
	}
	var payload, meta string
	if err := f.store.Pool().QueryRow(f.ctx, `SELECT payload::text, metadata::text FROM reset_intake_request`).Scan(&payload, &meta); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(payload+meta), "example.org") {
		t.Errorf("the email is readable in the queue: %s %s", payload, meta)
	}
	if !strings.Contains(meta, "req-1") || !strings.Contains(meta, "192.0.2.7") {
		t.Errorf("metadata not carried: %s", meta)
	}
	if drained, err := Drained(f.ctx, f.store.Pool()); err != nil || drained {
		t.Errorf("Drained with a command queued = %v, %v; want false", drained, err)
	}
	f.runWorker(f.cmds, 2)
	f.drain()
	if drained, err := Drained(f.ctx, f.store.Pool()); err != nil || !drained {
		t.Errorf("Drained once decided = %v, %v; want true", drained, err)
	}
	recs := f.stream(domain.UserStream("ACME", "jane"))
	last := recs[len(recs)-1]
	if last.Type != "ResetTokenIssued" || last.Metadata.CorrelationID != "req-1" || last.Metadata.ClientIP != "192.0.2.7" || last.Metadata.UserAgent != "test-agent" {
		t.Errorf("last event %s with metadata %+v", last.Type, last.Metadata)
	}
}

// A message delivered twice (a worker died after appending, before the ack) is decided
// once: on the account's stream and on the unmatched stream alike.
func TestRedeliveryIsANoOp(t *testing.T) {
	f := newFixture(t)
	w, err := NewWorker(f.ctx, WorkerConfig{Pool: f.store.Pool(), Commands: f.cmds, Keyring: f.keys, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.pool.Close)
	deliver := func(cmd *RequestToken, msgID string) error {
		t.Helper()
		raw, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		msg := message.NewMessage(msgID, raw)
		msg.Metadata.Set(metaCorrelation, "corr-"+msgID[:8])
		return w.handleRequest(cqrs.CtxWithOriginalMessage(f.ctx, msg), cmd)
	}
	sealed := func(email string) []byte {
		b, err := f.keys.Encrypt(emailLabel, []byte(email))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	matched := &RequestToken{Provider: "ACME", Login: "jane", SealedEmail: sealed("jane@example.org")}
	ghost := &RequestToken{Provider: "ACME", Login: "ghost", SealedEmail: sealed("ghost@example.org")}
	id1, id2 := uuid.NewString(), uuid.NewString()
	for range 3 { // the first delivery and two redeliveries of each
		if err := deliver(matched, id1); err != nil {
			t.Fatal(err)
		}
		if err := deliver(ghost, id2); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(f.stream(domain.UserStream("ACME", "jane")), "ResetTokenIssued"); n != 1 {
		t.Errorf("matched request: %d tokens issued, want 1", n)
	}
	if n := count(f.unmatched(), "ResetRequestRejected"); n != 1 {
		t.Errorf("unmatched request: %d rejections recorded, want 1", n)
	}
	// A different message for the same account is a new decision.
	if err := deliver(matched, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	if n := count(f.stream(domain.UserStream("ACME", "jane")), "ResetTokenIssued"); n != 2 {
		t.Errorf("after a second request: %d tokens issued, want 2", n)
	}
}

// failing fails RequestResetToken the first n times (a store briefly down), then works.
type failing struct {
	Commands
	mu sync.Mutex
	n  int
}

func (c *failing) RequestResetToken(ctx context.Context, r commands.RequestResetToken) (string, error) {
	c.mu.Lock()
	fail := c.n > 0
	c.n--
	c.mu.Unlock()
	if fail {
		return "", errors.New("store unreachable")
	}
	return c.Commands.RequestResetToken(ctx, r)
}

// Transient failures are retried, never dropped; many requests for one account at once
// all reach their decision.
func TestTransientFailuresAndContentionLoseNothing(t *testing.T) {
	f := newFixture(t)
	f.runWorker(&failing{Commands: f.cmds, n: 8}, 8)
	const n = 30
	for i := range n {
		email := "jane@example.org"
		if i%2 == 1 {
			email = "someone@example.org" // a refusal is a decision too
		}
		if _, err := f.svc.RequestReset(f.ctx, "ACME", "jane", email); err != nil {
			t.Fatal(err)
		}
	}
	f.drain()
	recs := f.stream(domain.UserStream("ACME", "jane"))
	if got := count(recs, "ResetTokenIssued") + count(recs, "ResetRequestRejected"); got != n {
		t.Errorf("%d decisions for %d accepted requests", got, n)
	}
}

// stuckOn fails every RequestResetToken for one login (a command that cannot be decided
// yet) and passes the others through.
type stuckOn struct {
	Commands
	login string
}

func (c stuckOn) RequestResetToken(ctx context.Context, r commands.RequestResetToken) (string, error) {
	if r.Login == c.login {
		return "", errors.New("store unreachable for this account")
	}
	return c.Commands.RequestResetToken(ctx, r)
}

// A subscriber claims claimBatch rows at once. When one of them cannot be decided within
// the ack deadline, the subscriber gives the batch back: it deletes the rows decided
// before it and leaves the rest queued (watermill-sql's own ack would delete them all),
// and the next worker decides them.
func TestAStuckCommandGivesTheRestOfItsBatchBack(t *testing.T) {
	f := newFixture(t)
	logins := []string{"jane", "stuck"} // one batch, in this order
	for i := len(logins); i < claimBatch; i++ {
		logins = append(logins, fmt.Sprintf("ghost%d", i))
	}
	for _, l := range logins {
		if _, err := f.svc.RequestReset(f.ctx, "ACME", l, l+"@example.org"); err != nil { // jane's address matches
			t.Fatal(err)
		}
	}
	w, err := NewWorker(f.ctx, WorkerConfig{Pool: f.store.Pool(), Commands: stuckOn{Commands: f.cmds, login: "stuck"},
		Keyring: f.keys, Concurrency: 1, PollInterval: 5 * time.Millisecond, ackDeadline: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	// With one subscriber the stuck row stays first in every claim: once the deadline has
	// given a batch back, only jane's row may be gone.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := Pending(f.ctx, f.store.Pool())
		if err != nil {
			t.Fatal(err)
		}
		if n < len(logins) {
			if n != len(logins)-1 {
				t.Fatalf("%d commands left queued, want the %d undecided ones", n, len(logins)-1)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch was never given back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := count(f.stream(domain.UserStream("ACME", "jane")), "ResetTokenIssued"); n != 1 {
		t.Errorf("jane: %d tokens, want 1", n)
	}
	if n := count(f.unmatched(), "ResetRequestRejected"); n != 0 {
		t.Fatalf("%d rows behind the stuck one decided, want 0", n)
	}
	f.runWorker(f.cmds, 1)
	f.drain()
	if n := count(f.unmatched(), "ResetRequestRejected"); n != len(logins)-1 {
		t.Errorf("after the restart %d unmatched refusals, want %d (stuck and the ghosts)", n, len(logins)-1)
	}
}

func TestResendAndCompleteAnswers(t *testing.T) {
	f := newFixture(t)
	f.runWorker(f.cmds, 2)
	if _, err := f.svc.ResendReset(f.ctx, "not-a-reset-id"); !errors.Is(err, ErrNotFound) {
		t.Errorf("resend of garbage: %v", err)
	}
	a, err := f.svc.RequestReset(f.ctx, "ACME", "jane", "jane@example.org")
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := f.svc.RequestReset(f.ctx, "ACME", "jane", "other@example.org")
	if err != nil {
		t.Fatal(err)
	}
	f.drain()
	if _, err := f.svc.CompleteReset(f.ctx, a.ResetID, "x", "New-pass-55123", "New-pass-55124"); !errors.Is(err, ErrPasswordMismatch) {
		t.Errorf("mismatch: %v", err)
	}
	// Wrong token on the matched request and any token on the wrong-email one: the same
	// answer; the second is recorded on the unmatched stream.
	for _, id := range []string{a.ResetID, wrong.ResetID} {
		if _, err := f.svc.CompleteReset(f.ctx, id, "AAAAAAAAAA", "New-pass-55123", "New-pass-55123"); !errors.Is(err, domain.ErrInvalidToken) {
			t.Errorf("wrong token: %v", err)
		}
	}
	unmatched := f.unmatched()
	if len(unmatched) == 0 || unmatched[len(unmatched)-1].Type != "ResetTokenRejected" {
		t.Errorf("the unmatched try was not recorded: %d events", len(unmatched))
	}
	// Resend hands out a fresh id; after the lifetime it answers ErrResendExpired.
	next, err := f.svc.ResendReset(f.ctx, a.ResetID)
	if err != nil || next.ResetID == "" {
		t.Fatalf("resend: %+v %v", next, err)
	}
	f.drain()
	u, err := f.cmds.LoadUser(f.ctx, "ACME", "jane")
	if err != nil {
		t.Fatal(err)
	}
	token, err := f.keys.Value(secret.KindResetToken, u.Token.KeyID, u.Token.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ref, err := f.svc.CompleteReset(f.ctx, next.ResetID, token, "New-pass-55123", "New-pass-55123"); err != nil || ref.Login != "jane" {
		t.Fatalf("complete with the resent token: %+v %v", ref, err)
	}
	f.clock.Add(f.svc.TokenTTL())
	if _, err := f.svc.ResendReset(f.ctx, next.ResetID); !errors.Is(err, ErrResendExpired) {
		t.Errorf("resend after expiry: %v", err)
	}
}

// redeliveryOf records whether each RequestResetToken came marked redelivered.
type redeliveryOf struct {
	Commands
	marks chan bool
}

func (c redeliveryOf) RequestResetToken(ctx context.Context, r commands.RequestResetToken) (string, error) {
	select {
	case c.marks <- eventstore.Redelivered(ctx):
	default: // the test reads the first call's
	}
	return c.Commands.RequestResetToken(ctx, r)
}

// A queued decision may commit without waiting for its flush only when the queue shares
// the event store's log (WorkerConfig.SharedLog): its acknowledgement follows it there.
func TestDecisionsAreMarkedRedeliveredOnlyWithASharedLog(t *testing.T) {
	f := newFixture(t)
	for _, shared := range []bool{false, true} {
		cmds := redeliveryOf{Commands: f.cmds, marks: make(chan bool, 1)}
		w, err := NewWorker(f.ctx, WorkerConfig{Pool: f.store.Pool(), Commands: cmds, Keyring: f.keys, Concurrency: 1, SharedLog: shared})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.pool.Close)
		sealed, err := f.keys.Encrypt(emailLabel, []byte("jane@example.org"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := &RequestToken{Provider: "ACME", Login: "jane", SealedEmail: sealed}
		raw, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.handleRequest(cqrs.CtxWithOriginalMessage(f.ctx, message.NewMessage(uuid.NewString(), raw)), cmd); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-cmds.marks:
			if got != shared {
				t.Errorf("SharedLog %v: the decision's context marked redelivered = %v", shared, got)
			}
		default:
			t.Fatalf("SharedLog %v: the command was not decided", shared)
		}
	}
}
