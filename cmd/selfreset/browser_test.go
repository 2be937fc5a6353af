package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"selfreset/config"
	"selfreset/domain"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/mailer"
)

// TestBrowserWalk walks the seed's three sections in headless Chromium against the real
// service (`selfreset serve`, in process) with its real mailer speaking SMTP to a server
// started here: the operator sets up a provider and two users with the CLI; the admin
// enables Self Password Reset for the user from the User List; the user configures it
// from Settings (password, email, the 6-digit code from the inbox, Update); then the user
// forgets the password, asks for a token on the Reset Password page, reads it from the
// inbox, changes the password on the Change Password page and logs in with the new one.
//
// Every page is saved as a full-page PNG in the test's artifact directory (kept with
// `go test -artifacts -outputdir DIR`; the log names it), some also at a phone's width.
//
// Chromium comes from $SELFRESET_CHROMIUM, else /usr/bin/chromium or the PATH. Without it
// the test skips, except under CI=true, where it fails.
func TestBrowserWalk(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: drives headless Chromium through a running serve (needs PostgreSQL and Chromium, about a minute); runs in `make test`")
	}
	chromium := chromiumPath(t)
	shots := t.ArtifactDir()
	t.Logf("screenshots go to %s", shots)

	// The whole walk is bounded; each step has its own, shorter bound below.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Strict: the inbox refuses (554) a mail whose subject or text part it cannot read.
	inbox := (&testkit.SMTPServer{Strict: true}).Start(t)
	base := startService(t, ctx, inbox)

	bctx := startBrowser(t, ctx, chromium)
	w := &walker{t: t, ctx: bctx, base: base, shots: shots}

	// ---- Enable Self Password Reset (the admin) ----
	w.open("/login")
	w.see("Login Name", "Provider Code", "Password", "Forgot Password?")
	w.shot("01-login")
	w.login("boss", "ACME", bwBossPW)
	w.see("Settings", "Bo Boss")
	w.shot("02-settings-admin")
	w.click(`nav a[href="/admin"]`)
	w.see("Admin", "User", "Self Password Reset")
	w.shot("03-admin")
	w.click(`main a[href="/admin/users"]`)
	w.waitFor("#user-jane", "the User List to show jane (the read model catches up)")
	w.see("User List", "Enable/Disable Self Pass Reset", "Jane Doe")
	w.shot("04-user-list")
	w.click(`#user-jane button[type=submit]`)
	w.see("Self Password Reset is now enabled for jane.")
	w.shot("05-user-list-enabled")
	w.click(`form[action="/logout"] button`)
	w.see("You have logged out.")

	// ---- Configure Self Password Reset (the user) ----
	w.login("jane", "ACME", bwJanePW)
	w.see("Settings", "Jane Doe", "Enabled, not configured yet")
	w.shot("06-settings-user")
	w.click(`main a[href="/settings/self-reset"]`)
	w.see("Password", "Verify")
	w.shot("07-configure-password")
	w.typeIn("#password", bwJanePW)
	w.click(`form[action="/settings/self-reset/verify-password"] button`)
	w.see("Self Password Reset Configuration", "Email")
	w.shot("08-configure-email")
	sentBefore := len(inbox.Messages())
	w.typeIn("#email", bwEmail)
	w.click(`form[action="/settings/self-reset/email"] button`)
	w.see("Enter the 6 digit code that has been sent to", bwEmail)
	code := fromInbox(t, ctx, inbox, sentBefore, bwEmail, mailer.Subjects[mailer.MailEmailCode], testkit.CodeLine)
	w.shot("09-configure-code")
	w.typeIn("#code", code)
	w.click(`form[action="/settings/self-reset/email/verify"] button`)
	w.see("Click Update to complete the configuration.")
	w.shot("10-configure-update")
	w.click(`form[action="/settings/self-reset/configure"] button`)
	w.see("Self Password Reset is configured.", "Configured with "+domain.MaskEmail(bwEmail))
	w.shot("11-configured")
	w.click(`form[action="/logout"] button`)

	// ---- Reset Password from the login page ----
	w.click(`a[href="/forgot-password"]`)
	w.see("Reset Password", "Login Name", "Provider Code", "Email")
	w.shot("12-reset-password")
	sentBefore = len(inbox.Messages())
	w.typeIn("#login_name", "jane")
	w.typeIn("#provider_code", "ACME")
	w.typeIn("#email", bwEmail)
	w.click(`form[action="/forgot-password"] button`)
	w.see("Change Password", "If the details match a configured account, a Password token was sent to the email; it is valid for 5 minutes.",
		"Password Token", "New Password", "Confirm New Password", "Resend")
	w.shot("13-change-password")
	token := fromInbox(t, ctx, inbox, sentBefore, bwEmail, mailer.Subjects[mailer.MailResetToken], testkit.TokenLine)
	w.typeIn("#token", token)
	w.typeIn("#new_password", bwJaneNewPW)
	w.typeIn("#confirm_password", bwJaneNewPW)
	w.click(`form[action^="/change-password/"]:not(.resend) button`)
	w.see("Your password has been reset successfully", "Login Again")
	w.shot("14-password-reset")
	w.click(`main a[href="/login"]`) // Login Again
	w.see("Login Name", "Forgot Password?")
	w.login("jane", "ACME", bwJaneNewPW)
	w.see("Settings", "Jane Doe", "Configured with "+domain.MaskEmail(bwEmail))
	w.shot("15-settings-after-reset")
	w.click(`form[action="/logout"] button`)

	// ---- The User Administrator's tools (browser_admin_test.go) ----
	adminWalk(t, ctx, w, inbox)

	// ---- Password Reset Error and the emailed link on another device (browser_reset_test.go) ----
	resetErrorWalk(t, ctx, w, inbox, chromium)

	// ---- The same pages on a phone (390 CSS pixels wide) ----
	w.do("narrow the viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile))
	w.open("/login")
	w.fitsPhone()
	w.shot("16-phone-login")
	w.login("boss", "ACME", bwBossPW)
	w.open("/admin/users")
	w.see("User List", "Jane Doe")
	w.fitsPhone()
	w.shot("17-phone-user-list")
	w.open("/forgot-password")
	w.fitsPhone()
	w.shot("18-phone-reset-password")
}

