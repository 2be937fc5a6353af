package links_test

import (
	"testing"

	"selfreset/links"
)

func TestChangePasswordFor(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"AbC-_9", "/change-password/AbC-_9"},
		{"a/b?c", "/change-password/a%2Fb%3Fc"}, // stays one segment whatever the id holds
		{"", "/change-password/"},
	} {
		if got := links.ChangePasswordFor(tc.id); got != tc.want {
			t.Errorf("ChangePasswordFor(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}
