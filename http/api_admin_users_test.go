package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"selfreset/domain"
	"selfreset/eventstore"
)

// lastEvent is the newest event of a user's stream: its type, data (compact JSON: the
// stores differ in spacing, Postgres' jsonb adds some) and actor.
func (e *env) lastEvent(code, login string) (typ, data, actor string) {
	e.t.Helper()
	recs, err := e.store.ReadStream(e.ctx, domain.UserStream(code, login), 0)
	if err != nil {
		e.t.Fatal(err)
	}
	r := recs[len(recs)-1]
	var b bytes.Buffer
	if err := json.Compact(&b, r.Data); err != nil {
		e.t.Fatal(err)
	}
	return r.Type, b.String(), r.Metadata.Actor
}

const adminUsers = "/api/v1/providers/ACME/users"

func TestCreateUserAndFirstSignIn(t *testing.T) {
	e := newEnv(t, nil)
	boss := e.login("ACME", "boss", bossPW)
	create := func(tok string, body any) resp {
		return e.do(req{Method: "POST", Path: adminUsers, Token: tok, Body: body})
	}
	r := create(boss, map[string]any{"login_name": "NewBie", "display_name": "New Bie"})
	expect(t, r, http.StatusCreated, "")
	var out createUserResponse
	r.decode(t, &out)
	if out.LoginName != "newbie" || len(out.TemporaryPassword) < 20 || !out.MustChangePassword || r.header.Get("Location") != adminUsers+"/newbie" {
		t.Fatalf("created: %s (Location %q)", r.body, r.header.Get("Location"))
	}
	if typ, data, actor := e.lastEvent("ACME", "newbie"); typ != "UserRegistered" || actor != "user:ACME/boss" ||
		strings.Contains(data, out.TemporaryPassword) || !strings.Contains(data, `"must_change_password":true`) {
		t.Errorf("event %s by %s: %s", typ, actor, data)
	}
	if strings.Contains(e.logs.String(), out.TemporaryPassword) {
		t.Error("the temporary password is in the log")
	}

	// Refusals.
	expect(t, create(boss, map[string]any{"login_name": "newbie", "display_name": "Again"}), http.StatusConflict, domain.ErrUserExists.Code)
	expect(t, create(boss, map[string]any{"login_name": "has space", "display_name": "X"}), http.StatusBadRequest, domain.ErrInvalidInput.Code)
	expect(t, e.do(req{Method: "POST", Path: adminUsers, Token: boss, Body: map[string]any{"login_name": "x2"}, Invalid: true}), http.StatusBadRequest, domain.ErrInvalidInput.Code)
	expect(t, create(boss, map[string]any{"login_name": "x3", "display_name": "X", "roles": []string{"root"}}), http.StatusBadRequest, domain.ErrUnknownRole.Code)
	expect(t, e.do(req{Method: "POST", Path: adminUsers, Token: boss, Body: `{"login_name":"x4","display_name":"X","password":"mine"}`, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
	expect(t, create(e.login("ACME", "jane", janePW), map[string]any{"login_name": "x5", "display_name": "X"}), http.StatusForbidden, CodeForbidden)
	expect(t, create(e.login("NOPE", "nadmin", nadmPW), map[string]any{"login_name": "x6", "display_name": "X"}), http.StatusForbidden, CodeForbidden)
	expect(t, e.do(req{Method: "POST", Path: adminUsers, Body: map[string]any{"login_name": "x7", "display_name": "X"}, Invalid: true}), http.StatusUnauthorized, CodeUnauthorized)
	if e.user("ACME", "x3").Registered || e.user("ACME", "x5").Registered {
		t.Fatal("a refused creation registered a user")
	}

	// The temporary password signs in, but nothing else works until it is changed.
	tok := e.login("ACME", "newbie", out.TemporaryPassword)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: tok}), http.StatusForbidden, domain.ErrPasswordChangeRequired.Code)
	change := func(current, next, confirm string) resp {
		return e.do(req{Method: "POST", Path: "/api/v1/me/password", Token: tok,
			Body: map[string]string{"current_password": current, "new_password": next, "confirm_password": confirm}})
	}
	expect(t, change(out.TemporaryPassword, "Newbie-own-pass-1", "Newbie-own-pass-2"), http.StatusBadRequest, CodePasswordMatch)
	expect(t, change(out.TemporaryPassword, out.TemporaryPassword, out.TemporaryPassword), http.StatusBadRequest, domain.ErrPasswordRejected.Code)
	expect(t, change("not-the-temporary-1", "Newbie-own-pass-1", "Newbie-own-pass-1"), http.StatusUnauthorized, domain.ErrInvalidCredentials.Code)
	expect(t, change(out.TemporaryPassword, "Newbie-own-pass-1", "Newbie-own-pass-1"), http.StatusNoContent, "")
	// The session that changed it goes on, now unrestricted.
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: tok}), http.StatusOK, "")
	if u := e.user("ACME", "newbie"); u.MustChangePassword {
		t.Fatal("still must change the password")
	}
	e.login("ACME", "newbie", "Newbie-own-pass-1")
	// Signing out works with a temporary password too.
	r = create(boss, map[string]any{"login_name": "second", "display_name": "Second"})
	r.decode(t, &out)
	tok2 := e.login("ACME", "second", out.TemporaryPassword)
	expect(t, e.do(req{Method: "DELETE", Path: "/api/v1/sessions/current", Token: tok2}), http.StatusNoContent, "")
}