const (
	bwSecret    = "browser-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
	bwBossPW    = "Boss-walks-the-list-4417"
	bwJanePW    = "Jane-forgot-it-8812"
	bwJaneNewPW = "Jane-remembers-now-2030"
	// bwJaneThirdPW is set from the emailed link in a fresh browser profile.
	bwJaneThirdPW = "Jane-on-her-phone-5151"
	bwEmail       = "jane@example.org"
	// stepTimeout bounds one browser step (a click and the page it loads, a wait…).
	stepTimeout = 30 * time.Second
)

// chromiumPath finds Chromium, or skips (fails under CI=true) with how to install it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SELFRESET_CHROMIUM"); p != "" {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
		noChromium(t, "SELFRESET_CHROMIUM="+p+" is not an executable")
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	noChromium(t, "Chromium is not installed")
	return ""
}

func noChromium(t *testing.T, why string) {
	t.Helper()
	msg := why + "; the browser test needs it: `apt-get install chromium` (Debian, as root), " +
		"or run scripts/test.sh, which installs it; SELFRESET_CHROMIUM may name another binary"
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true: " + msg)
	}
	t.Skip(msg)
}

// startService sets up the database with the CLI (migrate, provider add, user add) and
// starts `selfreset serve` in process, as main would. It returns the service's address.
func startService(t *testing.T, ctx context.Context, inbox *testkit.SMTPServer) string {
	t.Helper()
	addr := freeAddr(t)
	base := "http://" + addr
	env := map[string]string{
		config.EnvDatabaseURL: testdb.New(t),
		config.EnvSecret:      bwSecret,
		config.EnvAddr:        addr,
		config.EnvMailDriver:  mailer.DriverSMTP,
		config.EnvSMTPAddr:    inbox.Addr,
		config.EnvSMTPTLS:     string(mailer.TLSNone),
		config.EnvPublicURL:   base,
		config.EnvMailFrom:    "Self Password Reset <no-reply@example.org>",
		// Every page of the walk comes from one browser on 127.0.0.1, faster than a
		// person: the default per-IP budget (30 a minute, a burst of 3) refused its sixth
		// login within six seconds once the pages answered quicker. The limits have tests
		// of their own (http, TestReplicasShareOnePerIPBudget); the walk tests the flows.
		config.EnvRateLimitPerIP: "600",
	}
	getenv := func(k string) string { return env[k] }
	cli := func(stdin string, args ...string) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var out, errOut bytes.Buffer
		if code := run(cctx, args, strings.NewReader(stdin), &out, &errOut, getenv); code != exitOK {
			t.Fatalf("selfreset %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
		}
	}
	cli("", "migrate")
	cli("", "provider", "add", "--code", "ACME", "--name", "Acme Care", "--allow-self-reset")
	cli(bwBossPW+"\n", "user", "add", "--provider", "ACME", "--login", "boss", "--name", "Bo Boss", "--role", domain.RoleUserAdmin, "--password-stdin")
	cli(bwJanePW+"\n", "user", "add", "--provider", "ACME", "--login", "jane", "--name", "Jane Doe", "--password-stdin")

	sctx, stop := context.WithCancel(ctx)
	out := &testkit.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(sctx, []string{"serve"}, strings.NewReader(""), out, out, getenv) }()
	t.Cleanup(func() {
		stop()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("serve exited %d", code)
			}
		case <-time.After(45 * time.Second):
			t.Error("serve did not stop within 45s of its context ending")
		}
		if t.Failed() {
			t.Logf("serve's output:\n%s", out.String())
		}
	})

	// Ready when /readyz says so.
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(60 * time.Second); ; {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before it was ready:\n%s", code, out.String())
		default:
		}
		if res, err := client.Get(base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve was not ready within 60s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeAddr is a loopback address with a port nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startBrowser starts headless Chromium with a profile of its own, bound to ctx.
func startBrowser(t *testing.T, ctx context.Context, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// The first Do starts the browser and binds its life to the context it gets, so it
	// gets bctx (bounded by the walk's timeout), not a step's.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("Chromium (%s) does not start: %v", path, err)
	}
	return bctx
}

