// Package links holds the paths of the pages emails link to. Package http routes them and
// package mailer builds links to them, both from these constants, so a renamed page cannot
// leave the emails pointing at a route that no longer exists.
package links

import "net/url"

// Page paths, relative to the public URL (SELFRESET_PUBLIC_URL).
const (
	Login          = "/login"
	ForgotPassword = "/forgot-password"
	ChangePassword = "/change-password"
)

// ChangePasswordFor is the Change Password page of one reset request: ChangePassword, then
// the request's reset id as one path segment.
func ChangePasswordFor(resetID string) string {
	return ChangePassword + "/" + url.PathEscape(resetID)
}
