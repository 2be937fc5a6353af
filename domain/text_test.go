package domain_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"selfreset/domain"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		name, s string
		n       int
		want    string
	}{
		{"short stays", "acme", 8, "acme"},
		{"exact stays", "acme", 4, "acme"},
		{"ascii cut in bytes", "abcdef", 3, "abc"},
		{"two-byte runes cut at a boundary", "ééé", 3, "é"},
		{"cut inside a four-byte rune drops it", "a😀b", 4, "a"},
		{"cut after a four-byte rune keeps it", "a😀b", 5, "a😀"},
		{"zero", "abc", 0, ""},
		{"empty", "", 5, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := domain.Clip(tc.s, tc.n)
			if got != tc.want || len(got) > tc.n || !utf8.ValidString(got) || !strings.HasPrefix(tc.s, got) {
				t.Fatalf("Clip(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
			}
		})
	}
}

func TestUpperFirst(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"the token has expired":  "The token has expired",
		"élan":                   "Élan",
		"Already":                "Already",
		"1 minute":               "1 minute",
		"\xffbroken stays as is": "\xffbroken stays as is",
	} {
		if got := domain.UpperFirst(in); got != want {
			t.Errorf("UpperFirst(%q) = %q, want %q", in, got, want)
		}
	}
}
