package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"selfreset/config"
	"selfreset/domain"
)

// group is a top-level command. A new group is a cmd_<name>.go file defining one of these
// and one line in groups below.
type group struct {
	name    string
	summary string // one line, for `selfreset help`
	run     func(ctx context.Context, c *cli, args []string) error
}

// groups is the dispatch table, in the order `selfreset help` lists them.
var groups = []group{
	migrateGroup,
	providerGroup,
	userGroup,
	auditGroup,
	serveGroup,
	projectionsGroup,
	benchGroup,
}

// rootName is the program's name, and its flag set's.
const rootName = "selfreset"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed, or the domain refused it
	exitUsage   = 2 // bad flags, bad arguments or bad configuration: nothing was attempted
)

// cli is what every command gets: its streams, the environment and the global flags.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	dev            bool
	log            *slog.Logger
}

// printf writes command output (not logs) to stdout.
func (c *cli) printf(format string, args ...any) { fmt.Fprintf(c.stdout, format, args...) }

// run is the whole program, minus the process: main passes os.Args[1:], the standard
// streams and os.Getenv, and exits with what run returns. Tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	var err error
	if c.log, err = newLogger(stderr, getenv); err != nil {
		return c.exit(err)
	}

	fs := newFlagSet(rootName, "selfreset [--dev] <command> [flags]")
	fs.BoolVar(&c.dev, "dev", false, "development mode: without SELFRESET_SECRET, use the public development key")
	fs.Usage = func() { c.printHelp(fs.Output()) } // -h only: parse errors are one line
	err = c.parse(fs, args)
	if err == nil {
		err = c.dispatch(ctx, fs.Args())
	}
	return c.exit(err)
}

// newLogger is the process's logger, at SELFRESET_LOG_LEVEL; on a bad level it still
// returns one, at info, with the error.
func newLogger(w io.Writer, getenv func(string) string) (*slog.Logger, error) {
	level, err := config.LogLevel(getenv)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), err
}

func (c *cli) dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("no command given; run 'selfreset help' for the list")
	}
	name, rest := args[0], args[1:]
	if name == "help" {
		c.printHelp(c.stdout)
		return nil
	}
	for _, g := range groups {
		if g.name == name {
			return g.run(ctx, c, rest)
		}
	}
	return usagef("unknown command %q; run 'selfreset help' for the list", name)
}

func (c *cli) printHelp(w io.Writer) {
	fmt.Fprintln(w, "usage: selfreset [--dev] <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, g := range groups {
		fmt.Fprintf(w, "  %-10s %s\n", g.name, g.summary)
	}
	fmt.Fprintln(w, "  help       this list")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "global flags:")
	fmt.Fprintln(w, "  --dev      development mode: without SELFRESET_SECRET, use the public development key")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'selfreset <command> -h' for a command's flags. Configuration comes from SELFRESET_*")
	fmt.Fprintln(w, "environment variables (see README.md). Exit codes: 0 done, 1 refused or failed, 2 bad usage")
	fmt.Fprintln(w, "or configuration.")
}

// exit prints err as one line and maps it to an exit code.
func (c *cli) exit(err error) int {
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return exitOK
	}
	fmt.Fprintln(c.stderr, "selfreset: "+oneLine(describe(err)))
	var ue *usageError
	var ce *config.Error
	switch {
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	}
	switch domain.Code(err) {
	case domain.ErrInvalidInput.Code, domain.ErrUnknownRole.Code, domain.ErrPasswordRejected.Code:
		return exitUsage
	}
	return exitFailure
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// ---- usage errors and flags ----

// usageError is a mistake in how the command was called (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelpShown ends a command whose help was asked for (-h): exit code 0.
var errHelpShown = errors.New("help shown")

// newFlagSet returns a flag set whose errors come back as values (they are printed as
// one line by exit) and whose -h prints usageLine and the flags to stderr.
func newFlagSet(name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n", usageLine)
		if hasFlags(fs) {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parse parses args into fs. -h prints the usage to stderr and returns errHelpShown; other
// problems return a usageError naming the command.
func (c *cli) parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(c.stderr)
		fs.Usage()
		return errHelpShown
	}
	if err != nil {
		if fs.Name() == rootName {
			return usagef("%v (run 'selfreset help' for usage)", err)
		}
		return usagef("%s: %v (run 'selfreset %s -h' for usage)", fs.Name(), err, fs.Name())
	}
	return nil
}

