package http

import (
	"net/http"
	"regexp"
	"testing"

	"selfreset/domain"
)

var tempPassword = regexp.MustCompile(`id="temporary_password" type="text" value="([A-Z2-7]{26})"`)

func TestCreateUserPageAndFirstSignIn(t *testing.T) {
	e := pageEnv(t, nil)
	b := e.browser()
	b.login("ACME", "boss", bossPW)
	isPage(t, b.get(PathNewUser), http.StatusOK, "Login Name", "User Administrative role", ">Create</button>")
	isPage(t, b.post(PathNewUser, "login_name", "bad name", "display_name", "X"), http.StatusBadRequest, "Enter a Login Name")
	isPage(t, b.post(PathNewUser, "login_name", "jane", "display_name", "Jane Again"), http.StatusConflict, "already exists")

	r := b.post(PathNewUser, "login_name", "Newbie", "display_name", "New Bie")
	isPage(t, r, http.StatusOK, "The user", "newbie", "only this once")
	m := tempPassword.FindSubmatch(r.body)
	if m == nil {
		t.Fatalf("no temporary password on the page:\n%s", r.body)
	}
	pw := string(m[1])
	if u := e.user("ACME", "newbie"); !u.Registered || !u.MustChangePassword {
		t.Fatalf("newbie %+v", u)
	}

	// The new user signs in and is held at Change Password until they choose their own.
	nb := e.browser()
	nb.login("ACME", "newbie", pw)
	seeOther(t, nb.get(PathSettings), PathSettingsPassword+"?required=1")
	seeOther(t, nb.get(PathSelfReset), PathSettingsPassword+"?required=1")
	isPage(t, nb.get(PathSettingsPassword+"?required=1"), http.StatusOK, "Your password is a temporary one", "Current Password")
	isPage(t, nb.post(PathSettingsPassword, "current_password", pw, "new_password", "Newbie-own-pass-1", "confirm_password", "Newbie-own-pass-9"),
		http.StatusBadRequest, "do not match")
	isPage(t, nb.post(PathSettingsPassword, "current_password", "wrong-current-1", "new_password", "Newbie-own-pass-1", "confirm_password", "Newbie-own-pass-1"),
		http.StatusUnauthorized, "The current password is not correct.")
	isPage(t, nb.post(PathSettingsPassword, "current_password", pw, "new_password", "newbie", "confirm_password", "newbie"),
		http.StatusBadRequest, "does not meet the password policy")
	r = nb.post(PathSettingsPassword, "current_password", pw, "new_password", "Newbie-own-pass-1", "confirm_password", "Newbie-own-pass-1")
	seeOther(t, r, PathSettings+"?password_changed=1")
	isPage(t, nb.follow(r), http.StatusOK, "Your password was changed. Every other session has been signed out.")
}

func TestChangePasswordPageEndsOtherSessions(t *testing.T) {
	e := pageEnv(t, nil)
	here, there := e.browser(), e.browser()
	here.login("ACME", "jane", janePW)
	there.login("ACME", "jane", janePW)
	isPage(t, here.get(PathSettings), http.StatusOK, `href="/settings/password"`, "Change Password")
	seeOther(t, here.post(PathSettingsPassword, "current_password", janePW, "new_password", "Jane-new-pass-77", "confirm_password", "Jane-new-pass-77"),
		PathSettings+"?password_changed=1")
	isPage(t, here.get(PathSettings), http.StatusOK, "Self Password Reset")
	seeOther(t, there.get(PathSettings), PathLogin)
	if typ, _, _ := e.lastEvent("ACME", "jane"); typ != "PasswordChanged" {
		t.Errorf("last event %s", typ)
	}
}

