package mailer_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/internal/teststore"
	"selfreset/mailer"
	"selfreset/projections"
	"selfreset/reset"
	"selfreset/secret"
)

// world is the whole service minus HTTP: the write side on the event store, the mailer's
// intake and sender, and a real SMTP server.
//
// The event store is Postgres (in the test's database, next to the mailer's tables) or,
// with SELFRESET_EVENTSTORE_URL set, the shared EventStoreDB (internal/teststore), whose
// feed also holds other tests' events and those of earlier runs. The world works in a
// provider of its own (code) and feeds the mailer only that provider's events: the others'
// mail is not this test's to send.
type world struct {
	h      *commands.Handler
	store  eventstore.Store
	pool   *pgxpool.Pool // the test's database: the mailer's (and the runner's) tables
	code   string        // the provider: "ACME" on Postgres, "ACME<random>" on EventStoreDB
	clock  *testkit.Clock
	srv    *testkit.SMTPServer
	proj   *mailer.Projection
	sender *mailer.Sender
	seen   int // inbox messages already returned by newMail
	keys   *secret.Keyring
	resets *reset.Service // Change Password through the reset protocol (its intake unused)
}

// noIntake stands in for the reset intake: these tests run the commands directly.
type noIntake struct{}

func (noIntake) Send(context.Context, any) error { return errors.New("no intake in this test") }

// linkedResetID is the reset id of the Change Password link in a token mail's text.
func linkedResetID(t *testing.T, text string) string {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(publicURL+"/change-password/") + `([A-Za-z0-9_-]+)\r?\n`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no Change Password link with a reset id:\n%s", text)
	}
	return m[1]
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	dbURL := testdb.New(t)
	store := teststore.New(t, dbURL)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	w := &world{store: store, pool: pool, code: teststore.ProviderCode(t, "ACME"), clock: newClock(),
		srv: new(testkit.SMTPServer).Start(t)}
	if err := mailer.Migrate(ctx, w.pool); err != nil {
		t.Fatal(err)
	}
	keys := testkit.Keyring(t, "k1")
	w.h = testkit.Handler(t, store, w.clock, keys)

	// Wired the way cmd/selfreset wires it.
	cfg := mailer.Config{Driver: mailer.DriverSMTP, SMTP: mailer.SMTPConfig{Addr: w.srv.Addr, TLS: mailer.TLSNone},
		From: "Self Password Reset <no-reply@reset.example.org>", PublicURL: publicURL}
	drv, err := mailer.NewDriver(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := mailer.SenderConfigFrom(cfg, w.pool, drv, keys)
	sc.Clock, sc.Logger = w.clock, quiet
	sc.Paths.ResetLink = func(provider, login, email string, issuedAt time.Time) string {
		return reset.LinkID(keys, provider, login, email, issuedAt)
	}
	w.keys = keys
	if w.resets, err = reset.New(reset.Config{Commands: w.h, Keyring: keys, Clock: w.clock, Intake: noIntake{}}); err != nil {
		t.Fatal(err)
	}
	if w.sender, err = mailer.NewSender(sc); err != nil {
		t.Fatal(err)
	}
	w.proj = mailer.NewProjection(w.clock)
	return w
}

func (w *world) must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newMail runs SendDue and returns the messages that arrived since the last call.
func (w *world) newMail(t *testing.T) []testkit.Message {
	t.Helper()
	if _, err := w.sender.SendDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	inbox := w.srv.Messages()
	var out []testkit.Message
	for _, r := range inbox[w.seen:] {
		out = append(out, parseMail(t, r))
	}
	w.seen = len(inbox)
	return out
}

func subjects(mails []testkit.Message) []string {
	var s []string
	for _, m := range mails {
		s = append(s, m.Header.Get("Subject"))
	}
	return s
}

// setUp registers the provider with an admin and jane, and enables jane.
func (w *world) setUp(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	operator := domain.SystemActor("test")
	w.must(t, w.h.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: w.code, Name: "Acme Care", AllowSelfReset: true}))
	w.must(t, w.h.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: w.code, Login: "admin", DisplayName: "Admin",
		Password: "admin-password-1", Roles: []string{domain.RoleUserAdmin}}))
	w.must(t, w.h.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: w.code, Login: "jane", DisplayName: "Jane Doe",
		Password: "correct horse battery"}))
	w.must(t, w.h.EnableSelfReset(ctx, commands.UserCommand{Actor: w.admin(), Provider: w.code, Login: "jane"}))
}

