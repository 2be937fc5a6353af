// Package config reads the service's configuration from environment variables.
//
// It is pure: FromEnv takes the lookup function (os.Getenv in the binary, a map in tests)
// and does no I/O of its own, so every rule here is table-tested. Every setting lives
// here, each as a field, a constant naming its variable, a default and a check; the
// packages that use them (mailer, http, …) get plain structs and read no environment.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"selfreset/domain"
	"selfreset/mailer"
	"selfreset/secret"
)

// Environment variables.
const (
	EnvDatabaseURL   = "SELFRESET_DATABASE_URL"
	EnvEventStoreURL = "SELFRESET_EVENTSTORE_URL"
	EnvSecret        = "SELFRESET_SECRET"
	// EnvSecretPrevious lists earlier secrets, comma-separated, kept during a key rotation
	// so that tokens and codes derived under them stay valid until they expire.
	EnvSecretPrevious = "SELFRESET_SECRET_PREVIOUS"
	EnvResetTokenTTL  = "SELFRESET_RESET_TOKEN_TTL"
	EnvEmailCodeTTL   = "SELFRESET_EMAIL_CODE_TTL"

	EnvAddr = "SELFRESET_ADDR"
	// EnvMetricsAddr is where `serve` answers Prometheus scrapes on GET /metrics, a
	// listener of its own (host:port); unset, there is none.
	EnvMetricsAddr = "SELFRESET_METRICS_ADDR"
	// EnvPprof (true/false, default false) adds Go's profiling endpoints (/debug/pprof/)
	// to the metrics listener; it needs SELFRESET_METRICS_ADDR.
	EnvPprof          = "SELFRESET_PPROF"
	EnvRateLimitPerIP = "SELFRESET_RATE_LIMIT_PER_IP"
	// EnvRateLimitPerAccount is the same budget per account; unset means the per-IP
	// figure, 0 turns it off.
	EnvRateLimitPerAccount = "SELFRESET_RATE_LIMIT_PER_ACCOUNT"
	// EnvResetWorkers is how many queued Forgot Password commands one worker process
	// (serve --role all or worker) decides at once, each on a PostgreSQL connection of
	// its own; Resend gets a quarter of it. Replicas add up.
	EnvResetWorkers   = "SELFRESET_RESET_WORKERS"
	EnvTrustedProxies = "SELFRESET_TRUSTED_PROXIES"
	// EnvHashConcurrency is how many argon2id computations run at once in a process
	// (each holds the hash's memory); more wait in line. Unset or 0:
	// password.DefaultSlots (one per two CPUs).
	EnvHashConcurrency = "SELFRESET_HASH_CONCURRENCY"
	// EnvNotifyUnknownRecipients (true/false, default true): a Forgot Password request
	// that cannot reach the account's verified email sends the typed address the fixed
	// "Password Reset Error" text (docs/operations.md weighs it).
	EnvNotifyUnknownRecipients = "SELFRESET_NOTIFY_UNKNOWN_RECIPIENTS"

	// EnvAuditSealKey is the key the audit seals over the event feed are signed with; it
	// must differ from SELFRESET_SECRET (an auditor may hold one without the other).
	// Unset, serve appends no seals.
	EnvAuditSealKey = "SELFRESET_AUDIT_SEAL_KEY"
	// EnvAuditSealKeyPrevious lists earlier seal keys, comma-separated, so that seals
	// signed before a rotation still verify.
	EnvAuditSealKeyPrevious = "SELFRESET_AUDIT_SEAL_KEY_PREVIOUS"
	// EnvAuditSealInterval is how often serve seals the feed (a Go duration; default 1m).
	EnvAuditSealInterval = "SELFRESET_AUDIT_SEAL_INTERVAL"
)

// MaxHashConcurrency bounds SELFRESET_HASH_CONCURRENCY: beyond it the setting stops
// bounding memory (256 × 19 MiB is already ~5 GiB).
const MaxHashConcurrency = 256

// Defaults of the HTTP settings.
const (
	DefaultAddr           = "127.0.0.1:8080"
	DefaultRateLimitPerIP = 30
	DefaultResetWorkers   = 8
)

