package http

// Every string a client sends (JSON fields, form fields, query parameters, path
// variables) passes one check here before a handler reads it: domain.ValidText. A NUL
// byte or invalid UTF-8 is 400 bad_request with the error envelope (a 400 page for the
// pages), never a command, a query or a 500 from the store. Passwords are the one
// exception: they are hashed, never stored or compared as text, and a user may have
// chosen any characters.

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"reflect"
	"strings"

	"github.com/gorilla/mux"

	"selfreset/domain"
)

// secretField reports whether a JSON or form field carries a password (password,
// new_password, confirm_password): the fields checkText leaves alone.
func secretField(name string) bool { return strings.HasSuffix(name, "password") }

// badText is the refusal for a field that is not acceptable text. It names the field
// (the client's own key) but never echoes the value.
func badText(name string) *Error {
	return NewError(http.StatusBadRequest, CodeBadRequest,
		domain.Clip(name, 64)+" must be valid UTF-8 text without control characters")
}

// checkText is the edge's one rule: it returns the refusal for the first value that is
// not domain.ValidText, or nil.
func checkText(name, value string) *Error {
	if secretField(name) || domain.ValidText(value) {
		return nil
	}
	return badText(name)
}

// checkValues applies checkText to every key and value of a query string or form.
func checkValues(vals url.Values) *Error {
	for k, vs := range vals {
		if !domain.ValidText(k) {
			return badText("a parameter name")
		}
		for _, v := range vs {
			if e := checkText(k, v); e != nil {
				return e
			}
		}
	}
	return nil
}

// checkJSONFields applies checkText to the string fields (and non-nil *string fields) of
// the struct dst points to, named by their JSON keys.
func checkJSONFields(dst any) *Error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	v = v.Elem()
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Pointer && !fv.IsNil() {
			fv = fv.Elem()
		}
		if fv.Kind() != reflect.String {
			continue
		}
		if e := checkText(name, fv.String()); e != nil {
			return e
		}
	}
	return nil
}

// checkRequestText is router middleware (it runs after matching, so the path variables
// are known): query parameters and path variables must be acceptable text. API routes
// answer with the error envelope, pages with a 400 page.
func (s *Server) checkRequestText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := checkValues(r.URL.Query())
		for k, v := range mux.Vars(r) {
			if e != nil {
				break
			}
			e = checkText(k, v)
		}
		if e == nil {
			next.ServeHTTP(w, r)
			return
		}
		if !isPageRequest(r) {
			writeAPIError(w, e)
			return
		}
		s.renderMessage(w, r, e.Status, "Request refused", sentence(e.Message), "", link{URL: PathLogin, Text: "Back to the login page"})
	})
}

// isPageRequest reports whether r is for an HTML page rather than the JSON API or the health
// checks (which answer JSON).
func isPageRequest(r *http.Request) bool {
	p := r.URL.Path
	return !strings.HasPrefix(p, APIPrefix+"/") && p != "/healthz" && p != "/readyz"
}

// The admin user list pages by keyset: a cursor is the last login of the page before,
// base64url without padding. It is not sealed (a login the caller may see anyway), only
// checked: what decodes must be acceptable text of identifier length.

// encodeCursor is the cursor for the page after the one ending at login.
func encodeCursor(login string) string { return base64.RawURLEncoding.EncodeToString([]byte(login)) }

// decodeCursor reads a cursor; ok is false for anything encodeCursor could not have made
// from a login the list shows.
func decodeCursor(c string) (login string, ok bool) { return decodeCursorText(c, maxIdentLen) }

// decodeCursorText reads a cursor that encodes at most max bytes of valid text.
func decodeCursorText(c string, max int) (string, bool) {
	if c == "" || len(c) > base64.RawURLEncoding.EncodedLen(max) {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	// Only the canonical spelling: the decoder also skips line breaks and ignores
	// stray low bits, so several strings would otherwise name one cursor.
	if err != nil || len(b) == 0 || len(b) > max || !domain.ValidText(string(b)) || encodeCursor(string(b)) != c {
		return "", false
	}
	return string(b), true
}
