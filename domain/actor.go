package domain

import "strings"

// RoleUserAdmin is the seed's "User Administrative" role.
const RoleUserAdmin = "user-admin"

// RoleAuditor may read the provider's event history (the audit API), and nothing else:
// it grants no administration.
const RoleAuditor = "auditor"

// KnownRoles are the roles a user may hold.
var knownRoles = map[string]bool{RoleUserAdmin: true, RoleAuditor: true}

// KnownRole reports whether role exists.
func KnownRole(role string) bool { return knownRoles[role] }

// RoleNames lists the known roles, for messages.
func RoleNames() string { return strings.Join([]string{RoleUserAdmin, RoleAuditor}, ", ") }

// Actor is whoever issues a command: an operator at the command line (System) or a signed-in
// user. The command side builds it from the actor's own aggregate, never from a read model.
type Actor struct {
	System   bool
	Name     string // operator name for System actors
	Provider string // for users
	Login    string
	Admin    bool // holds RoleUserAdmin and is active
	Auditor  bool // holds RoleAuditor and is active
}

// SystemActor is an operator with full rights (the CLI).
func SystemActor(name string) Actor { return Actor{System: true, Name: name} }

// UserActor builds the actor for a signed-in user from their aggregate.
func UserActor(u User) Actor {
	return Actor{Provider: u.Provider, Login: u.Login, Admin: u.Roles[RoleUserAdmin] && u.Active(),
		Auditor: u.Roles[RoleAuditor] && u.Active()}
}

// ID is the stable text recorded as "by" and as the metadata actor.
func (a Actor) ID() string {
	if a.System {
		return SystemActorID(a.Name)
	}
	return UserActorID(a.Provider, a.Login)
}

// Actor ids are built only here: auditors filter the history by them, so one format.

// ActorAnonymous is the actor of a request made without a session (a reset request, a
// sign-in attempt, a token typed on the Change Password page).
const ActorAnonymous = "anonymous"

// UserActorID is the actor id of a user, signed in or signing in: "user:PROVIDER/login".
// provider and login must already be normalized.
func UserActorID(provider, login string) string { return "user:" + provider + "/" + login }

// SystemActorID is the actor id of an operator or a background job: "system:name", or
// "system" without a name.
func SystemActorID(name string) string {
	if name == "" {
		return "system"
	}
	return "system:" + name
}

// CanAdminister reports whether the actor may manage users of provider.
func (a Actor) CanAdminister(provider string) bool {
	return a.System || (a.Admin && a.Provider == provider)
}

// CanAudit reports whether the actor may read provider's event history.
func (a Actor) CanAudit(provider string) bool {
	return a.System || (a.Auditor && a.Provider == provider)
}
