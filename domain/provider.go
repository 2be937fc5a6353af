package domain

import "maps"

// Provider is an agency (tenant). Its state is folded from its stream.
type Provider struct {
	Code             string
	Name             string
	Registered       bool
	SelfResetAllowed bool
	// UserAdmins are the logins counted as user administrators (see CountUserAdmin).
	UserAdmins map[string]bool
}

// Clone returns a copy of p that shares no memory with it (see User.Clone).
func (p Provider) Clone() Provider {
	p.UserAdmins = maps.Clone(p.UserAdmins)
	return p
}

// Apply folds one event into the state. Replay and new decisions both go through it.
func (p *Provider) Apply(e Event) {
	switch e := e.(type) {
	case ProviderRegistered:
		p.Code, p.Name, p.Registered = e.Code, e.Name, true
	case ProviderSelfResetAllowed:
		p.SelfResetAllowed = true
	case ProviderSelfResetRevoked:
		p.SelfResetAllowed = false
	default:
		p.applyAdmin(e)
	}
}

// RegisterProvider opens a provider. Only operators register providers.
func (p Provider) RegisterProvider(actor Actor, code, name string) ([]Event, error) {
	if !actor.System {
		return nil, ErrForbidden
	}
	code = NormalizeProviderCode(code)
	if !ValidProviderCode(code) || name == "" || len(name) > 200 {
		return nil, ErrInvalidInput
	}
	if p.Registered {
		return nil, ErrProviderExists
	}
	return []Event{ProviderRegistered{Code: code, Name: name}}, nil
}

// AllowSelfReset lets the provider use Self Password Reset. Repeating it changes nothing.
func (p Provider) AllowSelfReset(actor Actor) ([]Event, error) {
	if err := p.administer(actor); err != nil || p.SelfResetAllowed {
		return nil, err
	}
	return []Event{ProviderSelfResetAllowed{By: actor.ID()}}, nil
}

// RevokeSelfReset withdraws it. Repeating it changes nothing.
func (p Provider) RevokeSelfReset(actor Actor) ([]Event, error) {
	if err := p.administer(actor); err != nil || !p.SelfResetAllowed {
		return nil, err
	}
	return []Event{ProviderSelfResetRevoked{By: actor.ID()}}, nil
}

// administer refuses a change to the provider by anyone but an operator, or to a provider
// that is not registered.
func (p Provider) administer(actor Actor) error {
	if !actor.System {
		return ErrForbidden
	}
	if !p.Registered {
		return ErrProviderNotFound
	}
	return nil
}
