package domain

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Policy holds the rules of DESIGN §4. DefaultPolicy gives the documented defaults.
type Policy struct {
	ResetTokenTTL      time.Duration // how long a password token is valid
	MaxTokenAttempts   int           // wrong tokens before the token is revoked
	EmailCodeTTL       time.Duration // how long an email verification code is valid
	MaxCodeAttempts    int           // wrong codes before the code is revoked
	MaxTokensPerWindow int           // password tokens (and codes) per account per window
	TokenWindow        time.Duration // the window for MaxTokensPerWindow
	MaxFailedLogins    int           // failed logins before the account locks
	MinPasswordLength  int
	MaxPasswordLength  int
}

// DefaultPolicy returns the defaults of DESIGN §4.
func DefaultPolicy() Policy {
	return Policy{
		ResetTokenTTL:      5 * time.Minute,
		MaxTokenAttempts:   5,
		EmailCodeTTL:       10 * time.Minute,
		MaxCodeAttempts:    5,
		MaxTokensPerWindow: 3,
		TokenWindow:        15 * time.Minute,
		MaxFailedLogins:    5,
		MinPasswordLength:  8,
		MaxPasswordLength:  128,
	}
}

// PasswordCandidate is what the password rules look at. The checks that need I/O or
// expensive work (a common-password list, comparing against the current argon2id hash)
// are done by the caller and passed in as facts.
type PasswordCandidate struct {
	Password      string
	Login         string
	IsCommon      bool // found in a common-password list
	SameAsCurrent bool // verifies against the current password hash
}

// CheckPassword applies NIST SP 800-63B style rules: length 8–128 characters (counted as
// characters, not bytes), not the login name, not a common password, not the current one.
// It returns nil or a *PasswordRejectedError listing every reason.
func (p Policy) CheckPassword(c PasswordCandidate) error {
	var reasons []string
	n := utf8.RuneCountInString(c.Password)
	if n < p.MinPasswordLength {
		reasons = append(reasons, "must be at least "+itoa(p.MinPasswordLength)+" characters")
	}
	if n > p.MaxPasswordLength {
		reasons = append(reasons, "must be at most "+itoa(p.MaxPasswordLength)+" characters")
	}
	if c.Login != "" && strings.EqualFold(strings.TrimSpace(c.Password), c.Login) {
		reasons = append(reasons, "must not be the login name")
	}
	if c.IsCommon {
		reasons = append(reasons, "is too common")
	}
	if c.SameAsCurrent {
		reasons = append(reasons, "must differ from the current password")
	}
	if len(reasons) > 0 {
		return &PasswordRejectedError{Reasons: reasons}
	}
	return nil
}

// PasswordWork is the costly part of judging a new password, done by the caller (who owns
// the hasher): whether it verifies against the current hash, and, when it does not, its
// hash. A decision asks for it only once every rule that needs none has passed, so a
// wrong token, a wrong current password or a too-short password costs no argon2id time.
type PasswordWork func() (sameAsCurrent bool, hash string, err error)

// newPasswordHash applies the password rules to cand and returns the hash to store. With
// work, the rules that need no hashing are checked first and work is asked for only when
// they pass; without it, cand.SameAsCurrent and hash are the facts already known.
func (p Policy) newPasswordHash(cand PasswordCandidate, hash string, work PasswordWork) (string, error) {
	if err := p.CheckPassword(cand); err != nil {
		return "", err
	}
	if work != nil {
		same, h, err := work()
		if err != nil {
			return "", err
		}
		if same {
			cand.SameAsCurrent = true
			return "", p.CheckPassword(cand)
		}
		hash = h
	}
	if hash == "" {
		return "", ErrInvalidInput
	}
	return hash, nil
}

func itoa(n int) string { return strconv.Itoa(n) }
