package commands_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/internal/testkit"
	"selfreset/internal/teststore"
)

type observed struct {
	name string
	err  error
}

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu  sync.Mutex
	got []observed
}

func (r *recorder) ObserveCommand(name string, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 {
		err = errors.New("negative duration")
	}
	r.got = append(r.got, observed{name, err})
}

// Each command is reported once, by name, with the error its caller got.
func TestObserverSeesEveryCommandOnce(t *testing.T) {
	store := teststore.Open(t)
	rec := &recorder{}
	h := testkit.Handler(t, store, testkit.NewClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)), testkit.Keyring(t, "k1"),
		func(c *commands.Config) { c.Observer = rec })
	code := teststore.ProviderCode(t, "ACME")
	ctx := context.Background()
	must(t, h.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: code, Name: "Acme"}))
	must(t, h.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: code, Login: "jane", DisplayName: "Jane", Password: oldPass}))
	_, loginErr := h.Login(ctx, commands.Login{Provider: code, Login: "jane", Password: "wrong"})
	if !errors.Is(loginErr, domain.ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", loginErr)
	}
	enableErr := h.EnableSelfReset(ctx, commands.UserCommand{Actor: domain.Actor{Provider: code, Login: "nobody"}, Provider: code, Login: "jane"})
	if enableErr == nil {
		t.Fatal("a stranger enabled self reset")
	}

	want := []observed{{"register_provider", nil}, {"register_user", nil}, {"login", loginErr}, {"enable_self_reset", enableErr}}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.EqualFunc(rec.got, want, func(a, b observed) bool {
		return a.name == b.name && errors.Is(a.err, b.err) && (a.err == nil) == (b.err == nil)
	}) {
		t.Errorf("observed %v, want %v", rec.got, want)
	}
}
