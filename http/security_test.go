package http

// Regression tests for the findings of a security review: each failed on the code as
// reviewed (enumeration through Change Password and login contention, a wrong-email reset
// id reaching the owner's token, IPv6 rate-limit evasion, sessions surviving a lock that
// was undone, unbounded error mail to the owner).

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"selfreset/commands"
	"selfreset/domain"
)

// completeWrong posts a wrong token to a reset id's Change Password API.
func (e *env) completeWrong(resetID string) resp {
	e.t.Helper()
	return e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + resetID + "/complete",
		Body: map[string]string{"token": "ZZZZZZZZZZ", "new_password": "Fresh-start-2030", "confirm_password": "Fresh-start-2030"}})
}

// Review finding 1a (fixed): once the reset id's lifetime had passed, a wrong token on a
// request that matched (right login + provider + email) answered invalid_token, while a
// request that matched nothing (wrong email, unknown login) answered token_expired. One
// request after five minutes told an attacker whether the email they guessed is the
// account's recovery email.
func TestCompleteDoesNotRevealAMatchAfterExpiry(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")

	probe := func(code, login, email string) string {
		a, _ := e.forgot(code, login, email)
		e.clock.Add(6 * time.Minute)
		r := e.completeWrong(a.ResetID)
		return r.errCode()
	}
	ghost := probe("ACME", "ghost", "jane@example.org")
	wrongEmail := probe("ACME", "jane", "guess@example.org")
	rightEmail := probe("ACME", "jane", "jane@example.org")
	if ghost != wrongEmail || wrongEmail != rightEmail {
		t.Errorf("after expiry: unknown login %q, wrong email %q, right email %q; all must be alike", ghost, wrongEmail, rightEmail)
	}
}

// Review finding 1b (fixed): within the lifetime, five wrong tokens answered invalid_token
// ×5 for a request that matched nothing, but invalid_token ×4 then too_many_attempts when
// a token was issued.
func TestCompleteFifthWrongTokenDoesNotRevealAMatch(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")

	five := func(code, login, email string) []string {
		a, _ := e.forgot(code, login, email)
		var codes []string
		for range 5 {
			codes = append(codes, e.completeWrong(a.ResetID).errCode())
		}
		return codes
	}
	wrongEmail := strings.Join(five("ACME", "jane", "guess@example.org"), ",")
	e.clock.Add(6 * time.Minute)
	rightEmail := strings.Join(five("ACME", "jane", "jane@example.org"), ",")
	if wrongEmail != rightEmail {
		t.Errorf("five wrong tokens: wrong email %s; right email %s", wrongEmail, rightEmail)
	}
}

// Review finding 2 (fixed): a reset id obtained with a WRONG email (anyone who knows a
// login name and a provider code can get one) reached the owner's token issued later: five
// garbage tokens through it revoked the owner's live token, and Resend through it
// superseded the token.
func TestWrongEmailResetIDDoesNotReachOwnersToken(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")

	attacker, _ := e.forgot("ACME", "jane", "attacker@evil.example")
	e.clock.Add(time.Second)
	e.forgot("ACME", "jane", "jane@example.org") // the owner asks for a token
	token := e.resetToken("ACME", "jane")

	for range 5 {
		e.completeWrong(attacker.ResetID)
	}
	u := e.user("ACME", "jane")
	if u.Token.State != domain.TokenActive || u.Token.Attempts != 0 {
		t.Errorf("a wrong-email reset id spent the owner's token: state %s, attempts %d", u.Token.State, u.Token.Attempts)
	}
	if got := e.resetToken("ACME", "jane"); got != token {
		t.Error("token changed")
	}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + attacker.ResetID + "/resend"}), http.StatusAccepted, "")
	e.drain()
	if u := e.user("ACME", "jane"); u.Token.State != domain.TokenActive || e.resetToken("ACME", "jane") != token {
		t.Errorf("Resend through a wrong-email reset id replaced the owner's token (state %s)", u.Token.State)
	}
}

