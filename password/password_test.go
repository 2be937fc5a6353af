package password_test

import (
	"runtime"
	"strings"
	"testing"

	"selfreset/password"
)

// fast keeps unit tests quick; DefaultParams is exercised once below.
var fast = password.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

func hasher(t testing.TB, p password.Params) *password.Hasher {
	t.Helper()
	h, err := password.NewHasher(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashVerify(t *testing.T) {
	h := hasher(t, fast)
	for _, pw := range []string{"correct horse battery staple", "ünïcödé pässwörd 🔑", " leading and trailing ", strings.Repeat("x", 128)} {
		hash, err := h.Hash(pw)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(hash, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Errorf("PHC string %q", hash)
		}
		if strings.Contains(hash, pw) {
			t.Errorf("the hash contains the password")
		}
		if ok, err := h.Verify(pw, hash); err != nil || !ok {
			t.Errorf("Verify(%q) = %v, %v", pw, ok, err)
		}
		for _, wrong := range []string{"", strings.ToUpper(pw), pw + " ", strings.TrimSpace(pw) + "!"} {
			if wrong == pw {
				continue
			}
			if ok, err := h.Verify(wrong, hash); err != nil || ok {
				t.Errorf("Verify(%q) against %q = %v, %v", wrong, pw, ok, err)
			}
		}
	}
	// Salted: the same password hashes differently each time.
	a, _ := h.Hash("same password")
	b, _ := h.Hash("same password")
	if a == b {
		t.Error("two hashes of one password are equal: no salt?")
	}
	// A malformed stored hash is an error, not a match.
	if ok, err := h.Verify("x", "$argon2id$garbage"); ok || err == nil {
		t.Errorf("malformed hash: %v, %v", ok, err)
	}
}

// TestOtherParamsVerify: the PHC string carries its parameters, so a hasher with
// different (e.g. raised) parameters still verifies old hashes.
func TestOtherParamsVerify(t *testing.T) {
	old, err := hasher(t, fast).Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	stronger := fast
	stronger.Memory, stronger.Iterations = 128, 2
	if ok, err := hasher(t, stronger).Verify("correct horse", old); err != nil || !ok {
		t.Errorf("verify an older hash with newer params: %v, %v", ok, err)
	}
}

func TestDefaultParams(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: hashes with the production argon2id parameters (slow by design); runs in `make test`")
	}
	h := hasher(t, password.DefaultParams)
	hash, err := h.Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=7168,t=5,p=1$") {
		t.Errorf("PHC string %q does not carry OWASP's argon2id minimum for 7 MiB", hash)
	}
	if ok, err := h.Verify("correct horse battery staple", hash); err != nil || !ok {
		t.Errorf("Verify = %v, %v", ok, err)
	}
	if ok, _ := h.Verify("Correct horse battery staple", hash); ok {
		t.Error("a different password verified")
	}
}

// TestVerifyNoAccount: an empty hash stands for "no such account"; it is never a match
// and it still costs an argon2id verification. Without timing anything, the cost shows in
// memory: argon2id allocates its m KiB block for every verification.
func TestVerifyNoAccount(t *testing.T) {
	h := hasher(t, fast)
	for _, pw := range []string{"", "selfreset-timing-equaliser", "anything"} {
		if ok, err := h.Verify(pw, ""); ok || err != nil {
			t.Errorf("Verify(%q, \"\") = %v, %v", pw, ok, err)
		}
	}
	stored, err := h.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	block := uint64(fast.Memory) * 1024
	noAccount := allocated(func() { _, _ = h.Verify("", "") })
	account := allocated(func() { _, _ = h.Verify("", stored) })
	if noAccount < block {
		t.Errorf("Verify(\"\", \"\") allocated %d bytes, less than one argon2id block of %d: no verification was done", noAccount, block)
	}
	if noAccount < account/2 || noAccount > account*2 {
		t.Errorf("no account costs %d bytes, an account %d", noAccount, account)
	}
}

// allocated reports the bytes f allocates (the smallest of a few runs).
func allocated(f func()) uint64 {
	var least uint64
	for i := range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; i == 0 || n < least {
			least = n
		}
	}
	return least
}

func TestCommonList(t *testing.T) {
	c := password.NewCommonList()
	if c.Size() < 10000 || c.Size() > 30000 {
		t.Errorf("Size() = %d", c.Size())
	}
	for _, pw := range []string{"password", "PASSWORD", "Password", "123456", "qwerty123", "QWERTY123", "iloveyou", "letmein"} {
		if !c.IsCommon(pw) {
			t.Errorf("IsCommon(%q) = false", pw)
		}
	}
	for _, pw := range []string{"correct horse battery staple", "vX9#tq!Lm2@pR7zK", "my grandmother's blue teapot 1987", ""} {
		if c.IsCommon(pw) {
			t.Errorf("IsCommon(%q) = true", pw)
		}
	}
}

func BenchmarkHashDefault(b *testing.B) {
	h := hasher(b, password.DefaultParams)
	for b.Loop() {
		if _, err := h.Hash("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyDefault(b *testing.B) {
	h := hasher(b, password.DefaultParams)
	hash, err := h.Hash("correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("account", func(b *testing.B) {
		for b.Loop() {
			_, _ = h.Verify("wrong guess", hash)
		}
	})
	b.Run("no account", func(b *testing.B) {
		for b.Loop() {
			_, _ = h.Verify("wrong guess", "")
		}
	})
}

// BenchmarkCollectAfterEach is the price of serve's collection after each hash
// (password.CollectAfterEach) beside the hash itself, with a live heap about serve's under
// load (7 MiB of small, pointer-holding objects the collector has to mark), on two slots
// hashed from two goroutines at a time.
func BenchmarkCollectAfterEach(b *testing.B) {
	type node struct {
		next *node
		_    [48]byte // sized like a small request object
	}
	var live *node
	for range 7 << 20 / 64 {
		live = &node{next: live}
	}
	for _, tc := range []struct {
		name string
		opts []password.BoundedOption
	}{
		{"without", nil},
		{"collect after each", []password.BoundedOption{password.CollectAfterEach()}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			bd := password.NewBounded(hasher(b, password.DefaultParams), 2, tc.opts...)
			b.SetParallelism(1) // GOMAXPROCS goroutines: one per slot on 2 CPUs
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bd.Hash(b.Context(), "correct horse battery staple"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	runtime.KeepAlive(live)
}
