package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"selfreset/domain"
	"selfreset/eventstore"
)

// UserState is what an auditor asks of an account at a point in time: no hashes, no token
// or code secrets, only the facts.
type UserState struct {
	Login            string     `json:"login"`
	Exists           bool       `json:"exists"`
	DisplayName      string     `json:"display_name,omitempty"`
	Roles            []string   `json:"roles"`
	SelfResetEnabled bool       `json:"self_reset_enabled"`
	Configured       bool       `json:"configured"`
	RecoveryEmail    string     `json:"recovery_email,omitempty"`
	FailedLogins     int        `json:"failed_logins"`
	Locked           bool       `json:"locked"`
	AdminLocked      bool       `json:"admin_locked"`
	Deactivated      bool       `json:"deactivated"`
	Deleted          bool       `json:"deleted"`
	ActiveToken      bool       `json:"active_token"` // a reset token was valid at that time
	LastResetAt      *time.Time `json:"last_reset_at,omitempty"`
	PasswordChanges  int        `json:"password_changes"`
	// Events is how many of the stream's events occurred by then; Revision the last of them.
	Events   int     `json:"events"`
	Revision *uint64 `json:"revision,omitempty"`
}

// ProviderState is a provider at a point in time, with its users (or the one asked for).
type ProviderState struct {
	Provider         string      `json:"provider"`
	AsOf             time.Time   `json:"as_of"`
	Exists           bool        `json:"exists"`
	Name             string      `json:"name,omitempty"`
	SelfResetAllowed bool        `json:"self_reset_allowed"`
	Users            []UserState `json:"users"`
}

// ViewUser is the auditor's view of a folded user at time at.
func ViewUser(login string, u domain.User, at time.Time) UserState {
	s := UserState{
		Login: login, Exists: u.Registered, DisplayName: u.DisplayName, Roles: []string{},
		SelfResetEnabled: u.SelfResetEnabled, Configured: u.Configured, RecoveryEmail: u.RecoveryEmail,
		FailedLogins: u.FailedLogins, Locked: u.Locked, AdminLocked: u.AdminLocked, Deactivated: u.Deactivated,
		Deleted: u.Deleted, PasswordChanges: u.PasswordVersion,
		ActiveToken: u.Token != nil && u.Token.State == domain.TokenActive && at.Before(u.Token.ExpiresAt),
	}
	for r := range u.Roles {
		s.Roles = append(s.Roles, r)
	}
	slices.Sort(s.Roles)
	if !u.LastResetAt.IsZero() {
		t := u.LastResetAt.UTC()
		s.LastResetAt = &t
	}
	return s
}

// StateAt folds provider's stream, and its users' streams (only login's when set), from
// the events that occurred at or before asOf.
func StateAt(ctx context.Context, store eventstore.Store, codec *domain.Codec, provider, login string, asOf time.Time) (ProviderState, error) {
	st := ProviderState{Provider: provider, AsOf: asOf.UTC(), Users: []UserState{}}
	var p domain.Provider
	if _, _, err := foldUntil(ctx, store, codec, domain.ProviderStream(provider), asOf, p.Apply); err != nil {
		return st, err
	}
	st.Exists, st.Name, st.SelfResetAllowed = p.Registered, p.Name, p.SelfResetAllowed

	var logins []string
	if login != "" {
		logins = []string{login}
	} else {
		var err error
		if logins, err = usersOf(ctx, store, provider); err != nil {
			return st, err
		}
	}
	for _, l := range logins {
		var u domain.User
		n, last, err := foldUntil(ctx, store, codec, domain.UserStream(provider, l), asOf, u.Apply)
		if err != nil {
			return st, err
		}
		if n == 0 && login == "" {
			continue // the account did not exist yet
		}
		us := ViewUser(l, u, asOf)
		us.Events = n
		if n > 0 {
			us.Revision = &last
		}
		st.Users = append(st.Users, us)
	}
	return st, nil
}

// foldUntil applies the events of stream that occurred at or before asOf, and returns how
// many it applied and the revision of the last.
func foldUntil(ctx context.Context, store eventstore.Store, codec *domain.Codec, stream string, asOf time.Time, apply func(domain.Event)) (int, uint64, error) {
	events, err := store.ReadStream(ctx, stream, 0)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("audit: read %s: %w", stream, err)
	}
	n, last := 0, uint64(0)
	for _, e := range events {
		if e.OccurredAt.After(asOf) {
			continue
		}
		v, err := codec.DecodeRecorded(e)
		if err != nil {
			return 0, 0, fmt.Errorf("audit: %s@%d: %w", stream, e.Revision, err)
		}
		apply(v)
		n, last = n+1, e.Revision
	}
	return n, last, nil
}

// usersOf lists the logins of provider's user streams, in order of creation, from the feed.
func usersOf(ctx context.Context, store eventstore.Store, provider string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	after := eventstore.Start
	for {
		page, err := store.ReadAll(ctx, after, QueryPageSize)
		if err != nil {
			return nil, fmt.Errorf("audit: read the event feed: %w", err)
		}
		if len(page) == 0 {
			return out, nil
		}
		for _, e := range page {
			after = e.Position
			if seen[e.Stream] {
				continue
			}
			if code, login, err := domain.ParseUserStream(e.Stream); err == nil && code == provider {
				seen[e.Stream] = true
				out = append(out, login)
			}
		}
	}
}