// Finding 3: concurrent failed logins against an existing account lose the optimistic-
// concurrency race five times and answer 503 busy; an unknown account's failures are
// appended with eventstore.Any and never do. 401 vs 503 tells which accounts exist.
func TestLoginContentionDoesNotRevealAnAccount(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimitPerIP = 300 }) // bursts of 30: the limit lets each burst through
	burst := func(login string) map[int]int {
		var mu sync.Mutex
		got := map[int]int{}
		var wg sync.WaitGroup
		for range 30 {
			wg.Go(func() {
				r := e.do(req{Method: "POST", Path: "/api/v1/sessions",
					Body: map[string]string{"provider_code": "ACME", "login_name": login, "password": "wrong-password-1"}})
				mu.Lock()
				got[r.status]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return got
	}
	ghost := burst("ghost")
	e.clock.Add(2 * time.Minute) // refill the IP bucket
	jane := burst("jane")
	// A 429 would mean the limit, not the command, answered: the test would prove nothing.
	if ghost[http.StatusServiceUnavailable] != 0 || jane[http.StatusServiceUnavailable] != 0 ||
		ghost[http.StatusTooManyRequests] != 0 || jane[http.StatusTooManyRequests] != 0 {
		t.Errorf("statuses for 30 concurrent wrong logins: unknown account %v, existing account %v", ghost, jane)
	}
}

// Finding 4: Resend through a reset id whose token has expired queues a "Password Reset
// Error" email to the owner every time, with no cap: with one old reset id an attacker
// can mail-bomb the recovery address (30 a minute per IP with the default limits).
func TestResendAfterExpiryMailIsCapped(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	a, _ := e.forgot("ACME", "jane", "jane@example.org")
	e.clock.Add(6 * time.Minute)
	for range 10 {
		expect(t, e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + a.ResetID + "/resend"}), http.StatusGone, "")
		e.drain()
	}
	recs, err := e.store.ReadStream(e.ctx, domain.UserStream("ACME", "jane"), 0)
	if err != nil {
		t.Fatal(err)
	}
	mails := 0
	for _, r := range recs {
		if r.Type == "ResetRequestRejected" && strings.Contains(string(r.Data), `"jane@example.org"`) {
			mails++
		}
	}
	if max := e.cmds.Policy().MaxTokensPerWindow; mails > max {
		t.Errorf("%d Password Reset Error mails queued to the owner in one minute (want at most %d)", mails, max)
	}
}

// Finding 5: an admin lock (or deactivation) revokes sessions only lazily, on their next
// request. Locked then unlocked before the session is used again, a stolen session lives on.
func TestAdminLockThenUnlockEndsSessions(t *testing.T) {
	e := newEnv(t, nil)
	stolen := e.login("ACME", "jane", janePW)
	sys := domain.SystemActor("test")
	if err := e.cmds.AdminLock(e.ctx, commands.UserCommand{Actor: sys, Provider: "ACME", Login: "jane"}); err != nil {
		t.Fatal(err)
	}
	if err := e.cmds.AdminUnlock(e.ctx, commands.UserCommand{Actor: sys, Provider: "ACME", Login: "jane"}); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: stolen}), http.StatusUnauthorized, CodeUnauthorized)
}

// Review finding 6 (fixed): the per-IP budget was per IPv6 address. Every client holds at
// least a /64 (2^64 addresses), so it got a fresh budget per request.
func TestPerIPLimitCoversAnIPv6Slash64(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimitPerIP = 20; c.RateLimitPerAccount = 0 }) // bursts of 2
	h := e.srv.Handler()
	statuses := make([]int, 0, 5)
	for i := range 5 {
		body := `{"provider_code":"ACME","login_name":"user` + string(rune('a'+i)) + `","password":"wrong-password-1"}`
		r := httptest.NewRequest("POST", "/api/v1/sessions", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = "[2001:db8:1:2::" + string(rune('1'+i)) + "]:40000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		e.checkContract(r, []byte(body), w.Code, w.Header(), w.Body.Bytes())
		statuses = append(statuses, w.Code)
	}
	if statuses[2] != http.StatusTooManyRequests {
		t.Errorf("5 logins from one /64 with a budget of 2: %v", statuses)
	}
}

// Review finding 1c (fixed): the same oracle through contention. Concurrent wrong tokens
// on a request that matched run the command and lost the optimistic-concurrency race (503
// busy); a request that matched nothing never runs a command and always answers
// invalid_token.
func TestCompleteContentionDoesNotRevealAMatch(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	burst := func(resetID string) map[string]int {
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				c := e.completeWrong(resetID).errCode()
				mu.Lock()
				got[c]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return got
	}
	wrong, _ := e.forgot("ACME", "jane", "guess@example.org")
	wrongCodes := burst(wrong.ResetID)
	e.clock.Add(6 * time.Minute)
	right, _ := e.forgot("ACME", "jane", "jane@example.org")
	rightCodes := burst(right.ResetID)
	if len(wrongCodes) != len(rightCodes) || rightCodes[domain.ErrInvalidToken.Code] != wrongCodes[domain.ErrInvalidToken.Code] {
		t.Errorf("20 concurrent wrong tokens: wrong email %v; right email %v", wrongCodes, rightCodes)
	}
}