// parseAll is parse for commands that take no positional arguments.
func (c *cli) parseAll(fs *flag.FlagSet, args []string) error {
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q (run 'selfreset %s -h' for usage)", fs.Name(), fs.Arg(0), fs.Name())
	}
	return nil
}

// subcommand is one verb of a group ("provider add").
type subcommand struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

// verbGroup is a group whose every use names one of its verbs ("provider add").
func verbGroup(name, summary string, verbs []subcommand) group {
	return group{name: name, summary: summary, run: func(ctx context.Context, c *cli, args []string) error {
		return c.dispatchSub(ctx, name, verbs, args)
	}}
}

// dispatchSub runs the subcommand args[0] of group.
func (c *cli) dispatchSub(ctx context.Context, group string, subs []subcommand, args []string) error {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.name
	}
	if len(args) == 0 {
		return usagef("%s: missing subcommand (%s)", group, strings.Join(names, ", "))
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprintf(c.stdout, "usage: selfreset %s <subcommand> [flags]\n\nsubcommands:\n", group)
		for _, s := range subs {
			fmt.Fprintf(c.stdout, "  %-20s %s\n", s.name, s.summary)
		}
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, c, args[1:])
		}
	}
	return usagef("%s: unknown subcommand %q (%s)", group, args[0], strings.Join(names, ", "))
}

// ---- argument checks shared by the command groups ----

// providerUsage is the help text of a required provider-code flag.
const providerUsage = "provider code (required)"

// checkedFlag is a string flag with the check that normalizes its value once its flag set
// is parsed, so the flag's name is written once, where it is defined.
type checkedFlag struct {
	value *string
	check func(cmd, v string) (string, error)
}

// providerFlag adds a provider-code flag called name to fs.
func providerFlag(fs *flag.FlagSet, name, usage string) checkedFlag {
	return checkedFlag{value: fs.String(name, "", usage), check: func(cmd, v string) (string, error) {
		return providerCode(cmd, name, v)
	}}
}

// loginFlag adds --login to fs.
func loginFlag(fs *flag.FlagSet, usage string) checkedFlag {
	return checkedFlag{value: fs.String("login", "", usage), check: loginName}
}

// required is the checked value; a missing one is a usage error.
func (f checkedFlag) required(cmd string) (string, error) { return f.check(cmd, *f.value) }

// optional is the checked value, or "" when the flag was not given.
func (f checkedFlag) optional(cmd string) (string, error) {
	if *f.value == "" {
		return "", nil
	}
	return f.check(cmd, *f.value)
}

// displayName trims and checks a --name value: required, at most 200 bytes.
func displayName(cmd, v string) (string, error) {
	n := strings.TrimSpace(v)
	switch {
	case n == "":
		return "", usagef("%s: --name is required", cmd)
	case len(n) > 200:
		return "", usagef("%s: --name is longer than 200 bytes", cmd)
	}
	return n, nil
}

// providerCode normalizes and checks a --code/--provider value.
func providerCode(cmd, flagName, v string) (string, error) {
	if strings.TrimSpace(v) == "" {
		return "", usagef("%s: --%s is required", cmd, flagName)
	}
	code := domain.NormalizeProviderCode(v)
	if !domain.ValidProviderCode(code) {
		return "", usagef("%s: --%s %q is not a provider code (2 to 32 letters and digits)", cmd, flagName, v)
	}
	return code, nil
}

// loginName normalizes and checks a --login value.
func loginName(cmd, v string) (string, error) {
	if strings.TrimSpace(v) == "" {
		return "", usagef("%s: --login is required", cmd)
	}
	login := domain.NormalizeLogin(v)
	if !domain.ValidLogin(login) {
		return "", usagef("%s: --login %q is not a login name (up to 64 letters, digits and . _ @ +, starting with a letter or digit)", cmd, v)
	}
	return login, nil
}
