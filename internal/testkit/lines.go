package testkit

import (
	"regexp"
	"strings"
	"testing"

	"selfreset/secret"
)

var (
	// TokenLine is a reset token alone on its line: 10 Crockford base32 characters.
	TokenLine = secret.TokenLine
	// CodeLine is an email verification code alone on its line: 6 digits.
	CodeLine = regexp.MustCompile(`^[0-9]{6}$`)
)

// MatchingLines returns the lines of text (LF or CRLF) that re matches.
func MatchingLines(text string, re *regexp.Regexp) []string {
	var found []string
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if re.MatchString(line) {
			found = append(found, line)
		}
	}
	return found
}

// AloneOnLine returns the one line of text that re matches (TokenLine, CodeLine: the
// value a mail carries on its own line); it fails the test unless exactly one does.
func AloneOnLine(t testing.TB, text string, re *regexp.Regexp) string {
	t.Helper()
	found := MatchingLines(text, re)
	if len(found) != 1 {
		t.Fatalf("want exactly one line matching %s, found %q in:\n%s", re, found, text)
	}
	return found[0]
}