// DevSecret is the fixed server secret used in development mode when SELFRESET_SECRET is
// not set. It is public (it is in this file), so anything derived from it is forgeable:
// FromEnv refuses it outside development mode.
const DevSecret = "selfreset-development-secret-do-not-use-in-production"

// EventStoreKind says which adapter holds the events.
type EventStoreKind string

const (
	EventStorePostgres EventStoreKind = "postgres"
	EventStoreESDB     EventStoreKind = "esdb"
)

// Config is everything the binary reads from its environment.
type Config struct {
	// DatabaseURL is the PostgreSQL database (read models, and the event store unless
	// EventStoreURL names another one).
	DatabaseURL string
	// EventStore is the adapter, EventStoreURL its connection string (DatabaseURL for
	// the default Postgres event store).
	EventStore    EventStoreKind
	EventStoreURL string
	// Secret is the server key tokens and codes are derived from; SecretKeyID names it
	// in events (the first 8 hex digits of its SHA-256), so older keys can be kept
	// alongside a new one when the key is rotated.
	Secret      []byte
	SecretKeyID string
	// DevSecret is true when Secret is the public development key (development mode only).
	DevSecret bool
	// PreviousSecrets are earlier keys, still accepted for secrets derived under them.
	PreviousSecrets [][]byte

	ResetTokenTTL time.Duration
	EmailCodeTTL  time.Duration

	// Addr is where `serve` listens (host:port).
	Addr string
	// MetricsAddr is where `serve` serves /metrics (host:port); "" means not at all.
	MetricsAddr string
	// Pprof serves /debug/pprof/ on the metrics listener.
	Pprof bool
	// RateLimitPerIP is requests per minute per client IP on the login, forgot-password,
	// resend, code and token routes; 0 turns the limit off.
	RateLimitPerIP int
	// RateLimitPerAccount is that budget per account (provider + login); 0 turns it off.
	// Unset (the variable), it equals RateLimitPerIP. http.Config gives 0 the same meaning.
	RateLimitPerAccount int
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// ResetWorkers is the intake worker concurrency per process (default 8, 1 to 64).
	ResetWorkers int
	// HashConcurrency is how many argon2id computations run at once; 0 means
	// password.DefaultSlots.
	HashConcurrency int
	// NotifyUnknownRecipients: refused requests mail the typed address the fixed reasons
	// text when they cannot tell the verified owner (default true).
	NotifyUnknownRecipients bool

	// AuditSealKey signs the audit seals (nil: no seals are appended), AuditSealKeyID
	// names it in them; PreviousAuditSealKeys still verify older seals.
	AuditSealKey          []byte
	AuditSealKeyID        string
	PreviousAuditSealKeys [][]byte
	AuditSealInterval     time.Duration

	// Mail is what the mailer gets (SELFRESET_MAIL_*, SELFRESET_SMTP_*,
	// SELFRESET_MAILGUN_*, SELFRESET_PUBLIC_URL), checked and with defaults filled in.
	Mail mailer.Config
	// PublicURLSet says SELFRESET_PUBLIC_URL was given; otherwise Mail.PublicURL is
	// http:// + Addr.
	PublicURLSet bool
}

// Option changes how FromEnv reads the environment.
type Option func(*options)

type options struct{ dev, secretOptional bool }

// Dev is development mode: without SELFRESET_SECRET the public DevSecret is used
// (the caller should say so loudly) instead of refusing to start.
func Dev() Option { return func(o *options) { o.dev = true } }

// SecretOptional is for commands that derive nothing from the server key (audit): an
// auditor reads the history without holding the key that could forge tokens. A secret
// that is set is still checked; without one, Secret and SecretKeyID stay empty.
func SecretOptional() Option { return func(o *options) { o.secretOptional = true } }

// Error is a configuration problem; its message names the variable and what is wrong.
type Error struct {
	Var string
	Msg string
}

func (e *Error) Error() string { return e.Var + ": " + e.Msg }

