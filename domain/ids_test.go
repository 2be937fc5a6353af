package domain_test

import (
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"testing"

	"selfreset/domain"
)

func TestMaskEmail(t *testing.T) {
	cases := []struct{ in, want string }{
		{"jane.doe@example.org", "j***e@e***e.org"},
		{"jane@example.org", janeMask},
		{"a@b.co", "a***@b***.co"},
		{"ab@cd.io", "a***@c***.io"},
		{"abc@mail.example.co.uk", "a***c@m***o.uk"},
		{"jane@localhost", "j***e@l***t"},
		{"élodie@exämple.fr", "é***e@e***e.fr"},
		{"jane@.org", "j***e@.***g"},
		{"no-at-sign", "***"},
		{"@example.org", "***"},
		{"jane@", "***"},
		{"", "***"},
	}
	for _, tc := range cases {
		if got := domain.MaskEmail(tc.in); got != tc.want {
			t.Errorf("MaskEmail(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNormalizeAndValidEmail(t *testing.T) {
	if got := domain.NormalizeEmail("  Jane@Example.ORG\t"); got != janeEmail {
		t.Errorf("NormalizeEmail = %q", got)
	}
	cases := []struct {
		in   string
		want bool
	}{
		{janeEmail, true},
		{"j@e.x", true},
		{"first.last+tag@sub.example.co.uk", true},
		{"", false},
		{"jane", false},
		{"jane@", false},
		{"@example.org", false},
		{"jane@example", false},
		{"ja ne@example.org", false},
		{"jane@@example.org", false},
		{strings.Repeat("a", 65) + "@example.org", false},
		{strings.Repeat("a", 64) + "@example.org", true},
		{"a@" + strings.Repeat("b", 250) + ".org", false}, // over 254
		// What the regular expression let through and the mailer then could not address:
		{"<a>@b.c", false},
		{"Jane <jane@example.org>", false},
		{"<jane@example.org>", false},
		{"jane@example.org (home)", false},
		{`"ja ne"@example.org`, false},
		{"ja,ne@example.org", false},
		{"jane.@example.org", false},
		{"ja\x00ne@example.org", false},
		{"ja\xffne@example.org", false},
	}
	for _, tc := range cases {
		got := domain.ValidEmail(tc.in)
		if got != tc.want {
			t.Errorf("ValidEmail(%q) = %v, want %v", tc.in, got, tc.want)
		}
		// Whatever it accepts, net/mail (the mailer's parser) reads back as the same address.
		if got {
			if a, err := mail.ParseAddress(tc.in); err != nil || a.Address != tc.in {
				t.Errorf("ValidEmail accepted %q, which net/mail reads as %v, %v", tc.in, a, err)
			}
		}
	}
}

func TestValidLogin(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"jane", true},
		{"j", true},
		{"jane.doe", true},
		{"jane_doe+1@acme", true},
		{"0jane", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"Jane", false}, // not normalized
		{"jane doe", false},
		{"jane-doe", false}, // a dash would make user streams ambiguous
		{".jane", false},
		{"_jane", false},
		{"jané", false},
	}
	for _, tc := range cases {
		if got := domain.ValidLogin(tc.in); got != tc.want {
			t.Errorf("ValidLogin(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := domain.NormalizeLogin("  Jane.DOE "); got != jane {
		t.Errorf("NormalizeLogin = %q", got)
	}
}

func TestValidProviderCode(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"ACME", true},
		{"AB", true},
		{"A1", true},
		{"99", true},
		{strings.Repeat("A", 32), true},
		{strings.Repeat("A", 33), false},
		{"A", false},
		{"", false},
		{"acme", false}, // not normalized
		{"AC-ME", false},
		{"AC ME", false},
		{"AC_ME", false},
	}
	for _, tc := range cases {
		if got := domain.ValidProviderCode(tc.in); got != tc.want {
			t.Errorf("ValidProviderCode(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := domain.NormalizeProviderCode(" acme\n"); got != acme {
		t.Errorf("NormalizeProviderCode = %q", got)
	}
}

func TestStreams(t *testing.T) {
	if got := domain.UserStream(" acme ", " Jane.Doe "); got != "user-ACME-jane.doe" {
		t.Errorf("UserStream = %q", got)
	}
	if got := domain.ProviderStream("acme"); got != "provider-ACME" {
		t.Errorf("ProviderStream = %q", got)
	}
	cases := []struct {
		stream      string
		code, login string
		ok          bool
	}{
		{"user-ACME-jane.doe", acme, jane, true},
		{"user-A1-j", "A1", "j", true},
		{"user-ACME-jane@acme+x", acme, "jane@acme+x", true},
		{domain.UserStream("acme", "JANE"), acme, "jane", true},
		{"user-ACME", "", "", false},
		{"user-ACME-", "", "", false},
		{"user--jane", "", "", false},
		{"user-acme-jane", "", "", false},
		{"user-ACME-Jane", "", "", false},
		{"user-ACME-jane-doe", "", "", false},
		{"provider-ACME", "", "", false},
		{"unmatched-requests", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range cases {
		code, login, err := domain.ParseUserStream(tc.stream)
		if (err == nil) != tc.ok || code != tc.code || login != tc.login {
			t.Errorf("ParseUserStream(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.stream, code, login, err, tc.code, tc.login, tc.ok)
		}
	}
	for _, tc := range []struct {
		stream, code string
		ok           bool
	}{
		{"provider-ACME", acme, true},
		{"provider-acme", "", false},
		{"provider-", "", false},
		{"user-ACME-jane", "", false},
	} {
		code, err := domain.ParseProviderStream(tc.stream)
		if (err == nil) != tc.ok || code != tc.code {
			t.Errorf("ParseProviderStream(%q) = %q, %v", tc.stream, code, err)
		}
	}
}

func TestCode(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("disk on fire"), ""},
		{domain.ErrThrottled, "throttled"},
		{domain.ErrTokenSuperseded, "token_superseded"},
		{fmt.Errorf("loading: %w", domain.ErrUserNotFound), "user_not_found"},
		{&domain.PasswordRejectedError{Reasons: []string{"is too common"}}, "password_rejected"},
		{fmt.Errorf("wrapped: %w", &domain.PasswordRejectedError{}), "password_rejected"},
		{domain.ErrPasswordRejected, "password_rejected"},
	}
	for _, tc := range cases {
		if got := domain.Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	pr := &domain.PasswordRejectedError{Reasons: []string{"a", "b"}}
	if !errors.Is(pr, domain.ErrPasswordRejected) || errors.Is(pr, domain.ErrInvalidInput) {
		t.Error("PasswordRejectedError must match ErrPasswordRejected and nothing else")
	}
	if got := pr.Error(); got != domain.ErrPasswordRejected.Message+": a; b" {
		t.Errorf("Error() = %q", got)
	}
	// Every refusal has a distinct code.
	seen := map[string]bool{}
	for _, e := range []*domain.Error{domain.ErrInvalidInput, domain.ErrForbidden, domain.ErrProviderExists, domain.ErrProviderNotFound,
		domain.ErrUserExists, domain.ErrUserNotFound, domain.ErrInvalidCredentials, domain.ErrProviderNotAllowed, domain.ErrUserNotEnabled,
		domain.ErrNotConfigured, domain.ErrIdentifiersMismatch, domain.ErrResendAfterExpiry, domain.ErrAdminLocked, domain.ErrDeactivated,
		domain.ErrDeleted, domain.ErrThrottled, domain.ErrUnknownAccount, domain.ErrNoActiveToken, domain.ErrInvalidToken, domain.ErrTokenExpired,
		domain.ErrTokenUsed, domain.ErrTokenSuperseded, domain.ErrTokenRevoked, domain.ErrTooManyAttempts, domain.ErrInvalidCode,
		domain.ErrNoPendingCode, domain.ErrCodeExpired, domain.ErrEmailNotVerified, domain.ErrReauthRequired, domain.ErrPasswordRejected,
		domain.ErrUnknownRole, domain.ErrAccountNotActive, domain.ErrLastUserAdmin, domain.ErrSelfAction,
		domain.ErrAccountAdminLocked, domain.ErrPasswordChangeRequired} {
		if e.Code == "" || e.Message == "" || seen[e.Code] {
			t.Errorf("error %q: empty or duplicate code", e.Code)
		}
		seen[e.Code] = true
	}
}

func TestEventTypesAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range domain.AllEvents() {
		if seen[e.EventType()] {
			t.Errorf("duplicate event type %q", e.EventType())
		}
		seen[e.EventType()] = true
	}
	if len(seen) != 31 {
		t.Errorf("AllEvents lists %d types", len(seen))
	}
}

func TestUnmatchedShards(t *testing.T) {
	streams := domain.UnmatchedStreams()
	if len(streams) != domain.UnmatchedShards+1 || streams[0] != domain.UnmatchedStream {
		t.Fatalf("UnmatchedStreams = %v", streams)
	}
	listed := map[string]bool{}
	for _, s := range streams {
		if listed[s] || !domain.IsUnmatchedStream(s) || !strings.HasPrefix(s, domain.UnmatchedStream) {
			t.Errorf("stream %q: listed twice, not recognised, or outside the family prefix", s)
		}
		listed[s] = true
	}
	// Keys spread over every shard, each always to the same one, and only to listed ones.
	hit := map[string]int{}
	for i := range 1000 {
		key := "k1:" + strconv.Itoa(i)
		s := domain.UnmatchedShard(key)
		if s != domain.UnmatchedShard(key) || !listed[s] || s == domain.UnmatchedStream {
			t.Fatalf("UnmatchedShard(%q) = %q", key, s)
		}
		hit[s]++
	}
	if len(hit) != domain.UnmatchedShards {
		t.Fatalf("1000 keys reached %d of %d shards: %v", len(hit), domain.UnmatchedShards, hit)
	}
	for _, s := range []string{"unmatched-requests-", "unmatched-requests-g", "unmatched-requests-10",
		"unmatched-requests-A", "unmatched-requestsx", "user-ACME-jane", ""} {
		if domain.IsUnmatchedStream(s) {
			t.Errorf("IsUnmatchedStream(%q) = true", s)
		}
	}
}
