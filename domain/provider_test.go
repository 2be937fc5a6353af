package domain_test

import (
	"reflect"
	"testing"

	"selfreset/domain"
)

func TestProviderCommands(t *testing.T) {
	type whenFn func(p domain.Provider) ([]domain.Event, error)
	register := func(a domain.Actor, code, name string) whenFn {
		return func(p domain.Provider) ([]domain.Event, error) { return p.RegisterProvider(a, code, name) }
	}
	allow := func(a domain.Actor) whenFn {
		return func(p domain.Provider) ([]domain.Event, error) { return p.AllowSelfReset(a) }
	}
	revoke := func(a domain.Actor) whenFn {
		return func(p domain.Provider) ([]domain.Event, error) { return p.RevokeSelfReset(a) }
	}
	cases := []struct {
		name  string
		given []domain.Event
		when  whenFn
		then  []domain.Event
		err   error
		state domain.Provider // checked after given+then when Code is set
	}{
		{name: "operator registers; code is trimmed and upper-cased",
			when:  register(ops, " acme ", "Acme Care"),
			then:  []domain.Event{domain.ProviderRegistered{Code: acme, Name: "Acme Care"}},
			state: domain.Provider{Code: acme, Name: "Acme Care", Registered: true}},
		{name: "a user admin may not register providers", when: register(acmeAdmin, "NEW", "New"), err: domain.ErrForbidden},
		{name: "a plain user may not register providers", when: register(acmeUser, "NEW", "New"), err: domain.ErrForbidden},
		{name: "code with a dash is refused", when: register(ops, "AC-ME", "Acme"), err: domain.ErrInvalidInput},
		{name: "one-letter code is refused", when: register(ops, "A", "Acme"), err: domain.ErrInvalidInput},
		{name: "code with a space inside is refused", when: register(ops, "AC ME", "Acme"), err: domain.ErrInvalidInput},
		{name: "empty name is refused", when: register(ops, "ACME", ""), err: domain.ErrInvalidInput},
		{name: "duplicate code", given: registeredProvider(), when: register(ops, "acme", "Acme again"), err: domain.ErrProviderExists},

		{name: "allow", given: registeredProvider(), when: allow(ops),
			then:  []domain.Event{domain.ProviderSelfResetAllowed{By: "system:ops"}},
			state: domain.Provider{Code: acme, Name: "Acme Care", Registered: true, SelfResetAllowed: true}},
		{name: "allow again changes nothing", given: allowedProvider(), when: allow(ops)},
		{name: "allow by a user admin is forbidden", given: registeredProvider(), when: allow(acmeAdmin), err: domain.ErrForbidden},
		{name: "allow an unregistered provider", when: allow(ops), err: domain.ErrProviderNotFound},

		{name: "revoke", given: allowedProvider(), when: revoke(domain.SystemActor("")),
			then:  []domain.Event{domain.ProviderSelfResetRevoked{By: "system"}},
			state: domain.Provider{Code: acme, Name: "Acme Care", Registered: true}},
		{name: "revoke again changes nothing", given: with(allowedProvider(), domain.ProviderSelfResetRevoked{By: "system"}), when: revoke(ops)},
		{name: "revoke when never allowed changes nothing", given: registeredProvider(), when: revoke(ops)},
		{name: "revoke by a user admin is forbidden", given: allowedProvider(), when: revoke(acmeAdmin), err: domain.ErrForbidden},
		{name: "revoke an unregistered provider", when: revoke(ops), err: domain.ErrProviderNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := givenProvider(tc.given...)
			got, err := tc.when(p)
			assertErr(t, err, tc.err)
			assertEvents(t, got, tc.then)
			if tc.state.Code != "" {
				after := givenProvider(with(tc.given, got...)...)
				if !reflect.DeepEqual(after, tc.state) {
					t.Errorf("state = %+v, want %+v", after, tc.state)
				}
			}
		})
	}
}