// FromEnv reads and checks the configuration. The first problem found is returned as an *Error.
func FromEnv(getenv func(string) string, opts ...Option) (Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var c Config
	// In this order: the audit seal keys must differ from the secrets, and the mail's
	// default public URL is the listen address.
	for _, read := range []func(getenv func(string) string) error{
		c.stores,
		func(getenv func(string) string) error { return c.secrets(getenv, o) },
		c.auditSealKeys,
		c.lifetimes,
		c.listeners,
		c.workers,
		c.mail,
	} {
		if err := read(getenv); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

// stores reads the read-model database and the event store.
func (c *Config) stores(getenv func(string) string) error {
	c.DatabaseURL = strings.TrimSpace(getenv(EnvDatabaseURL))
	if c.DatabaseURL == "" {
		return &Error{EnvDatabaseURL, "not set; it must name the PostgreSQL database, e.g. postgres://user:password@host:5432/selfreset"}
	}
	if err := checkPostgresURL(c.DatabaseURL); err != "" {
		return &Error{EnvDatabaseURL, err}
	}
	c.EventStore, c.EventStoreURL = EventStorePostgres, c.DatabaseURL
	es := strings.TrimSpace(getenv(EnvEventStoreURL))
	if es == "" {
		return nil
	}
	switch scheme(es) {
	case "esdb", "esdb+discover":
		c.EventStore, c.EventStoreURL = EventStoreESDB, es
	case "postgres", "postgresql":
		if err := checkPostgresURL(es); err != "" {
			return &Error{EnvEventStoreURL, err}
		}
		c.EventStoreURL = es
	default:
		return &Error{EnvEventStoreURL, "must start with esdb:// or esdb+discover:// (EventStoreDB) or postgres:// (a separate PostgreSQL event store)"}
	}
	return nil
}

// secrets reads the server key and the earlier keys kept during a rotation.
func (c *Config) secrets(getenv func(string) string, o options) error {
	switch s := getenv(EnvSecret); {
	case s == "" && o.secretOptional:
		// nothing to derive, nothing to check
	case s == "" && o.dev:
		c.Secret, c.DevSecret = []byte(DevSecret), true
	case s == "":
		return &Error{EnvSecret, fmt.Sprintf("not set; it must hold at least %d random bytes (e.g. openssl rand -base64 48), or pass --dev to use the development key", secret.MinKeyLength)}
	case s == DevSecret && !o.dev:
		return &Error{EnvSecret, "is the public development key; generate a secret of your own (e.g. openssl rand -base64 48)"}
	case len(s) < secret.MinKeyLength:
		return &Error{EnvSecret, fmt.Sprintf("is %d bytes; at least %d are required (e.g. openssl rand -base64 48)", len(s), secret.MinKeyLength)}
	default:
		c.Secret, c.DevSecret = []byte(s), s == DevSecret
	}
	if c.Secret != nil {
		c.SecretKeyID = KeyID(c.Secret)
	}
	for i, old := range strings.Split(getenv(EnvSecretPrevious), ",") {
		old = strings.TrimSpace(old)
		if old == "" {
			continue
		}
		if len(old) < secret.MinKeyLength {
			return &Error{EnvSecretPrevious, fmt.Sprintf("entry %d is %d bytes; at least %d are required", i+1, len(old), secret.MinKeyLength)}
		}
		if c.Secret != nil && old == string(c.Secret) {
			return &Error{EnvSecretPrevious, fmt.Sprintf("entry %d is the current %s; list only earlier secrets", i+1, EnvSecret)}
		}
		c.PreviousSecrets = append(c.PreviousSecrets, []byte(old))
	}
	return nil
}

// lifetimes reads how long secrets live and how often the feed is sealed.
func (c *Config) lifetimes(getenv func(string) string) error {
	def := domain.DefaultPolicy()
	var err error
	if c.ResetTokenTTL, err = duration(getenv, EnvResetTokenTTL, def.ResetTokenTTL); err != nil {
		return err
	}
	if c.EmailCodeTTL, err = duration(getenv, EnvEmailCodeTTL, def.EmailCodeTTL); err != nil {
		return err
	}
	c.AuditSealInterval, err = duration(getenv, EnvAuditSealInterval, DefaultAuditSealInterval)
	return err
}

// listeners reads the HTTP side: where serve listens, its rate limits and trusted proxies.
func (c *Config) listeners(getenv func(string) string) error {
	var err error
	if c.Addr, err = listenAddr(getenv(EnvAddr)); err != nil {
		return err
	}
	if m := strings.TrimSpace(getenv(EnvMetricsAddr)); m != "" {
		if c.MetricsAddr, err = hostPort(EnvMetricsAddr, m); err != nil {
			return err
		}
		if c.MetricsAddr == c.Addr {
			return &Error{EnvMetricsAddr, fmt.Sprintf("%q is %s; metrics need a listener of their own", m, EnvAddr)}
		}
	}
	if c.Pprof, err = boolean(getenv, EnvPprof, false); err != nil {
		return err
	}
	if c.Pprof && c.MetricsAddr == "" {
		return &Error{EnvPprof, "needs " + EnvMetricsAddr + ": the profiles are served on the metrics listener"}
	}
	if c.RateLimitPerIP, err = nonNegativeInt(getenv, EnvRateLimitPerIP, DefaultRateLimitPerIP); err != nil {
		return err
	}
	if c.RateLimitPerAccount, err = nonNegativeInt(getenv, EnvRateLimitPerAccount, c.RateLimitPerIP); err != nil {
		return err
	}
	c.TrustedProxies, err = prefixes(getenv(EnvTrustedProxies))
	return err
}

// workers reads how much work one process does at once.
func (c *Config) workers(getenv func(string) string) error {
	var err error
	if c.ResetWorkers, err = nonNegativeInt(getenv, EnvResetWorkers, DefaultResetWorkers); err != nil {
		return err
	}
	if c.ResetWorkers < 1 || c.ResetWorkers > 64 {
		return &Error{EnvResetWorkers, fmt.Sprintf("%d must be from 1 to 64", c.ResetWorkers)}
	}
	if c.HashConcurrency, err = nonNegativeInt(getenv, EnvHashConcurrency, 0); err != nil {
		return err
	}
	if c.HashConcurrency > MaxHashConcurrency {
		return &Error{EnvHashConcurrency, fmt.Sprintf("%d must be from 0 (one per two CPUs) to %d", c.HashConcurrency, MaxHashConcurrency)}
	}
	c.NotifyUnknownRecipients, err = boolean(getenv, EnvNotifyUnknownRecipients, true)
	return err
}

// DefaultAuditSealInterval is how often serve seals the feed.
const DefaultAuditSealInterval = time.Minute

// auditSealKeys reads the seal key and its predecessors. None may be the server secret:
// whoever can forge tokens must not be able to forge seals too, and the other way round.
func (c *Config) auditSealKeys(getenv func(string) string) error {
	serverKeys := map[string]bool{string(c.Secret): c.Secret != nil}
	for _, k := range c.PreviousSecrets {
		serverKeys[string(k)] = true
	}
	check := func(name, k string) error {
		switch {
		case len(k) < secret.MinKeyLength:
			return &Error{name, fmt.Sprintf("is %d bytes; at least %d are required (e.g. openssl rand -base64 48)", len(k), secret.MinKeyLength)}
		case serverKeys[k] || k == DevSecret:
			return &Error{name, "is a server secret (" + EnvSecret + "); the seal key must be a key of its own"}
		}
		return nil
	}
	if k := strings.TrimSpace(getenv(EnvAuditSealKey)); k != "" {
		if err := check(EnvAuditSealKey, k); err != nil {
			return err
		}
		c.AuditSealKey, c.AuditSealKeyID = []byte(k), KeyID([]byte(k))
	}
	for i, old := range strings.Split(getenv(EnvAuditSealKeyPrevious), ",") {
		old = strings.TrimSpace(old)
		if old == "" {
			continue
		}
		if err := check(EnvAuditSealKeyPrevious, old); err != nil {
			err.(*Error).Msg = fmt.Sprintf("entry %d %s", i+1, err.(*Error).Msg)
			return err
		}
		c.PreviousAuditSealKeys = append(c.PreviousAuditSealKeys, []byte(old))
	}
	return nil
}

// AuditSealKeys are the seal keys by id, the current one and the previous ones, for
// verifying seals.
func (c Config) AuditSealKeys() map[string][]byte {
	keys := map[string][]byte{}
	for _, k := range c.PreviousAuditSealKeys {
		keys[KeyID(k)] = k
	}
	if c.AuditSealKey != nil {
		keys[c.AuditSealKeyID] = c.AuditSealKey
	}
	return keys
}

func listenAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultAddr, nil
	}
	return hostPort(EnvAddr, s)
}

