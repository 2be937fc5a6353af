// Package testkit holds the helpers that the tests of several packages share: a movable
// clock, a fast password hasher, a keyring, a command handler over a store, an in-process
// SMTP server that keeps what it accepts, and reading a code or token off its own line of
// a mail.
//
// It is for tests only: no non-test code may import it (TestOnlyTestsImportTestkit checks).
// Keep it small: a helper belongs here once two packages' tests need it and not before;
// what only one package's tests use stays in that package's _test.go files.
package testkit

import (
	"bytes"
	"testing"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/password"
	"selfreset/secret"
)

// TinyArgon2 are argon2id parameters that make hashing nearly free: for tests only.
var TinyArgon2 = password.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// Hasher is a password hasher with TinyArgon2, with the default slots as in production.
func Hasher(t testing.TB) *password.Bounded {
	t.Helper()
	h, err := password.NewHasher(TinyArgon2)
	if err != nil {
		t.Fatal(err)
	}
	return password.NewBounded(h, 0)
}

// Keyring is a keyring whose current (and only) key is keyID, a fixed 32-byte key.
func Keyring(t testing.TB, keyID string) *secret.Keyring {
	t.Helper()
	k, err := secret.NewKeyring(keyID, map[string][]byte{keyID: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Handler is a command handler over store with clock (nil: the system clock), keys, the
// Hasher, the common-password list and the default policy; each of tune may change the
// configuration (a logger, MaxAttempts…) before the handler is built.
func Handler(t testing.TB, store eventstore.Store, clock domain.Clock, keys *secret.Keyring, tune ...func(*commands.Config)) *commands.Handler {
	t.Helper()
	cfg := commands.Config{Store: store, Clock: clock, Hasher: Hasher(t), Secrets: keys,
		Common: password.NewCommonList(), Policy: domain.DefaultPolicy()}
	for _, fn := range tune {
		fn(&cfg)
	}
	return commands.New(cfg)
}
