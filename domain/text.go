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
