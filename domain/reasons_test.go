package domain_test

import (
	"errors"
	"testing"

	"selfreset/domain"
)

func TestRequestRefusal(t *testing.T) {
	for _, tc := range []struct {
		reason domain.Reason
		want   error // nil: not a reset-request refusal
	}{
		{domain.ReasonProviderNotAllowed, domain.ErrProviderNotAllowed},
		{domain.ReasonIdentifiersMismatch, domain.ErrIdentifiersMismatch},
		{domain.ReasonThrottled, domain.ErrThrottled},
		{domain.ReasonUnknownAccount, domain.ErrUnknownAccount},
		{domain.ReasonNoActiveToken, domain.ErrNoActiveToken},
		{domain.ReasonWrongToken, nil},
		{domain.ReasonTokenExpired, nil},
		{"", nil},
	} {
		got, ok := domain.RequestRefusal(tc.reason)
		if ok != (tc.want != nil) || (ok && !errors.Is(got, tc.want)) {
			t.Errorf("RequestRefusal(%q) = %v, %v; want %v", tc.reason, got, ok, tc.want)
		}
		if ok && domain.ReasonOf(got) != tc.reason {
			t.Errorf("ReasonOf(%v) = %q, want %q: a refusal and its recorded reason are one code", got, domain.ReasonOf(got), tc.reason)
		}
	}
}
