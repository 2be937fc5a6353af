package domain

import (
	"unicode"
	"unicode/utf8"
)

// MaxIdentLen bounds, in bytes, a provider code, login name or email a client may send;
// anything longer cannot name an account (ValidProviderCode, ValidLogin, ValidEmail).
const MaxIdentLen = 254

// ValidText reports whether s may travel as an identifier, email, search, cursor, reset
// id, token or code: valid UTF-8 without control characters. This is the one rule the
// edge applies to every client string before any of it reaches a command or the store
// (PostgreSQL text and jsonb refuse NUL, and no name, address or code contains a control
// character). Lengths are each field's own rule.
func ValidText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// Clip cuts s to at most n bytes, at a rune boundary, so valid UTF-8 stays valid (PostgreSQL
// and JSON would refuse or mangle half a character). It is the one way client text is kept
// short before it is recorded, shown back in a form or put in request metadata; bytes, not
// runes, because the bounds it serves (MaxIdentLen, column and log sizes) are in bytes.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ResetErrorNote and ResetErrorReasons are the seed's note on the Password Reset Error,
// word for word: the Change Password page shows them after Submit, and the error email to
// a typed address lists them (never saying which applies). The seed has a no-break
// space before "Resend"; it is kept.
const ResetErrorNote = "While resetting the password, the user may receive a Password Reset Error message instead of a password token for the following reasons:"

var ResetErrorReasons = []string{
	"Self Password Reset is not enabled for the provider",
	"Self Password Reset is not enabled for the user account",
	"Self Password Reset was not configured with the user’s email information",
	"The user has entered an incorrect Login Name, Provider Code, or Email on the Reset Password page.",
	"You clicked on the\u00a0Resend button on the Change Password page after the validity for your Password token has been expired",
	"The account has been Admin Locked, Deactivated, or Deleted",
}

// UpperFirst capitalises the first letter of s, for messages that begin a sentence on a page
// or in an email (reasons and errors are written in lower case where they are defined).
func UpperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError { // empty, or not UTF-8: nothing to capitalise, and no byte to lose
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
