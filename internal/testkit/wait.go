package testkit

import (
	"testing"
	"time"
)

// WaitFor polls cond, a state another goroutine or process reaches, every few
// milliseconds for up to within, and fails the test naming what if it is not reached.
// The bound is a safety net for a hung test, not a figure the test asserts.
func WaitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", within, what)
		}
	}
}
