package config

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"selfreset/secret"
)

const (
	testDB     = "postgres://app:pw@db:5432/selfreset?sslmode=disable"
	testSecret = "0123456789abcdef0123456789abcdef" // 32 bytes
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestFromEnv(t *testing.T) {
	base := []string{EnvDatabaseURL, testDB, EnvSecret, testSecret}
	with := func(kv ...string) func(string) string { return env(append(append([]string{}, base...), kv...)...) }

	runEnvCases(t, []envCase{
		{
			name:   "defaults",
			getenv: with(),
			check: func(t *testing.T, c Config) {
				if c.DatabaseURL != testDB || c.EventStore != EventStorePostgres || c.EventStoreURL != testDB {
					t.Errorf("store: %q %q %q", c.DatabaseURL, c.EventStore, c.EventStoreURL)
				}
				if c.ResetTokenTTL != 5*time.Minute || c.EmailCodeTTL != 10*time.Minute {
					t.Errorf("ttls: %v %v", c.ResetTokenTTL, c.EmailCodeTTL)
				}
				if string(c.Secret) != testSecret || c.DevSecret {
					t.Errorf("secret: dev=%v", c.DevSecret)
				}
				if c.SecretKeyID != KeyID([]byte(testSecret)) || len(c.SecretKeyID) != 8 {
					t.Errorf("key id %q", c.SecretKeyID)
				}
			},
		},
		{
			name:   "http settings",
			getenv: with(EnvAddr, ":9090", EnvRateLimitPerIP, "0", EnvTrustedProxies, "10.0.0.0/8, 192.0.2.7"),
			check: func(t *testing.T, c Config) {
				if c.Addr != ":9090" || c.RateLimitPerIP != 0 || len(c.TrustedProxies) != 2 ||
					c.TrustedProxies[0].String() != "10.0.0.0/8" || c.TrustedProxies[1].String() != "192.0.2.7/32" {
					t.Errorf("addr %q limit %d proxies %v", c.Addr, c.RateLimitPerIP, c.TrustedProxies)
				}
			},
		},
		{name: "http defaults", getenv: with(), check: func(t *testing.T, c Config) {
			if c.Addr != DefaultAddr || c.RateLimitPerIP != DefaultRateLimitPerIP || c.TrustedProxies != nil {
				t.Errorf("addr %q limit %d proxies %v", c.Addr, c.RateLimitPerIP, c.TrustedProxies)
			}
			if c.MetricsAddr != "" || c.Pprof {
				t.Errorf("metrics on %q, pprof %v without %s", c.MetricsAddr, c.Pprof, EnvMetricsAddr)
			}
		}},
		{name: "metrics addr", getenv: with(EnvMetricsAddr, " 127.0.0.1:9464 "), check: func(t *testing.T, c Config) {
			if c.MetricsAddr != "127.0.0.1:9464" || c.Pprof {
				t.Errorf("metrics addr %q, pprof %v", c.MetricsAddr, c.Pprof)
			}
		}},
		{name: "pprof on the metrics listener", getenv: with(EnvMetricsAddr, "127.0.0.1:9464", EnvPprof, " 1 "), check: func(t *testing.T, c Config) {
			if !c.Pprof {
				t.Error("pprof off")
			}
		}},
		{name: "pprof without metrics", getenv: with(EnvPprof, "true"), wantVar: EnvPprof, wantMsg: EnvMetricsAddr},
		{name: "pprof bad value", getenv: with(EnvMetricsAddr, "127.0.0.1:9464", EnvPprof, "maybe"), wantVar: EnvPprof, wantMsg: "true or false"},
		{name: "previous secrets", getenv: with(EnvSecretPrevious, " "+strings.Repeat("o", 32)+" , "+strings.Repeat("p", 40)),
			check: func(t *testing.T, c Config) {
				if len(c.PreviousSecrets) != 2 {
					t.Fatalf("previous secrets: %d", len(c.PreviousSecrets))
				}
				k, err := c.Keyring()
				if err != nil {
					t.Fatal(err)
				}
				if k.CurrentKeyID() != KeyID([]byte(testSecret)) {
					t.Errorf("current key %q", k.CurrentKeyID())
				}
				if _, err := k.Value(secret.KindResetToken, KeyID([]byte(strings.Repeat("o", 32))), "id"); err != nil {
					t.Errorf("old key not in the keyring: %v", err)
				}
			}},
		{name: "short previous secret", getenv: with(EnvSecretPrevious, "short"), wantVar: EnvSecretPrevious, wantMsg: "at least 32"},
		{name: "previous equals current", getenv: with(EnvSecretPrevious, testSecret), wantVar: EnvSecretPrevious, wantMsg: "current"},
		{name: "per-account limit follows the per-IP one unless set", getenv: with(EnvRateLimitPerIP, "12"), check: func(t *testing.T, c Config) {
			if c.RateLimitPerAccount != 12 || c.ResetWorkers != DefaultResetWorkers {
				t.Errorf("per account %d workers %d", c.RateLimitPerAccount, c.ResetWorkers)
			}
		}},
		{name: "per-account limit off on its own", getenv: with(EnvRateLimitPerIP, "12", EnvRateLimitPerAccount, "0", EnvResetWorkers, "32"), check: func(t *testing.T, c Config) {
			if c.RateLimitPerIP != 12 || c.RateLimitPerAccount != 0 || c.ResetWorkers != 32 {
				t.Errorf("per ip %d per account %d workers %d", c.RateLimitPerIP, c.RateLimitPerAccount, c.ResetWorkers)
			}
		}},
		{name: "zero workers", getenv: with(EnvResetWorkers, "0"), wantVar: EnvResetWorkers, wantMsg: "1 to 64"},
		{name: "typed-address notices on by default", getenv: with(), check: func(t *testing.T, c Config) {
			if !c.NotifyUnknownRecipients {
				t.Error("NotifyUnknownRecipients off by default")
			}
		}},
		{name: "typed-address notices off", getenv: with(EnvNotifyUnknownRecipients, " false "), check: func(t *testing.T, c Config) {
			if c.NotifyUnknownRecipients {
				t.Error("NotifyUnknownRecipients still on")
			}
		}},
		{name: "typed-address notices bad value", getenv: with(EnvNotifyUnknownRecipients, "sometimes"), wantVar: EnvNotifyUnknownRecipients, wantMsg: "true or false"},
		{name: "hash concurrency defaults to one per two CPUs", getenv: with(), check: func(t *testing.T, c Config) {
			if c.HashConcurrency != 0 {
				t.Errorf("hash concurrency %d, want 0 (one per two CPUs)", c.HashConcurrency)
			}
		}},
		{name: "hash concurrency", getenv: with(EnvHashConcurrency, " 3 "), check: func(t *testing.T, c Config) {
			if c.HashConcurrency != 3 {
				t.Errorf("hash concurrency %d", c.HashConcurrency)
			}
		}},
		{name: "negative hash concurrency", getenv: with(EnvHashConcurrency, "-2"), wantVar: EnvHashConcurrency, wantMsg: "0 or more"},
		{name: "huge hash concurrency", getenv: with(EnvHashConcurrency, "1000"), wantVar: EnvHashConcurrency, wantMsg: "0 (one per two CPUs) to 256"},
		{name: "audit seal keys", getenv: with(EnvAuditSealKey, strings.Repeat("s", 32), EnvAuditSealKeyPrevious, strings.Repeat("q", 33), EnvAuditSealInterval, "30s"),
			check: func(t *testing.T, c Config) {
				keys := c.AuditSealKeys()
				if c.AuditSealKeyID != KeyID([]byte(strings.Repeat("s", 32))) || len(keys) != 2 || c.AuditSealInterval != 30*time.Second {
					t.Errorf("seal keys: id %q, %d keys, interval %v", c.AuditSealKeyID, len(keys), c.AuditSealInterval)
				}
			}},
		{name: "no seal key: no seals", getenv: with(), check: func(t *testing.T, c Config) {
			if c.AuditSealKey != nil || len(c.AuditSealKeys()) != 0 || c.AuditSealInterval != time.Minute {
				t.Errorf("seal key set without %s", EnvAuditSealKey)
			}
		}},
		{name: "short seal key", getenv: with(EnvAuditSealKey, "short"), wantVar: EnvAuditSealKey, wantMsg: "at least 32"},
		{name: "seal key is the server secret", getenv: with(EnvAuditSealKey, testSecret), wantVar: EnvAuditSealKey, wantMsg: "key of its own"},
		{name: "previous seal key is a previous server secret", getenv: with(EnvSecretPrevious, strings.Repeat("o", 32), EnvAuditSealKeyPrevious, strings.Repeat("o", 32)),
			wantVar: EnvAuditSealKeyPrevious, wantMsg: "entry 1"},
		{name: "bad seal interval", getenv: with(EnvAuditSealInterval, "often"), wantVar: EnvAuditSealInterval},
		{name: "bad addr", getenv: with(EnvAddr, "localhost"), wantVar: EnvAddr, wantMsg: "host:port"},
		{name: "bad port", getenv: with(EnvAddr, "127.0.0.1:99999"), wantVar: EnvAddr, wantMsg: "port"},
		{name: "bad metrics addr", getenv: with(EnvMetricsAddr, "9464"), wantVar: EnvMetricsAddr, wantMsg: "host:port"},
		{name: "bad metrics port", getenv: with(EnvMetricsAddr, ":metrics"), wantVar: EnvMetricsAddr, wantMsg: "port"},
		{name: "metrics on the service's listener", getenv: with(EnvAddr, ":8080", EnvMetricsAddr, ":8080"), wantVar: EnvMetricsAddr, wantMsg: "own"},
		{name: "negative rate limit", getenv: with(EnvRateLimitPerIP, "-1"), wantVar: EnvRateLimitPerIP, wantMsg: "0 or more"},
		{name: "bad proxy", getenv: with(EnvTrustedProxies, "10.0.0.0/8,proxy.local"), wantVar: EnvTrustedProxies, wantMsg: "proxy.local"},
		{
			name:   "key=value database string",
			getenv: with(EnvDatabaseURL, "host=127.0.0.1 dbname=selfreset user=app"),
			check: func(t *testing.T, c Config) {
				if c.EventStoreURL != "host=127.0.0.1 dbname=selfreset user=app" {
					t.Errorf("event store url %q", c.EventStoreURL)
				}
			},
		},
		{
			name:   "custom TTLs",
			getenv: with(EnvResetTokenTTL, "90s", EnvEmailCodeTTL, "1h"),
			check: func(t *testing.T, c Config) {
				if c.ResetTokenTTL != 90*time.Second || c.EmailCodeTTL != time.Hour {
					t.Errorf("ttls: %v %v", c.ResetTokenTTL, c.EmailCodeTTL)
				}
				if p := c.Policy(); p.ResetTokenTTL != 90*time.Second || p.EmailCodeTTL != time.Hour || p.MaxTokenAttempts != 5 {
					t.Errorf("policy %+v", p)
				}
			},
		},
		{
			name:   "EventStoreDB",
			getenv: with(EnvEventStoreURL, "esdb://localhost:2113?tls=false"),
			check: func(t *testing.T, c Config) {
				if c.EventStore != EventStoreESDB || c.EventStoreURL != "esdb://localhost:2113?tls=false" || c.DatabaseURL != testDB {
					t.Errorf("got %q %q %q", c.EventStore, c.EventStoreURL, c.DatabaseURL)
				}
			},
		},
		{
			name:   "EventStoreDB cluster discovery",
			getenv: with(EnvEventStoreURL, "esdb+discover://a,b,c:2113"),
			check: func(t *testing.T, c Config) {
				if c.EventStore != EventStoreESDB {
					t.Errorf("got %q", c.EventStore)
				}
			},
		},
		{
			name:   "separate Postgres event store",
			getenv: with(EnvEventStoreURL, "postgresql://es@other/events"),
			check: func(t *testing.T, c Config) {
				if c.EventStore != EventStorePostgres || c.EventStoreURL != "postgresql://es@other/events" {
					t.Errorf("got %q %q", c.EventStore, c.EventStoreURL)
				}
			},
		},
		{
			name:   "dev mode without a secret uses the development key",
			getenv: env(EnvDatabaseURL, testDB),
			opts:   []Option{Dev()},
			check: func(t *testing.T, c Config) {
				if !c.DevSecret || string(c.Secret) != DevSecret || c.SecretKeyID != KeyID([]byte(DevSecret)) {
					t.Errorf("dev=%v key id %q", c.DevSecret, c.SecretKeyID)
				}
			},
		},
		{
			name:   "dev mode keeps a real secret",
			getenv: with(),
			opts:   []Option{Dev()},
			check: func(t *testing.T, c Config) {
				if c.DevSecret || string(c.Secret) != testSecret {
					t.Errorf("dev=%v", c.DevSecret)
				}
			},
		},
		{
			name:   "secret optional and missing",
			getenv: env(EnvDatabaseURL, testDB),
			opts:   []Option{SecretOptional()},
			check: func(t *testing.T, c Config) {
				if c.Secret != nil || c.SecretKeyID != "" || c.DevSecret {
					t.Errorf("secret %q key id %q dev %v", c.Secret, c.SecretKeyID, c.DevSecret)
				}
				if _, err := c.Keyring(); err == nil {
					t.Errorf("a keyring without a secret")
				}
			},
		},
		{
			name:    "secret optional but too short",
			getenv:  with(EnvSecret, "short"),
			opts:    []Option{SecretOptional()},
			wantVar: EnvSecret, wantMsg: "5 bytes",
		},
		{
			name:    "secret missing",
			getenv:  env(EnvDatabaseURL, testDB),
			wantVar: EnvSecret, wantMsg: "not set",
		},
		{
			name:    "secret too short",
			getenv:  with(EnvSecret, strings.Repeat("x", 31)),
			wantVar: EnvSecret, wantMsg: "31 bytes",
		},
		{
			name:    "development key outside dev mode",
			getenv:  with(EnvSecret, DevSecret),
			wantVar: EnvSecret, wantMsg: "development key",
		},
		{
			name:    "database missing",
			getenv:  env(EnvSecret, testSecret),
			wantVar: EnvDatabaseURL, wantMsg: "not set",
		},
		{
			name:    "database not a postgres URL",
			getenv:  with(EnvDatabaseURL, "mysql://db/x"),
			wantVar: EnvDatabaseURL, wantMsg: "postgres://",
		},
		{
			name:    "database URL malformed",
			getenv:  with(EnvDatabaseURL, "postgres://u:p%zz@db/x"),
			wantVar: EnvDatabaseURL, wantMsg: "not a valid URL",
		},
		{
			name:    "event store scheme unknown",
			getenv:  with(EnvEventStoreURL, "kafka://broker"),
			wantVar: EnvEventStoreURL, wantMsg: "esdb://",
		},
		{
			name:    "reset TTL not a duration",
			getenv:  with(EnvResetTokenTTL, "5 minutes"),
			wantVar: EnvResetTokenTTL, wantMsg: "not a duration",
		},
		{
			name:    "reset TTL zero",
			getenv:  with(EnvResetTokenTTL, "0s"),
			wantVar: EnvResetTokenTTL, wantMsg: "greater than zero",
		},
		{
			name:    "reset TTL negative",
			getenv:  with(EnvResetTokenTTL, "-5m"),
			wantVar: EnvResetTokenTTL, wantMsg: "greater than zero",
		},
		{
			name:    "email code TTL bare number",
			getenv:  with(EnvEmailCodeTTL, "10"),
			wantVar: EnvEmailCodeTTL, wantMsg: "not a duration",
		},
	})
}

func TestKeyring(t *testing.T) {
	c, err := FromEnv(env(EnvDatabaseURL, testDB, EnvSecret, testSecret))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := c.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	if kr.CurrentKeyID() != c.SecretKeyID {
		t.Errorf("keyring key %q, config %q", kr.CurrentKeyID(), c.SecretKeyID)
	}
	s, err := kr.Issue(secret.KindResetToken)
	if err != nil || s.KeyID != c.SecretKeyID {
		t.Errorf("issued %+v, %v", s, err)
	}
}

func TestKeyIDIsStable(t *testing.T) {
	// Rotation relies on a key keeping its id across restarts and versions:
	// printf %s 0123456789abcdef0123456789abcdef | sha256sum → 3eb1bd43…
	if got := KeyID([]byte(testSecret)); got != "3eb1bd43" {
		t.Fatalf("KeyID = %q, want 3eb1bd43", got)
	}
}

// envCase is one FromEnv case: an environment, and either checks of the result or
// the variable the error must name.
type envCase struct {
	name    string
	getenv  func(string) string
	opts    []Option
	check   func(t *testing.T, c Config)
	wantVar string // the variable the error must name; "" means no error
	wantMsg string // a fragment of the error message
}

// runEnvCases runs each case; every error must be one *Error line that names its
// variable and leaks no password.
func runEnvCases(t *testing.T, tests []envCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(tt.getenv, tt.opts...)
			if tt.wantVar == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				tt.check(t, c)
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want a *config.Error for %s, got %v", tt.wantVar, err)
			}
			if ce.Var != tt.wantVar || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q: want variable %s and %q", err, tt.wantVar, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if strings.Contains(err.Error(), ":pw@") || strings.Contains(err.Error(), "p%zz") {
				t.Errorf("error leaks a password: %q", err)
			}
		})
	}
}

func TestLogLevel(t *testing.T) {
	tests := []struct {
		value string
		want  slog.Level
		err   bool
	}{
		{"", slog.LevelInfo, false},
		{"debug", slog.LevelDebug, false},
		{" Info ", slog.LevelInfo, false},
		{"WARN", slog.LevelWarn, false},
		{"error", slog.LevelError, false},
		{"warning", slog.LevelInfo, true},
		{"warn+1", slog.LevelInfo, true},
	}
	for _, tt := range tests {
		got, err := LogLevel(func(name string) string {
			if name == EnvLogLevel {
				return tt.value
			}
			return ""
		})
		var ce *Error
		if tt.err != errors.As(err, &ce) || got != tt.want {
			t.Errorf("%s=%q: %v, %v; want %v, error %v", EnvLogLevel, tt.value, got, err, tt.want, tt.err)
		}
	}
}
