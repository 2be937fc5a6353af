package domain_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"selfreset/domain"
)

func TestDefaultPolicy(t *testing.T) {
	want := domain.Policy{ResetTokenTTL: 5 * time.Minute, MaxTokenAttempts: 5, EmailCodeTTL: 10 * time.Minute, MaxCodeAttempts: 5,
		MaxTokensPerWindow: 3, TokenWindow: 15 * time.Minute, MaxFailedLogins: 5, MinPasswordLength: 8, MaxPasswordLength: 128}
	if got := domain.DefaultPolicy(); got != want {
		t.Errorf("DefaultPolicy() = %+v, want the DESIGN §4 defaults %+v", got, want)
	}
}

func TestCheckPassword(t *testing.T) {
	const (
		short  = "must be at least 8 characters"
		long   = "must be at most 128 characters"
		login  = "must not be the login name"
		common = "is too common"
		same   = "must differ from the current password"
	)
	cases := []struct {
		name    string
		c       domain.PasswordCandidate
		reasons []string // nil: accepted
	}{
		{"empty", domain.PasswordCandidate{Password: ""}, []string{short}},
		{"7 ASCII characters", domain.PasswordCandidate{Password: "abcdefg"}, []string{short}},
		{"8 ASCII characters", domain.PasswordCandidate{Password: "abcdefgh"}, nil},
		{"7 two-byte characters (14 bytes) are 7 characters", domain.PasswordCandidate{Password: strings.Repeat("é", 7)}, []string{short}},
		{"8 two-byte characters", domain.PasswordCandidate{Password: strings.Repeat("é", 8)}, nil},
		{"8 four-byte characters", domain.PasswordCandidate{Password: strings.Repeat("🔑", 8)}, nil},
		{"4 four-byte characters (16 bytes) are too short", domain.PasswordCandidate{Password: strings.Repeat("🔑", 4)}, []string{short}},
		{"128 ASCII characters", domain.PasswordCandidate{Password: strings.Repeat("a", 128)}, nil},
		{"129 ASCII characters", domain.PasswordCandidate{Password: strings.Repeat("a", 129)}, []string{long}},
		{"128 three-byte characters (384 bytes)", domain.PasswordCandidate{Password: strings.Repeat("語", 128)}, nil},
		{"129 three-byte characters", domain.PasswordCandidate{Password: strings.Repeat("語", 129)}, []string{long}},
		{"spaces count and are kept", domain.PasswordCandidate{Password: "a b c d "}, nil},
		{"the login name", domain.PasswordCandidate{Password: "jane.doe", Login: "jane.doe"}, []string{login}},
		{"the login name in other case", domain.PasswordCandidate{Password: "JANE.DOE", Login: "jane.doe"}, []string{login}},
		{"the login name with spaces around", domain.PasswordCandidate{Password: "  jane.doe  ", Login: "jane.doe"}, []string{login}},
		{"containing the login name is allowed", domain.PasswordCandidate{Password: "jane.doe is back", Login: "jane.doe"}, nil},
		{"short login name: both reasons", domain.PasswordCandidate{Password: "jane", Login: "jane"}, []string{short, login}},
		{"no login known", domain.PasswordCandidate{Password: "abcdefgh", Login: ""}, nil},
		{"common", domain.PasswordCandidate{Password: "password", IsCommon: true}, []string{common}},
		{"same as current", domain.PasswordCandidate{Password: goodPass, SameAsCurrent: true}, []string{same}},
		{"every reason, in order", domain.PasswordCandidate{Password: strings.Repeat("z", 129), Login: strings.Repeat("z", 129), IsCommon: true, SameAsCurrent: true},
			[]string{long, login, common, same}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := pol.CheckPassword(tc.c)
			if tc.reasons == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var pr *domain.PasswordRejectedError
			if !errors.As(err, &pr) {
				t.Fatalf("err = %v, want a *PasswordRejectedError", err)
			}
			if !reflect.DeepEqual(pr.Reasons, tc.reasons) {
				t.Errorf("reasons = %q, want %q", pr.Reasons, tc.reasons)
			}
			if !errors.Is(err, domain.ErrPasswordRejected) {
				t.Errorf("errors.Is(err, ErrPasswordRejected) = false")
			}
		})
	}
	// The limits are the policy's, not constants.
	strict := pol
	strict.MinPasswordLength, strict.MaxPasswordLength = 12, 16
	err := strict.CheckPassword(domain.PasswordCandidate{Password: "abcdefghijk"})
	var pr *domain.PasswordRejectedError
	if !errors.As(err, &pr) || !reflect.DeepEqual(pr.Reasons, []string{"must be at least 12 characters"}) {
		t.Errorf("strict policy: %v", err)
	}
}
