package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"selfreset/audit"
	"selfreset/config"
	"selfreset/domain"
	"selfreset/eventstore"
)

var auditGroup = group{
	name:    "audit",
	summary: "print a provider's (or one user's) event history; audit verify checks it is untampered, audit state shows it at a past time",
	run:     runAuditGroup,
}

// runAuditGroup keeps `selfreset audit --provider C` as it always was and adds the verbs.
func runAuditGroup(ctx context.Context, c *cli, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "verify":
			return runAuditVerify(ctx, c, args[1:])
		case "state":
			return runAuditState(ctx, c, args[1:])
		case "seal":
			return runAuditSeal(ctx, c, args[1:])
		}
	}
	return runAudit(ctx, c, args)
}

// auditFlags are the filters shared by the listing (and, in their API form, by
// GET /api/v1/audit/events).
type auditFlags struct {
	scope                              func(cmd string) (code, login string, err error)
	typ, actor, clientIP, since, until *string
}

func addAuditFlags(fs *flag.FlagSet) auditFlags {
	return auditFlags{
		scope:    accountScope(fs, "only this user's history (and unmatched requests naming this login)", false),
		typ:      fs.String("type", "", "only events of this type, e.g. ResetRequestRejected"),
		actor:    fs.String("actor", "", "only events by this actor, e.g. user:ACME/ada or system:cli"),
		clientIP: fs.String("client-ip", "", "only events from this client IP address"),
		since:    fs.String("since", "", "only events that occurred at or after this time, e.g. 2026-01-31T00:00:00Z"),
		until:    fs.String("until", "", "only events that occurred at or before this time"),
	}
}

func (af auditFlags) filter(cmd string) (audit.Filter, error) {
	var f audit.Filter
	var err error
	if f.Provider, f.Login, err = af.scope(cmd); err != nil {
		return f, err
	}
	f.Type, f.Actor = strings.TrimSpace(*af.typ), strings.TrimSpace(*af.actor)
	if f.ClientIP = strings.TrimSpace(*af.clientIP); f.ClientIP != "" {
		if _, err := netip.ParseAddr(f.ClientIP); err != nil {
			return f, usagef("%s: --client-ip %q is not an IP address", cmd, *af.clientIP)
		}
	}
	if f.Since, err = flagTime(cmd, "since", *af.since); err != nil {
		return f, err
	}
	if f.Until, err = flagTime(cmd, "until", *af.until); err != nil {
		return f, err
	}
	return f, nil
}

// flagTime parses an optional RFC 3339 flag value.
func flagTime(cmd, name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, usagef("%s: --%s %q is not an RFC 3339 time such as 2026-01-31T00:00:00Z", cmd, name, v)
	}
	return t, nil
}

func runAudit(ctx context.Context, c *cli, args []string) error {
	const cmd = "audit"
	fs := newFlagSet(cmd, "selfreset audit --provider C [--login L] [--type T] [--actor A] [--client-ip IP] [--since RFC3339] [--until RFC3339] [--format text|jsonl]\n       selfreset audit verify|state -h")
	af := addAuditFlags(fs)
	format := fs.String("format", "text", "text (one line per event) or jsonl (one JSON object per line)")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	q, err := af.filter(cmd)
	if err != nil {
		return err
	}
	var write func(w io.Writer, r audit.Record) error
	switch *format {
	case "text":
		write = writeAuditText
	case "jsonl":
		write = writeAuditJSON
	default:
		return usagef("%s: --format %q: use text or jsonl", cmd, *format)
	}

	return c.withHistory(ctx, func(a *app) error {
		// Each record is written as it is found: the history is never held in memory.
		out := bufio.NewWriter(c.stdout)
		n := 0
		_, _, err := audit.Query(ctx, a.store, a.codec, q, eventstore.Start, 0, func(r audit.Record) error {
			n++
			return write(out, r)
		})
		if ferr := out.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		if n == 0 {
			who := "provider " + q.Provider
			if q.Login != "" {
				who = "user " + q.Provider + "/" + q.Login
			}
			fmt.Fprintf(c.stderr, "selfreset: audit: no events for %s\n", who)
		}
		return nil
	})
}

// errHistoryBroken ends `audit verify` when it found a break (exit code 1).
var errHistoryBroken = errors.New("the event history does not verify")

func runAuditVerify(ctx context.Context, c *cli, args []string) error {
	const cmd = "audit verify"
	fs := newFlagSet(cmd, "selfreset audit verify [--provider C] [--since RFC3339] [--format text|json]")
	provider := providerFlag(fs, "provider", "check the chains of this provider's streams only (seals always cover the whole feed)")
	since := fs.String("since", "", "check the chains of events that occurred at or after this time only")
	format := fs.String("format", "text", "text or json (one object)")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	var opts audit.VerifyOptions
	var err error
	if opts.Provider, err = provider.optional(cmd); err != nil {
		return err
	}
	if opts.Since, err = flagTime(cmd, "since", *since); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return usagef("%s: --format %q: use text or json", cmd, *format)
	}
	return c.withHistory(ctx, func(a *app) error {
		opts.Keys = a.cfg.AuditSealKeys()
		rep, err := audit.Verify(ctx, a.store, a.codec, opts)
		if err != nil {
			return err
		}
		if *format == "json" {
			b, err := json.Marshal(rep)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%s\n", b)
		} else {
			writeVerifyText(c.stdout, rep)
		}
		if rep.Break != nil {
			return fmt.Errorf("%w: first break at %s", errHistoryBroken, rep.Break)
		}
		return nil
	})
}

