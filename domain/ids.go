// Package domain holds the self-service password reset model: the Provider and User
// aggregates, their events, and the rules of DESIGN §4. It does no I/O and has no clock:
// every decision is a function of (state, command, now) returning events or a typed error.
package domain

import (
	"fmt"
	"hash/fnv"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
)

// Stream name prefixes. User streams are deterministic ("user-<CODE>-<login>") so that
// appending with NoStream makes login names unique per provider without a lookup table.
const (
	ProviderStreamPrefix = "provider-"
	UserStreamPrefix     = "user-"
	// UnmatchedStream records requests that matched no account (auditors ask who tried
	// what). New requests go to its shards (UnmatchedShard); the stream itself holds the
	// history from before the shards, and still names the family (every shard's name
	// starts with it).
	UnmatchedStream = "unmatched-requests"
	// UnmatchedShards is how many streams unmatched requests spread over, so that their
	// appends do not all queue for one stream's lock.
	UnmatchedShards = 16
	// AuditStreamPrefix opens the streams of the audit trail itself: the seals over the
	// global feed (SealStream) and each provider's record of audit reads (AuditLogStream).
	AuditStreamPrefix = "audit-"
	// SealStream holds the signed seals over the global feed (AuditSealed).
	SealStream     = AuditStreamPrefix + "seals"
	auditLogPrefix = AuditStreamPrefix + "log-"
)

// UnmatchedShard names the shard for an unmatched request: "unmatched-requests-<0..f>",
// chosen from key, which must be a keyed hash (made with the server key) of what was
// attempted, so the same attempt always lands in the same shard and nobody without the
// key can aim at one.
func UnmatchedShard(key string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return unmatchedShardName(int(h.Sum32() % UnmatchedShards))
}

func unmatchedShardName(i int) string { return UnmatchedStream + "-" + strconv.FormatInt(int64(i), 16) }

// UnmatchedStreams lists every stream that holds unmatched requests: the legacy stream
// first, then the shards in order.
func UnmatchedStreams() []string {
	out := make([]string, 0, UnmatchedShards+1)
	out = append(out, UnmatchedStream)
	for i := range UnmatchedShards {
		out = append(out, unmatchedShardName(i))
	}
	return out
}

// IsUnmatchedStream reports whether stream holds unmatched requests (legacy or a shard).
func IsUnmatchedStream(stream string) bool {
	if stream == UnmatchedStream {
		return true
	}
	n, ok := strings.CutPrefix(stream, UnmatchedStream+"-")
	if !ok || len(n) != 1 {
		return false
	}
	i, err := strconv.ParseInt(n, 16, 8)
	return err == nil && i < UnmatchedShards && unmatchedShardName(int(i)) == stream
}

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

// ValidEmail reports whether email can be a recovery address: a bare address (no display
// name, comment or angle brackets) that net/mail, the parser the mailer sends with,
// reads back unchanged, with a dot in its domain. Anything it accepts the mailer can
// address; the verification code proves the rest.
func ValidEmail(email string) bool {
	if len(email) > MaxIdentLen || !ValidText(email) || !emailRe.MatchString(email) {
		return false
	}
	a, err := mail.ParseAddress(email)
	return err == nil && a.Name == "" && a.Address == email
}