func TestChangeMyPassword(t *testing.T) {
	e := newEnv(t, nil)
	here := e.enableAndConfigure("jane", janePW, "jane@example.org")
	there := e.login("ACME", "jane", janePW)
	body := func(current, next string) map[string]string {
		return map[string]string{"current_password": current, "new_password": next, "confirm_password": next}
	}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/password", Token: here, Body: body("wrong-current-1", "Jane-new-pass-77")}), http.StatusUnauthorized, domain.ErrInvalidCredentials.Code)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/password", Token: here, Body: body(janePW, "jane")}), http.StatusBadRequest, domain.ErrPasswordRejected.Code)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/password", Token: here, Body: map[string]string{"new_password": "x"}, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/password", Body: body(janePW, "Jane-new-pass-77"), Invalid: true}), http.StatusUnauthorized, CodeUnauthorized)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/password", Token: here, Body: body(janePW, "Jane-new-pass-77")}), http.StatusNoContent, "")

	// This session goes on; the other one ended.
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: here}), http.StatusOK, "")
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: there}), http.StatusUnauthorized, CodeUnauthorized)
	// The event asks the mailer for the "your password was changed" email.
	typ, data, actor := e.lastEvent("ACME", "jane")
	if typ != "PasswordChanged" || actor != "user:ACME/jane" || !strings.Contains(data, `"signed_in"`) || !strings.Contains(data, `"notify_email":"jane@example.org"`) {
		t.Errorf("event %s by %s: %s", typ, actor, data)
	}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}}),
		http.StatusUnauthorized, domain.ErrInvalidCredentials.Code)
	e.login("ACME", "jane", "Jane-new-pass-77")
}