// admin is the provider's user admin.
func (w *world) admin() domain.Actor { return domain.Actor{Provider: w.code, Login: "admin"} }

// own reports whether r is an event of this world's provider.
func (w *world) own(r eventstore.RecordedEvent) bool { return teststore.EventProvider(r) == w.code }

// lastOwn is the position of the newest event of this world's streams (Start when none):
// the feed must reach it before everything the test did can have been applied.
func (w *world) lastOwn(t *testing.T) eventstore.Position {
	t.Helper()
	last := eventstore.Start
	for _, stream := range []string{domain.ProviderStream(w.code), domain.UserStream(w.code, "admin"), domain.UserStream(w.code, "jane")} {
		recs, err := w.store.ReadStream(context.Background(), stream, 0)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		p := recs[len(recs)-1].Position
		if p == eventstore.Start {
			t.Fatalf("ReadStream(%s) gave no position (the contract suite requires one)", stream)
		}
		if last.Less(p) {
			last = p
		}
	}
	return last
}

// ownOnly passes a projection this world's events only.
type ownOnly struct {
	projections.Projection
	w *world
}

func (o ownOnly) Apply(ctx context.Context, tx pgx.Tx, e projections.Envelope) error {
	if !o.w.own(e.Record) {
		return nil
	}
	return o.Projection.Apply(ctx, tx, e)
}

