// Package password hashes passwords with argon2id and recognises common passwords.
package password

import (
	"fmt"
	"strings"

	"github.com/alexedwards/argon2id"
	"github.com/trustelem/zxcvbn/frequency"
)

// Params are the argon2id parameters. Defaults follow OWASP's Password Storage Cheat Sheet
// minimum for argon2id (m=19 MiB, t=2, p=1); the PHC string records them, so raising them
// later leaves old hashes verifiable.
type Params = argon2id.Params

// DefaultParams is OWASP's recommended minimum.
var DefaultParams = Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// MemoryBytes is the memory one argon2id computation with p holds while it runs.
func MemoryBytes(p Params) int64 { return int64(p.Memory) * 1024 }

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
	ranks map[string]int
}

// commonRankLimit: entries ranked beyond this in the password list are not refused.
const commonRankLimit = 30000

// NewCommonList loads the lists once (they are embedded in the zxcvbn module).
func NewCommonList() *CommonList {
	ranks := map[string]int{}
	if l, ok := frequency.FrequencyLists["passwords"]; ok {
		for i, w := range l {
			if i >= commonRankLimit {
				break
			}
			ranks[w] = i + 1
		}
	}
	return &CommonList{ranks: ranks}
}

// IsCommon reports whether password (case-insensitively) is a common password.
func (c *CommonList) IsCommon(password string) bool {
	_, ok := c.ranks[strings.ToLower(password)]
	return ok
}

// Size is how many passwords the list refuses.
func (c *CommonList) Size() int { return len(c.ranks) }