func TestAdminStatusActions(t *testing.T) {
	e := newEnv(t, nil)
	boss := e.login("ACME", "boss", bossPW)
	jane := e.login("ACME", "jane", janePW)
	act := func(tok, login, action string) resp {
		return e.do(req{Method: "POST", Path: adminUsers + "/" + login + "/" + action, Token: tok})
	}
	// Lock: the session ends, the right password is told to ask the administrator.
	expect(t, act(boss, "jane", "lock"), http.StatusNoContent, "")
	if typ, data, actor := e.lastEvent("ACME", "jane"); typ != "AccountAdminLocked" || actor != "user:ACME/boss" || !strings.Contains(data, "user:ACME/boss") {
		t.Errorf("lock event %s by %s: %s", typ, actor, data)
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: jane}), http.StatusUnauthorized, CodeUnauthorized)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}}),
		http.StatusForbidden, domain.ErrAccountAdminLocked.Code)
	expect(t, act(boss, "jane", "lock"), http.StatusNoContent, "") // repeating changes nothing
	expect(t, act(boss, "jane", "unlock"), http.StatusNoContent, "")
	e.login("ACME", "jane", janePW)

	// Unlock also lifts a failed-login lock.
	for range 5 {
		e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "joe", "password": "wrong-pass-1"}})
	}
	if !e.user("ACME", "joe").Locked {
		t.Fatal("joe is not locked out")
	}
	expect(t, act(boss, "joe", "unlock"), http.StatusNoContent, "")
	e.login("ACME", "joe", joePW)

	// Deactivate and reactivate.
	expect(t, act(boss, "joe", "deactivate"), http.StatusNoContent, "")
	if u := e.user("ACME", "joe"); !u.Deactivated {
		t.Fatal("joe is not deactivated")
	}
	expect(t, act(boss, "joe", "reactivate"), http.StatusNoContent, "")
	e.login("ACME", "joe", joePW)

	// Refusals: self, not an admin, another provider, unknown user, a body that is not {}.
	expect(t, act(boss, "boss", "lock"), http.StatusConflict, domain.ErrSelfAction.Code)
	expect(t, act(boss, "boss", "deactivate"), http.StatusConflict, domain.ErrSelfAction.Code)
	jane = e.login("ACME", "jane", janePW)
	expect(t, act(jane, "joe", "lock"), http.StatusForbidden, CodeForbidden)
	nadmin := e.login("NOPE", "nadmin", nadmPW)
	expect(t, act(nadmin, "joe", "lock"), http.StatusForbidden, CodeForbidden)
	expect(t, act(nadmin, "ghost", "lock"), http.StatusForbidden, CodeForbidden) // no hint whether ghost exists
	expect(t, act(boss, "ghost", "lock"), http.StatusNotFound, domain.ErrUserNotFound.Code)
	expect(t, e.do(req{Method: "POST", Path: adminUsers + "/joe/lock", Token: boss, Body: `{"why":"x"}`, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
	if u := e.user("ACME", "joe"); u.AdminLocked {
		t.Fatal("a refused lock locked joe")
	}
}

func TestRolesAndDeletion(t *testing.T) {
	e := newEnv(t, nil)
	boss := e.login("ACME", "boss", bossPW)
	role := func(method, tok, login, role string) resp {
		return e.do(req{Method: method, Path: adminUsers + "/" + login + "/roles/" + role, Token: tok})
	}
	del := func(tok, login string, body any) resp {
		return e.do(req{Method: "DELETE", Path: adminUsers + "/" + login, Token: tok, Body: body})
	}
	// boss is the only user administrator: the role stays, and so does the account.
	expect(t, role("DELETE", boss, "boss", domain.RoleUserAdmin), http.StatusConflict, domain.ErrLastUserAdmin.Code)
	expect(t, del(boss, "boss", map[string]string{"confirm_login": "boss"}), http.StatusConflict, domain.ErrSelfAction.Code)
	expect(t, role("PUT", boss, "jane", "root"), http.StatusBadRequest, domain.ErrUnknownRole.Code)
	expect(t, role("PUT", e.login("ACME", "joe", joePW), "jane", domain.RoleUserAdmin), http.StatusForbidden, CodeForbidden)
	expect(t, role("PUT", e.login("NOPE", "nadmin", nadmPW), "jane", domain.RoleUserAdmin), http.StatusForbidden, CodeForbidden)

	expect(t, role("PUT", boss, "jane", domain.RoleUserAdmin), http.StatusNoContent, "")
	if typ, _, actor := e.lastEvent("ACME", "jane"); typ != "RoleGranted" || actor != "user:ACME/boss" {
		t.Errorf("grant event %s by %s", typ, actor)
	}
	jane := e.login("ACME", "jane", janePW)
	// Now jane may delete boss (typed confirmation, any case) and boss loses every right.
	expect(t, e.do(req{Method: "DELETE", Path: adminUsers + "/boss", Token: jane, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
	expect(t, del(jane, "boss", map[string]string{"confirm_login": "bossy"}), http.StatusBadRequest, CodeConfirmMismatch)
	if e.user("ACME", "boss").Deleted {
		t.Fatal("a mismatched confirmation deleted boss")
	}
	expect(t, del(jane, "boss", map[string]string{"confirm_login": " BOSS "}), http.StatusNoContent, "")
	expect(t, del(jane, "boss", map[string]string{"confirm_login": "boss"}), http.StatusNoContent, "") // repeating changes nothing
	expect(t, e.do(req{Method: "GET", Path: adminUsers, Token: boss}), http.StatusUnauthorized, CodeUnauthorized)
	// jane is now the last one.
	expect(t, role("DELETE", jane, "jane", domain.RoleUserAdmin), http.StatusConflict, domain.ErrLastUserAdmin.Code)
	expect(t, role("PUT", jane, "joe", domain.RoleUserAdmin), http.StatusNoContent, "")
	expect(t, role("DELETE", jane, "jane", domain.RoleUserAdmin), http.StatusNoContent, "")
	expect(t, role("PUT", jane, "jane", domain.RoleUserAdmin), http.StatusForbidden, CodeForbidden)
	p, err := e.cmds.LoadProvider(e.ctx, "ACME")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p.UserAdmins) != "map[joe:true]" {
		t.Errorf("counted user admins %v", p.UserAdmins)
	}
}

func TestSendPasswordReset(t *testing.T) {
	e := newEnv(t, nil)
	boss := e.login("ACME", "boss", bossPW)
	send := func(tok, login string) resp {
		return e.do(req{Method: "POST", Path: adminUsers + "/" + login + "/password-reset", Token: tok})
	}
	expect(t, send(boss, "jane"), http.StatusConflict, domain.ErrUserNotEnabled.Code)
	expect(t, e.do(req{Method: "PUT", Path: adminUsers + "/jane/self-reset", Token: boss}), http.StatusNoContent, "")
	r := send(boss, "jane")
	expect(t, r, http.StatusConflict, domain.ErrNotConfigured.Code)
	if !strings.Contains(r.errMessage(), "not configured") {
		t.Errorf("message: %s", r.body)
	}
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	r = send(boss, "jane")
	expect(t, r, http.StatusAccepted, "")
	var out sendResetResponse
	r.decode(t, &out)
	if out.SentTo != domain.MaskEmail("jane@example.org") || out.ExpiresInSeconds != 300 {
		t.Errorf("answer %s", r.body)
	}
	typ, data, actor := e.lastEvent("ACME", "jane")
	if typ != "ResetTokenIssued" || actor != "user:ACME/boss" || !strings.Contains(data, `"by":"user:ACME/boss"`) || !strings.Contains(data, `"email":"jane@example.org"`) {
		t.Errorf("event %s by %s: %s", typ, actor, data)
	}
	// The token is a Password token like any other.
	if u := e.user("ACME", "jane"); u.Token == nil || u.Token.State != domain.TokenActive {
		t.Fatalf("token %+v", u.Token)
	}
	_ = e.resetToken("ACME", "jane")
	// Throttled like Forgot Password: 3 tokens per 15 minutes.
	expect(t, send(boss, "jane"), http.StatusAccepted, "")
	expect(t, send(boss, "jane"), http.StatusAccepted, "")
	r = send(boss, "jane")
	expect(t, r, http.StatusTooManyRequests, domain.ErrThrottled.Code)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	expect(t, send(e.login("ACME", "jane", janePW), "jane"), http.StatusForbidden, CodeForbidden)
	expect(t, send(e.login("NOPE", "nadmin", nadmPW), "jane"), http.StatusForbidden, CodeForbidden)
	expect(t, send(boss, "ghost"), http.StatusNotFound, domain.ErrUserNotFound.Code)
}

func TestUserListFiltersAndSort(t *testing.T) {
	e := newPGEnv(t, nil)
	boss := e.login("ACME", "boss", bossPW)
	expect(t, e.do(req{Method: "POST", Path: adminUsers + "/joe/lock", Token: boss}), http.StatusNoContent, "")
	e.projectAdminUsers(domain.UserStream("ACME", "boss"), domain.UserStream("ACME", "jane"), domain.UserStream("ACME", "joe"))
	list := func(query string) (logins []string, next *string) {
		t.Helper()
		r := e.do(req{Method: "GET", Path: adminUsers + query, Token: boss})
		expect(t, r, http.StatusOK, "")
		var out userListResponse
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		for _, u := range out.Users {
			logins = append(logins, u.LoginName)
		}
		return logins, out.NextCursor
	}
	if got, _ := list("?status=admin_locked"); strings.Join(got, ",") != "joe" {
		t.Errorf("admin_locked: %v", got)
	}
	if got, _ := list("?status=active"); strings.Join(got, ",") != "boss,jane" {
		t.Errorf("active: %v", got)
	}
	// By name: Bo Boss, Jane Doe, Joe Bloggs — paged one at a time.
	var all []string
	cursor := ""
	for range 5 {
		got, next := list("?sort=name&limit=1" + cursor)
		all = append(all, got...)
		if next == nil {
			break
		}
		cursor = "&cursor=" + *next
	}
	if strings.Join(all, ",") != "boss,jane,joe" {
		t.Errorf("by name, paged: %v", all)
	}
	expect(t, e.do(req{Method: "GET", Path: adminUsers + "?status=gone", Token: boss, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
	expect(t, e.do(req{Method: "GET", Path: adminUsers + "?sort=email", Token: boss, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
	expect(t, e.do(req{Method: "GET", Path: adminUsers + "?sort=name&cursor=Ym9zcw", Token: boss}), http.StatusBadRequest, CodeBadRequest) // a by-login cursor
}

// Every administration route answers 403 to a user who is not a user administrator of
// that provider, before looking at the target, and changes nothing.
func TestAdminRoutesNeedTheProvidersAdmin(t *testing.T) {
	e := newEnv(t, nil)
	callers := map[string]string{
		"plain user":               e.login("ACME", "jane", janePW),
		"another provider's admin": e.login("NOPE", "nadmin", nadmPW),
	}
	routes := []req{
		{Method: "POST", Path: adminUsers, Body: map[string]any{"login_name": "x1", "display_name": "X"}},
		{Method: "DELETE", Path: adminUsers + "/joe", Body: map[string]string{"confirm_login": "joe"}},
		{Method: "PUT", Path: adminUsers + "/joe/roles/user-admin"},
		{Method: "DELETE", Path: adminUsers + "/boss/roles/user-admin"},
		{Method: "POST", Path: adminUsers + "/joe/lock"},
		{Method: "POST", Path: adminUsers + "/joe/unlock"},
		{Method: "POST", Path: adminUsers + "/joe/deactivate"},
		{Method: "POST", Path: adminUsers + "/joe/reactivate"},
		{Method: "POST", Path: adminUsers + "/joe/password-reset"},
	}
	before := e.adminEvents(t)
	for who, tok := range callers {
		for _, q := range routes {
			q.Token = tok
			r := e.do(q)
			if r.status != http.StatusForbidden || r.errCode() != CodeForbidden {
				t.Errorf("%s: %s %s: %d %s", who, q.Method, q.Path, r.status, r.body)
			}
			q.Token, q.Invalid = "", true
			if r := e.do(q); r.status != http.StatusUnauthorized {
				t.Errorf("no session: %s %s: %d", q.Method, q.Path, r.status)
			}
		}
	}
	if after := e.adminEvents(t); after != before {
		t.Errorf("refused calls appended %d events", after-before)
	}
}

// adminEvents is how many events ACME's user streams and provider stream hold (logins aside).
func (e *env) adminEvents(t *testing.T) int {
	t.Helper()
	n := 0
	for _, s := range []string{domain.ProviderStream("ACME"), domain.UserStream("ACME", "joe"), domain.UserStream("ACME", "boss"), domain.UserStream("ACME", "x1")} {
		recs, err := e.store.ReadStream(e.ctx, s, 0)
		if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatal(err)
		}
		n += len(recs)
	}
	return n
}
