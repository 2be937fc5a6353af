package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"selfreset/projections"
)

var projectionsGroup = verbGroup("projections", "read models: rebuild them from the history, or show checkpoints, lag and parked events", []subcommand{
	{"rebuild", "rebuild read models from the full history while the service keeps serving: [NAME...] (default: all)", runProjectionsRebuild},
	{"status", "per consumer: checkpoint, feed head, events behind, parked events", runProjectionsStatus},
})

// withRunner opens the event store and the read-model database and builds a runner for
// the built-in read models. It only reads the history, so it needs no secret.
func (c *cli) withRunner(ctx context.Context, mutate func(*projections.Config), fn func(r *projections.Runner) error) error {
	return c.withHistory(ctx, func(a *app) error {
		pool, closePool, err := a.readModelPool(ctx)
		if err != nil {
			return err
		}
		defer closePool()
		cfg := projections.Config{Store: a.store, Pool: pool, Codec: a.codec, Logger: c.log}
		if mutate != nil {
			mutate(&cfg)
		}
		r, err := projections.New(cfg)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

func runProjectionsRebuild(ctx context.Context, c *cli, args []string) error {
	const cmd = "projections rebuild"
	fs := newFlagSet(cmd, "selfreset projections rebuild [NAME...]\n\n"+
		"Replays the whole history into shadow tables, then swaps them in and moves the\n"+
		"checkpoints in one transaction; a running 'selfreset serve' keeps serving meanwhile.\n"+
		"Names: "+strings.Join(readModelNames(), ", ")+" (default: all of them). The mailer is never\n"+
		"rebuilt: it would send mail again.")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	names := fs.Args()
	known := readModelNames()
	for _, n := range names {
		switch {
		case n == "mailer":
			return usagef("%s: the mailer is not a read model: rebuilding it would send mail again", cmd)
		case !slices.Contains(known, n):
			return usagef("%s: no read model is named %q (known: %s)", cmd, n, strings.Join(known, ", "))
		}
	}
	return c.withRunner(ctx, nil, func(r *projections.Runner) error {
		reports, err := r.Rebuild(ctx, names...)
		if err != nil {
			return err
		}
		for _, rep := range reports {
			c.printf("%s rebuilt from %d events up to position %s", rep.Name, rep.Events, rep.Position)
			if rep.Parked > 0 {
				c.printf("; %d events parked (see parked_events)", rep.Parked)
			}
			c.printf(" in %s\n", rep.Duration.Round(time.Millisecond))
		}
		return nil
	})
}

func runProjectionsStatus(ctx context.Context, c *cli, args []string) error {
	const cmd = "projections status"
	fs := newFlagSet(cmd, "selfreset projections status [--lag-cap N] [--parked]")
	lagCap := fs.Int("lag-cap", 100000, "stop counting events behind a checkpoint at this many")
	parked := fs.Bool("parked", false, "also list the parked events (events a consumer gave up on)")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	if *lagCap <= 0 {
		return usagef("%s: --lag-cap must be positive", cmd)
	}
	return c.withRunner(ctx, func(cfg *projections.Config) { cfg.LagCap = *lagCap }, func(r *projections.Runner) error {
		st, err := r.Status(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CONSUMER\tCHECKPOINT\tHEAD\tBEHIND\tPARKED\tUPDATED")
		for _, s := range st {
			updated := "never"
			if !s.UpdatedAt.IsZero() {
				updated = s.UpdatedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.Checkpoint, s.Head, s.BehindText(), s.Parked, updated)
		}
		if err := tw.Flush(); err != nil || !*parked {
			return err
		}
		list, err := r.ParkedEvents(ctx, "")
		if err != nil {
			return err
		}
		c.printf("\n%d parked events\n", len(list))
		for _, p := range list {
			c.printf("%s %s %s@%d %s (event %s, position %s, %d attempts): %s\n",
				p.ParkedAt.UTC().Format(time.RFC3339), p.Consumer, p.Stream, p.Revision, p.EventType,
				p.EventID, p.Position, p.Attempts, oneLine(p.Error))
		}
		return nil
	})
}

func readModelNames() []string {
	var out []string
	for _, m := range projections.ReadModels() {
		out = append(out, m.Name())
	}
	return out
}