func writeVerifyText(w io.Writer, rep audit.Report) {
	fmt.Fprintf(w, "events read:       %d\n", rep.Events)
	fmt.Fprintf(w, "chain links:       %d checked, %d before chaining\n", rep.Checked, rep.BeforeChaining)
	fmt.Fprintf(w, "seals:             %d checked, covering %d events; %d events after the last seal\n", rep.Seals, rep.SealedEvents, rep.Unsealed)
	if !rep.SignaturesChecked {
		fmt.Fprintf(w, "signatures:        not checked (%s not set)\n", config.EnvAuditSealKey)
	}
	if rep.Break != nil {
		fmt.Fprintf(w, "BROKEN at %s\n", rep.Break)
		return
	}
	fmt.Fprintln(w, "OK: no break found")
}

func runAuditState(ctx context.Context, c *cli, args []string) error {
	const cmd = "audit state"
	fs := newFlagSet(cmd, "selfreset audit state --provider C [--login L] --as-of RFC3339")
	scope := accountScope(fs, "only this user", false)
	asOf := fs.String("as-of", "", "the time to show the state at (required), e.g. 2026-03-01T00:00:00Z")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	code, l, err := scope(cmd)
	if err != nil {
		return err
	}
	if *asOf == "" {
		return usagef("%s: --as-of is required", cmd)
	}
	at, err := flagTime(cmd, "as-of", *asOf)
	if err != nil {
		return err
	}
	return c.withHistory(ctx, func(a *app) error {
		st, err := audit.StateAt(ctx, a.store, a.codec, code, l, at)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s\n", b)
		return nil
	})
}

// runAuditSeal seals the feed up to now at once, as serve's sealer does at intervals (for
// a deployment that runs no worker, or before a verification).
func runAuditSeal(ctx context.Context, c *cli, args []string) error {
	const cmd = "audit seal"
	fs := newFlagSet(cmd, "selfreset audit seal")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	return c.withHistory(ctx, func(a *app) error {
		if a.cfg.AuditSealKey == nil {
			return &config.Error{Var: config.EnvAuditSealKey, Msg: "not set; seals are signed with it"}
		}
		s := newSealer(a, a.cfg, domain.SystemClock{}, c.log)
		n := 0
		for {
			sealed, err := s.SealOnce(ctx)
			if err != nil {
				return err
			}
			if !sealed {
				break
			}
			n++
		}
		fmt.Fprintf(c.stdout, "%d seals appended\n", n)
		return nil
	})
}

// newSealer is serve's audit sealer, or nil (and a warning) without a seal key.
func newSealer(a *app, cfg config.Config, clock domain.Clock, log *slog.Logger) *audit.Sealer {
	if cfg.AuditSealKey == nil {
		log.Warn(config.EnvAuditSealKey + " is not set: the event feed is not sealed; audit verify checks the hash chains only")
		return nil
	}
	return &audit.Sealer{Store: a.store, Codec: a.codec, Key: audit.Key{ID: cfg.AuditSealKeyID, Secret: cfg.AuditSealKey},
		Clock: clock, Interval: cfg.AuditSealInterval, Log: log}
}

// ---- output ----

func writeAuditJSON(w io.Writer, r audit.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeAuditText writes one line: when, stream@revision, type, who/where, then the data.
//
//	2026-01-31T09:00:00.123Z user-ACME-bob@1 AccountAdminLocked actor=system:cli corr=… | by=system:cli
func writeAuditText(w io.Writer, r audit.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s@%d %s actor=%s", r.OccurredAt.Format(time.RFC3339Nano), r.Stream, r.Revision, r.Type, textValue(r.Metadata.Actor))
	if r.Metadata.ClientIP != "" {
		fmt.Fprintf(&b, " ip=%s", textValue(r.Metadata.ClientIP))
	}
	if r.Metadata.UserAgent != "" {
		fmt.Fprintf(&b, " ua=%s", textValue(r.Metadata.UserAgent))
	}
	if r.Metadata.CorrelationID != "" {
		fmt.Fprintf(&b, " corr=%s", textValue(r.Metadata.CorrelationID))
	}
	if r.Metadata.CausationID != "" && r.Metadata.CausationID != r.Metadata.CorrelationID {
		fmt.Fprintf(&b, " cause=%s", textValue(r.Metadata.CausationID))
	}
	if len(r.Data) > 0 {
		b.WriteString(" |")
		for _, f := range r.Data {
			var s string
			if json.Unmarshal(f.Value, &s) == nil {
				fmt.Fprintf(&b, " %s=%s", f.Key, textValue(s))
			} else {
				fmt.Fprintf(&b, " %s=%s", f.Key, f.Value)
			}
		}
	}
	if r.DecodeError != "" {
		fmt.Fprintf(&b, " decode_error=%s", textValue(r.DecodeError))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// textValue leaves plain words bare and quotes anything else (spaces, quotes, '=', '|',
// control characters), so one event stays one line that splits unambiguously.
func textValue(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '=' || r == '|' || r == '\\' || r == 0x7f || r > 0x7e {
			b, _ := json.Marshal(s)
			return string(b)
		}
	}
	return s
}