// hostPort checks a listen address read from the variable name.
func hostPort(name, s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", &Error{name, fmt.Sprintf("%q is not host:port (e.g. 127.0.0.1:9090 or :9090)", s)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", &Error{name, fmt.Sprintf("%q has no valid port", s)}
	}
	_ = host // any host the OS accepts; listening reports the rest
	return s, nil
}

// setting reads the variable name with parse; unset or blank means def. parse says what
// is wrong with a value it refuses ("must be …"), and the Error quotes the value with it.
func setting[T any](getenv func(string) string, name string, def T, parse func(s string) (T, string)) (T, error) {
	s := strings.TrimSpace(getenv(name))
	if s == "" {
		return def, nil
	}
	v, problem := parse(s)
	if problem != "" {
		var zero T
		return zero, &Error{name, fmt.Sprintf("%q %s", s, problem)}
	}
	return v, nil
}

func nonNegativeInt(getenv func(string) string, name string, def int) (int, error) {
	return setting(getenv, name, def, func(s string) (int, string) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, "must be a whole number, 0 or more"
		}
		return n, ""
	})
}

// boolean reads true/false (strconv.ParseBool's spellings); unset means def.
func boolean(getenv func(string) string, name string, def bool) (bool, error) {
	return setting(getenv, name, def, func(s string) (bool, string) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, "must be true or false"
		}
		return b, ""
	})
}

