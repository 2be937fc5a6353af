// Package domain holds the self-service password reset model: the Provider and User
// aggregates, their events, and the rules of DESIGN §4. It does no I/O and has no clock:
// every decision is a function of (state, command, now) returning events or a typed error.
package domain

import (
	"fmt"
	"regexp"
	"strings"
)

// Stream name prefixes. User streams are deterministic ("user-<CODE>-<login>") so that
// appending with NoStream makes login names unique per provider without a lookup table.
const (
	ProviderStreamPrefix = "provider-"
	UserStreamPrefix     = "user-"
	// UnmatchedStream records requests that matched no account (auditors ask who tried what).
	UnmatchedStream = "unmatched-requests"
	// AuditStreamPrefix opens the streams of the audit trail itself: the seals over the
	// global feed (SealStream) and each provider's record of audit reads (AuditLogStream).
	AuditStreamPrefix = "audit-"
	// SealStream holds the signed seals over the global feed (AuditSealed).
	SealStream     = AuditStreamPrefix + "seals"
	auditLogPrefix = AuditStreamPrefix + "log-"
)

// StreamPrefixes lists every stream family this service writes; the read side subscribes to these.
var StreamPrefixes = []string{ProviderStreamPrefix, UserStreamPrefix, UnmatchedStream, AuditStreamPrefix}

// AuditLogStream names the stream recording who read provider code's history (AuditLogRead).
func AuditLogStream(code string) string { return auditLogPrefix + NormalizeProviderCode(code) }

var (
	providerCodeRe = regexp.MustCompile(`^[A-Z0-9]{2,32}$`)
	loginRe        = regexp.MustCompile(`^[a-z0-9][a-z0-9._@+]{0,63}$`)
)

// NormalizeProviderCode upper-cases and trims a provider code.
func NormalizeProviderCode(code string) string { return strings.ToUpper(strings.TrimSpace(code)) }

// NormalizeLogin case-folds and trims a login name.
func NormalizeLogin(login string) string { return strings.ToLower(strings.TrimSpace(login)) }

// ValidProviderCode reports whether a normalized code is well formed (letters and digits;
// no dash, so stream names split unambiguously).
func ValidProviderCode(code string) bool { return providerCodeRe.MatchString(code) }

// ValidLogin reports whether a normalized login name is well formed.
func ValidLogin(login string) bool { return loginRe.MatchString(login) }

// ProviderStream names a provider's stream.
func ProviderStream(code string) string { return ProviderStreamPrefix + NormalizeProviderCode(code) }

// UserStream names a user's stream.
func UserStream(code, login string) string {
	return UserStreamPrefix + NormalizeProviderCode(code) + "-" + NormalizeLogin(login)
}

// ParseUserStream splits a user stream name into provider code and login.
func ParseUserStream(stream string) (code, login string, err error) {
	rest, ok := strings.CutPrefix(stream, UserStreamPrefix)
	if !ok {
		return "", "", fmt.Errorf("not a user stream: %q", stream)
	}
	code, login, ok = strings.Cut(rest, "-")
	if !ok || !ValidProviderCode(code) || !ValidLogin(login) {
		return "", "", fmt.Errorf("malformed user stream: %q", stream)
	}
	return code, login, nil
}

// ParseProviderStream returns the provider code of a provider stream.
func ParseProviderStream(stream string) (string, error) {
	code, ok := strings.CutPrefix(stream, ProviderStreamPrefix)
	if !ok || !ValidProviderCode(code) {
		return "", fmt.Errorf("not a provider stream: %q", stream)
	}
	return code, nil
}

// MaskEmail keeps enough of an address for its owner to recognise it and no more:
// "jane.doe@example.org" → "j***e@e***e.org".
func MaskEmail(email string) string {
	local, host, ok := strings.Cut(email, "@")
	if !ok || local == "" || host == "" {
		return "***"
	}
	maskPart := func(s string) string {
		r := []rune(s)
		switch len(r) {
		case 1:
			return string(r) + "***"
		case 2:
			return string(r[0]) + "***"
		default:
			return string(r[0]) + "***" + string(r[len(r)-1])
		}
	}
	name, tld := host, ""
	if i := strings.LastIndex(host, "."); i > 0 {
		name, tld = host[:i], host[i:]
	}
	return maskPart(local) + "@" + maskPart(name) + tld
}

// NormalizeEmail trims and lower-cases an address for comparison.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

var emailRe = regexp.MustCompile(`^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$`)

// ValidEmail is a deliberately loose syntax check; the verification code proves the rest.
func ValidEmail(email string) bool { return len(email) <= 254 && emailRe.MatchString(email) }