// TestFullPath walks the seed through the write side, the feed, the mailer and a real
// SMTP server: the user learns the code and the token only from the mail. The feed is
// applied here one transaction per event, as the runner does (this world's events only:
// see world).
func TestFullPath(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	codec := w.h.Codec()
	var checkpoint eventstore.Position
	deliver := func() []testkit.Message {
		t.Helper()
		// The feed shows a commit once no older append is still open (see
		// eventstore/postgres), so wait until it reaches this world's newest event.
		target := w.lastOwn(t)
		deadline := time.Now().Add(10 * time.Second)
		for checkpoint.Less(target) {
			recs, err := w.store.ReadAll(ctx, checkpoint, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the feed stays at %s, short of %s", checkpoint, target)
				}
				time.Sleep(5 * time.Millisecond)
				continue
			}
			for _, r := range recs {
				if !w.own(r) {
					if !teststore.Shared() {
						t.Fatalf("%s of %s is not this test's, on a private event store", r.Type, r.Stream)
					}
					checkpoint = r.Position
					continue
				}
				v, err := codec.DecodeRecorded(r)
				if err != nil {
					t.Fatal(err)
				}
				tx, err := w.pool.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.proj.Apply(ctx, tx, projections.Envelope{Record: r, Event: v}); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				checkpoint = r.Position
			}
		}
		return w.newMail(t)
	}
	one := func(subject string) testkit.Message {
		t.Helper()
		mails := deliver()
		if len(mails) != 1 || mails[0].Header.Get("Subject") != subject {
			t.Fatalf("mails %q, want one %q", subjects(mails), subject)
		}
		return mails[0]
	}
	w.setUp(t)

	// Configure: the 6-digit code arrives by mail.
	self := commands.SelfUser{Provider: w.code, Login: "jane"}
	w.must(t, w.h.VerifyPasswordForSettings(ctx, commands.VerifyPasswordForSettings{Provider: w.code, Login: "jane", Password: "correct horse battery"}))
	_, err := w.h.StartEmailVerification(ctx, commands.StartEmailVerification{SelfUser: self, Email: recipient})
	w.must(t, err)
	w.clock.Add(time.Second)
	code := testkit.AloneOnLine(t, one("Your Self Password Reset verification code").Text, testkit.CodeLine)
	w.must(t, w.h.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: self, Code: code}))
	w.must(t, w.h.ConfigureSelfReset(ctx, commands.ConfigureSelfReset{SelfUser: self}))
	if mails := deliver(); len(mails) != 0 {
		t.Fatalf("unexpected mail after configuring: %q", subjects(mails))
	}

	// Forgot Password?: the token arrives by mail and resets the password.
	_, err = w.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: w.code, Login: "jane", Email: recipient})
	w.must(t, err)
	w.clock.Add(time.Second)
	m := one("Your password token")
	token := testkit.AloneOnLine(t, m.Text, testkit.TokenLine)
	// The link opens this request's Change Password page from anywhere: the reset id in
	// it reaches the token, and shows neither login nor provider.
	linkID := linkedResetID(t, m.Text)
	if strings.Contains(linkID, "jane") || strings.Contains(linkID, w.code) {
		t.Errorf("readable reset id in the link %q", linkID)
	}
	w.clock.Add(2 * time.Minute)
	_, err = w.resets.CompleteReset(ctx, linkID, token, "staple-gun-wizard-42", "staple-gun-wizard-42")
	w.must(t, err)
	if _, err := w.h.Login(ctx, commands.Login{Provider: w.code, Login: "jane", Password: "staple-gun-wizard-42"}); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
	if !strings.Contains(one("Your password was changed").Text, "using Self Password Reset") {
		t.Error("password-changed mail")
	}

	// A refused request tells the owner why, in the seed's words.
	w.must(t, w.h.AdminLock(ctx, commands.UserCommand{Actor: w.admin(), Provider: w.code, Login: "jane"}))
	if _, err := w.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: w.code, Login: "jane", Email: recipient}); !errors.Is(err, domain.ErrAdminLocked) {
		t.Fatalf("request while admin locked: %v", err)
	}
	if m := one("Password Reset Error"); !strings.Contains(m.Text, "The account has been Admin Locked.") {
		t.Errorf("error mail:\n%s", m.Text)
	}

	// A wrong email: the typed address gets the fixed text listing the seed's reasons,
	// never which applies nor the account; at most three in 15 minutes.
	stranger := "someone@else.example"
	sealed, err := w.keys.Encrypt(domain.NoticeEmailLabel, []byte(stranger))
	w.must(t, err)
	for i := range 4 {
		_, err := w.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: w.code, Login: "jane", Email: stranger, NoticeEmail: sealed})
		if !errors.Is(err, domain.ErrAdminLocked) {
			t.Fatalf("request %d with a wrong email: %v", i+1, err)
		}
		w.clock.Add(time.Second)
		if i == 3 {
			if mails := deliver(); len(mails) != 0 {
				t.Fatalf("a fourth notice within 15 minutes: %q", subjects(mails))
			}
			continue
		}
		m := one("Password Reset Error")
		if to := m.Header.Get("To"); to != "<"+stranger+">" {
			t.Fatalf("notice to %q, want the typed address", to)
		}
		text := strings.ReplaceAll(m.Text, "\r\n", "\n")
		for _, reason := range domain.ResetErrorReasons {
			if !strings.Contains(text, "  - "+reason+"\n") || !strings.Contains(m.HTML, "<li>"+reason+"</li>") {
				t.Errorf("notice lacks the reason %q:\n%s", reason, text)
			}
		}
		for _, secret := range []string{"jane", w.code, "Admin Locked.", "admin_locked"} {
			if strings.Contains(m.Text, secret) || strings.Contains(m.HTML, secret) {
				t.Errorf("notice tells %q:\n%s", secret, text)
			}
		}
	}

	// A throttled owner is told why and when to try again.
	w.must(t, w.h.AdminUnlock(ctx, commands.UserCommand{Actor: w.admin(), Provider: w.code, Login: "jane"}))
	var throttled bool
	for range 3 {
		_, err := w.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: w.code, Login: "jane", Email: recipient, NoticeEmail: sealed})
		w.clock.Add(time.Second)
		if errors.Is(err, domain.ErrThrottled) {
			throttled = true
			break
		}
		w.must(t, err)
		one("Your password token")
	}
	if !throttled {
		t.Fatal("a fourth token within 15 minutes was not refused")
	}
	u, err := w.h.LoadUser(ctx, w.code, "jane")
	w.must(t, err)
	retry := u.Issued[len(u.Issued)-3].Add(15 * time.Minute).UTC().Format("Mon, 2 Jan 2006 at 15:04 UTC")
	if m := one("Password Reset Error"); !strings.Contains(m.Text, "Too many") ||
		!strings.Contains(m.Text, "You can ask for a new Password token from Forgot Password? after "+retry+".") ||
		m.Header.Get("To") != "<"+recipient+">" {
		t.Errorf("throttled mail (want retry at %s) to %q:\n%s", retry, m.Header.Get("To"), m.Text)
	}

	// Replaying the whole feed queues and sends nothing new.
	checkpoint = eventstore.Start
	if mails := deliver(); len(mails) != 0 {
		t.Fatalf("the replay sent %q", subjects(mails))
	}
	all, err := mailer.ListDeliveries(ctx, w.pool, "")
	if err != nil {
		t.Fatal(err)
	}
	// code, token, changed, admin-locked error, 3+1 notices, tokens, throttled error
	if want := 4 + 4 + len(u.Issued) - 1 + 1; len(all) != want {
		t.Fatalf("%d deliveries, want %d", len(all), want)
	}
	capped := 0
	for _, d := range all {
		if d.Kind == mailer.MailResetNotice && (d.Recipient != "" || len(d.RecipientSealed) == 0 || d.RecipientHash == "") {
			t.Errorf("notice row holds the address in clear or lacks its hash: %+v", d)
		}
		if d.State == mailer.StateSkipped && d.SkipReason == mailer.SkipCapped && d.Kind == mailer.MailResetNotice {
			capped++
			continue
		}
		if d.State != mailer.StateSent {
			t.Errorf("%s: %s", d.Kind, d.State)
		}
	}
	if capped != 1 {
		t.Errorf("%d capped notices, want 1", capped)
	}
}