// walker drives the tab step by step, each step bounded by stepTimeout.
type walker struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

func (w *walker) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(w.ctx, stepTimeout)
}

func (w *walker) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	w.t.Helper()
	ctx, cancel := w.step()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		w.t.Fatalf("%s: %v (at %s)", what, err, w.location())
	}
}

// open loads a page of the service and expects 200.
func (w *walker) open(path string) {
	w.t.Helper()
	ctx, cancel := w.step()
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.NavigateResponse(w.base+path))
	if err != nil {
		w.t.Fatalf("open %s: %v", path, err)
	}
	if res.Status != http.StatusOK {
		w.t.Fatalf("open %s: status %d\n%s", path, res.Status, w.text())
	}
}

// click clicks the element that sel (CSS) finds, waits for the page it leads to and
// expects that page to answer 200.
func (w *walker) click(sel string) {
	w.t.Helper()
	ctx, cancel := w.step()
	defer cancel()
	res, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		w.t.Fatalf("click %s: %v (at %s)", sel, err, w.location())
	}
	if res.Status != http.StatusOK {
		w.t.Fatalf("click %s: the next page answered %d (%s)\n%s", sel, res.Status, res.URL, w.text())
	}
}

// typeIn types text into the field that sel (CSS) finds.
func (w *walker) typeIn(sel, text string) {
	w.t.Helper()
	w.do("type into "+sel, chromedp.Clear(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible))
}

// login fills the login page in and expects to land on Settings.
func (w *walker) login(login, code, password string) {
	w.t.Helper()
	if !strings.HasSuffix(w.location(), "/login") && !strings.Contains(w.location(), "/login?") {
		w.open("/login")
	}
	w.typeIn("#login_name", login)
	w.typeIn("#provider_code", code)
	w.typeIn("#password", password)
	w.click(`form[action="/login"] button[type=submit]`)
	if loc := w.location(); !strings.HasSuffix(loc, "/settings") {
		w.t.Fatalf("after login the browser is at %s, not Settings\n%s", loc, w.text())
	}
}

// see fails unless the page's text shows each of texts (within a few seconds: a page
// that just loaded may still be replacing its document).
func (w *walker) see(texts ...string) {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, missing := w.text(), ""
		for _, s := range texts {
			if !strings.Contains(got, s) {
				missing = s
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the page at %s does not show %q:\n%s", w.location(), missing, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor reloads the page until sel (CSS) is on it.
func (w *walker) waitFor(sel, what string) {
	w.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		ctx, cancel := w.step()
		nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS(sel), chromedp.AtLeast(0)))
		cancel()
		if err == nil && len(nodes) > 0 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("waited %s for %s (%s) at %s: %v\n%s", stepTimeout, what, sel, w.location(), err, w.text())
		}
		time.Sleep(250 * time.Millisecond)
		w.do("reload", chromedp.Reload())
	}
}

// text is the page's visible text. A query that races a document replacement ("No node
// with given id found") is tried again.
func (w *walker) text() string {
	var err error
	for range 5 {
		ctx, cancel := w.step()
		var s string
		s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body"), chromedp.NodeVisible))
		cancel()
		if err == nil {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "(no text: " + err.Error() + ")"
}

func (w *walker) location() string {
	ctx, cancel := w.step()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return s
}

// fitsPhone fails if the page is wider than the viewport (it would scroll sideways).
func (w *walker) fitsPhone() {
	w.t.Helper()
	ctx, cancel := w.step()
	defer cancel()
	dims, err := chromedp.Run(ctx, chromedp.Evaluate[[2]int](
		`[document.documentElement.scrollWidth, document.documentElement.clientWidth]`))
	if err != nil {
		w.t.Fatalf("page width at %s: %v", w.location(), err)
	}
	if dims[0] > dims[1] {
		w.t.Errorf("the page at %s is %d CSS pixels wide in a %d-pixel viewport: it scrolls sideways", w.location(), dims[0], dims[1])
	}
}

// shot saves a full-page PNG of the current page.
func (w *walker) shot(name string) {
	w.t.Helper()
	ctx, cancel := w.step()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		w.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(w.shots, name+".png"), png, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// fromInbox waits (up to 60s) for a mail to rcpt with subject, after the first `after`
// mails the inbox received, and returns the one line of its text that matches re in full:
// the code or token, on its own line.
func fromInbox(t *testing.T, ctx context.Context, inbox *testkit.SMTPServer, after int, rcpt, subject string, re *regexp.Regexp) string {
	t.Helper()
	within := 60 * time.Second
	if deadline, ok := ctx.Deadline(); ok {
		within = min(within, time.Until(deadline))
	}
	m := inbox.WaitFor(t, func(m testkit.Message) bool {
		return m.Seq >= after && m.Subject == subject && len(m.To) == 1 && m.To[0] == rcpt
	}, within)
	return testkit.AloneOnLine(t, m.Text, re)
}
