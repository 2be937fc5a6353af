// Package password hashes passwords with argon2id and recognises common passwords.
package password

import (
	"fmt"
	"slices"
	"strings"

	"github.com/alexedwards/argon2id"
	"github.com/trustelem/zxcvbn/frequency"
)

// Params are the argon2id parameters. The PHC string records them, so changing them later
// leaves old hashes verifiable.
type Params = argon2id.Params

// DefaultParams is the smallest-memory row of OWASP's argon2id minimums (Password Storage
// Cheat Sheet: m=19 MiB t=2, m=12 MiB t=3, m=9 MiB t=4 and m=7 MiB t=5, all p=1, "an
// equal level of defense", trading memory for passes). Each concurrent hash holds its
// memory (Bounded's slots): 7 MiB keeps serve under issue 11's 60 MB peak RSS, where
// 19 MiB per slot would take a third of it or more. Hashes
// made before with m=19 MiB, t=2 still verify (Bounded gives them more than one slot).
var DefaultParams = Params{Memory: 7 * 1024, Iterations: 5, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// MemoryBytes is the memory one argon2id computation with p holds while it runs.
func MemoryBytes(p Params) int64 { return int64(p.Memory) * 1024 }

// hashMemory is the memory verifying hash holds (its PHC parameters); 0 when hash is
// not an argon2id PHC string.
func hashMemory(hash string) int64 {
	p, _, _, err := argon2id.DecodeHash(hash)
	if err != nil {
		return 0
	}
	return MemoryBytes(*p)
}

// Hasher hashes and verifies argon2id PHC strings.
type Hasher struct {
	params Params
	// dummy is verified against when there is no account, so that "no such user" costs
	// as much time as "wrong password".
	dummy string
}

// NewHasher returns a hasher with the given parameters.
func NewHasher(p Params) (*Hasher, error) {
	dummy, err := argon2id.CreateHash("selfreset-timing-equaliser", &p)
	if err != nil {
		return nil, fmt.Errorf("password: %w", err)
	}
	return &Hasher{params: p, dummy: dummy}, nil
}

// Memory is what one of h's own computations holds (Bounded sizes its slots with it).
func (h *Hasher) Memory() int64 { return MemoryBytes(h.params) }

// Hash returns the argon2id PHC string of password.
func (h *Hasher) Hash(password string) (string, error) {
	s, err := argon2id.CreateHash(password, &h.params)
	if err != nil {
		return "", fmt.Errorf("password: hash: %w", err)
	}
	return s, nil
}

// Verify reports whether password matches hash (constant time inside argon2id).
// An empty hash stands for "no account" and costs a full verification anyway.
func (h *Hasher) Verify(password, hash string) (bool, error) {
	if hash == "" {
		_, _ = argon2id.ComparePasswordAndHash(password, h.dummy)
		return false, nil
	}
	ok, err := argon2id.ComparePasswordAndHash(password, hash)
	if err != nil {
		return false, fmt.Errorf("password: verify: %w", err)
	}
	return ok, nil
}

// CommonList recognises passwords found in the frequency lists that zxcvbn ships
// (passwords, English words, names, TV and film vocabulary — ranked by how often they
// appear in leaked password corpora). Only the "passwords" list and the most frequent
// words are used, so ordinary long passphrases stay allowed.
type CommonList struct {
	// sorted holds the lower-cased entries, sorted: a third of a map's memory (the
	// strings stay in the binary's read-only data), found by binary search.
	sorted []string
}

// commonRankLimit: entries ranked beyond this in the password list are not refused.
const commonRankLimit = 30000

// NewCommonList loads the lists once (they are embedded in the zxcvbn module).
func NewCommonList() *CommonList {
	l := frequency.FrequencyLists["passwords"]
	sorted := make([]string, 0, min(len(l), commonRankLimit))
	for _, w := range l[:min(len(l), commonRankLimit)] {
		sorted = append(sorted, strings.ToLower(w))
	}
	slices.Sort(sorted)
	return &CommonList{sorted: slices.Clip(slices.Compact(sorted))}
}

// IsCommon reports whether password (case-insensitively) is a common password.
func (c *CommonList) IsCommon(password string) bool {
	_, ok := slices.BinarySearch(c.sorted, strings.ToLower(password))
	return ok
}

// Size is how many passwords the list refuses.
func (c *CommonList) Size() int { return len(c.sorted) }
