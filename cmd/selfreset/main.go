// Command selfreset is the self-service password reset service: the HTTP pages and API
// with the workers behind them (serve), the operator commands (migrate, provider, user,
// projections), the auditors' view of the event history (audit) and the load benchmark
// (bench). Run `selfreset help` for the list.
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
