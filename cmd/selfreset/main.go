// Command selfreset is the self-service password reset service: its operator commands
// (migrate, provider, user), the auditors' view of the event history (audit), and, in
// later versions, the HTTP service itself. Run `selfreset help` for the list.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