func TestUserPageActions(t *testing.T) {
	e := pageEnv(t, nil)
	b := e.browser()
	b.login("ACME", "boss", bossPW)
	page := func(login string) resp { return b.get(PathAdminUsers + "/" + login) }

	isPage(t, page("jane"), http.StatusOK, "Jane Doe", `action="/admin/users/jane/lock"`, `action="/admin/users/jane/deactivate"`,
		`action="/admin/users/jane/role/grant"`, "Send password reset", "Type the Login Name")
	isPage(t, page("ghost"), http.StatusNotFound, "No such user.")

	// Lock, and the confirmation; jane's sign-in is told whom to ask.
	r := b.post(PathAdminUsers + "/jane/lock")
	seeOther(t, r, PathAdminUsers+"/jane?done=lock")
	isPage(t, b.follow(r), http.StatusOK, "jane is now locked.", `action="/admin/users/jane/unlock"`, "admin_locked")
	jb := e.browser()
	isPage(t, jb.post("/login", "login_name", "jane", "provider_code", "ACME", "password", janePW), http.StatusForbidden, "contact your user administrator")
	isPage(t, jb.post("/login", "login_name", "jane", "provider_code", "ACME", "password", "wrong-pass-1"), http.StatusUnauthorized, "Forgot Password?")
	seeOther(t, b.post(PathAdminUsers+"/jane/unlock"), PathAdminUsers+"/jane?done=unlock")
	jb.login("ACME", "jane", janePW)

	seeOther(t, b.post(PathAdminUsers+"/jane/deactivate"), PathAdminUsers+"/jane?done=deactivate")
	isPage(t, page("jane?done=deactivate"), http.StatusOK, "jane is now deactivated.", `action="/admin/users/jane/reactivate"`)
	seeOther(t, b.post(PathAdminUsers+"/jane/reactivate"), PathAdminUsers+"/jane?done=reactivate")

	// Roles: the last user administrator keeps the role.
	isPage(t, b.post(PathAdminUsers+"/boss/role/revoke"), http.StatusConflict, "at least one user administrator")
	seeOther(t, b.post(PathAdminUsers+"/jane/role/grant"), PathAdminUsers+"/jane?done=grant")
	isPage(t, page("jane?done=grant"), http.StatusOK, "jane now has the User Administrative role.", `action="/admin/users/jane/role/revoke"`)
	seeOther(t, b.post(PathAdminUsers+"/jane/role/revoke"), PathAdminUsers+"/jane?done=revoke")

	// Send password reset: refused plainly until the user has configured an email.
	isPage(t, page("joe"), http.StatusOK, "Self Password Reset is not enabled for the user account.")
	isPage(t, b.post(PathAdminUsers+"/joe/password-reset"), http.StatusConflict, "Self Password Reset is not enabled for the user account.")
	e.enableAndConfigure("joe", joePW, "joe@example.org")
	r = b.post(PathAdminUsers + "/joe/password-reset")
	seeOther(t, r, PathAdminUsers+"/joe?done=reset")
	isPage(t, b.follow(r), http.StatusOK, "A Password token was sent to "+domain.MaskEmail("joe@example.org")+". It is valid for 5 minutes.")
	if u := e.user("ACME", "joe"); u.Token == nil || u.Token.State != domain.TokenActive {
		t.Fatalf("joe's token %+v", u.Token)
	}

	// Delete needs the login typed.
	isPage(t, b.post(PathAdminUsers+"/joe/delete", "confirm_login", "jo"), http.StatusBadRequest, "login name exactly to confirm the deletion")
	if e.user("ACME", "joe").Deleted {
		t.Fatal("deleted without confirmation")
	}
	seeOther(t, b.post(PathAdminUsers+"/joe/delete", "confirm_login", "joe"), PathAdminUsers+"/joe?done=delete")
	r = page("joe?done=delete")
	isPage(t, r, http.StatusOK, "joe has been deleted.", "deleted")
	hasNot(t, r, `action="/admin/users/joe/lock"`)

	// Not on oneself; not for anyone but a user administrator; unknown actions.
	r = page("boss")
	hasNot(t, r, `action="/admin/users/boss/lock"`)
	hasNot(t, r, `action="/admin/users/boss/delete"`)
	isPage(t, b.post(PathAdminUsers+"/boss/lock"), http.StatusConflict, "your own account")
	isPage(t, b.post(PathAdminUsers+"/jane/explode"), http.StatusNotFound, "No such action.")
	jb.login("ACME", "jane", janePW)
	isPage(t, jb.get(PathAdminUsers+"/joe"), http.StatusForbidden, "User Administrative role")
	isPage(t, jb.post(PathAdminUsers+"/boss/lock"), http.StatusForbidden, "User Administrative role")
	isPage(t, jb.get(PathNewUser), http.StatusForbidden, "User Administrative role")
	if e.user("ACME", "boss").AdminLocked {
		t.Fatal("a refused lock locked boss")
	}
}

func TestUserListPageFilters(t *testing.T) {
	e := pgPageEnv(t, nil)
	b := e.browser()
	b.login("ACME", "boss", bossPW)
	seeOther(t, b.post(PathAdminUsers+"/joe/deactivate"), PathAdminUsers+"/joe?done=deactivate")
	e.projectAdminUsers(domain.ProviderStream("ACME"), domain.UserStream("ACME", "boss"), domain.UserStream("ACME", "jane"), domain.UserStream("ACME", "joe"))
	r := b.get(PathAdminUsers + "?status=deactivated")
	isPage(t, r, http.StatusOK, "Joe Bloggs", `<option value="deactivated" selected>`, `href="/admin/users/joe"`, "Create user")
	hasNot(t, r, "Jane Doe")
	r = b.get(PathAdminUsers + "?sort=name&limit=1")
	isPage(t, r, http.StatusOK, "Bo Boss", "Next page")
	hasNot(t, r, "Jane Doe")
	isPage(t, b.get(PathAdminUsers+"?status=nope"), http.StatusBadRequest, "Choose a status")
}