// TestFullPathThroughTheRunner plugs the intake into the projections runner (behind
// ownOnly, which lets every event through on Postgres).
func TestFullPathThroughTheRunner(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	if err := projections.Migrate(ctx, w.pool); err != nil {
		t.Fatal(err)
	}
	runner, err := projections.New(projections.Config{Store: w.store, Pool: w.pool, Logger: quiet,
		Projections: []projections.Projection{ownOnly{Projection: w.proj, w: w}}})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	// waitMail lets the runner queue n deliveries, then sends them. (On EventStoreDB the
	// runner starts with the whole shared history, hence the generous deadline.)
	waitMail := func(n int) []testkit.Message {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			all, err := mailer.ListDeliveries(ctx, w.pool, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(all) >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the runner queued %d deliveries, want %d", len(all), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return w.newMail(t)
	}

	w.setUp(t)
	self := commands.SelfUser{Provider: w.code, Login: "jane"}
	w.must(t, w.h.VerifyPasswordForSettings(ctx, commands.VerifyPasswordForSettings{Provider: w.code, Login: "jane", Password: "correct horse battery"}))
	_, err = w.h.StartEmailVerification(ctx, commands.StartEmailVerification{SelfUser: self, Email: recipient})
	w.must(t, err)
	mails := waitMail(1)
	if len(mails) != 1 {
		t.Fatalf("mails %q", subjects(mails))
	}
	w.must(t, w.h.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: self, Code: testkit.AloneOnLine(t, mails[0].Text, testkit.CodeLine)}))
	w.must(t, w.h.ConfigureSelfReset(ctx, commands.ConfigureSelfReset{SelfUser: self}))

	_, err = w.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: w.code, Login: "jane", Email: recipient})
	w.must(t, err)
	mails = waitMail(2)
	if len(mails) != 1 || mails[0].Header.Get("Subject") != "Your password token" {
		t.Fatalf("mails %q", subjects(mails))
	}
	w.must(t, w.h.ResetPassword(ctx, commands.ResetPassword{Provider: w.code, Login: "jane",
		Token: testkit.AloneOnLine(t, mails[0].Text, testkit.TokenLine), NewPassword: "staple-gun-wizard-42"}))
	if mails := waitMail(3); len(mails) != 1 || mails[0].Header.Get("Subject") != "Your password was changed" {
		t.Fatalf("mails %q", subjects(mails))
	}
}