// prefixes parses a comma-separated list of CIDRs or single addresses.
func prefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, &Error{EnvTrustedProxies, fmt.Sprintf("%q is neither an address nor a CIDR prefix", f)}
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// KeyID names a server key: the first 8 hex digits of its SHA-256.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// Keyring builds the keyring tokens and codes are derived with.
func (c Config) Keyring() (*secret.Keyring, error) {
	if c.Secret == nil {
		return nil, &Error{EnvSecret, "not set; this command needs the server key"}
	}
	keys := map[string][]byte{c.SecretKeyID: c.Secret}
	for _, old := range c.PreviousSecrets {
		keys[KeyID(old)] = old
	}
	return secret.NewKeyring(c.SecretKeyID, keys)
}

// Policy is the domain's default policy with the configured lifetimes.
func (c Config) Policy() domain.Policy {
	p := domain.DefaultPolicy()
	p.ResetTokenTTL = c.ResetTokenTTL
	p.EmailCodeTTL = c.EmailCodeTTL
	return p
}

func duration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	return setting(getenv, name, def, func(s string) (time.Duration, string) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, "is not a duration; write it like 5m or 90s"
		}
		if d <= 0 {
			return 0, "must be greater than zero"
		}
		return d, ""
	})
}

// scheme is the lower-cased scheme of a URL-looking string, or "".
func scheme(s string) string {
	i := strings.Index(s, "://")
	if i <= 0 {
		return ""
	}
	return strings.ToLower(s[:i])
}

// checkPostgresURL accepts postgres:// URLs and libpq key=value strings ("host=… dbname=…").
// It only checks the shape; the driver reports anything else when it connects.
func checkPostgresURL(s string) string {
	switch scheme(s) {
	case "postgres", "postgresql":
		if _, err := url.Parse(s); err != nil {
			return "is not a valid URL (check for unescaped characters in the password)"
		}
		return ""
	case "":
		if strings.Contains(s, "=") {
			return ""
		}
	}
	return "must be a postgres:// URL or a key=value connection string"
}
