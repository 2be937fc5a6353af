package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"selfreset/commands"
	"selfreset/domain"
)

var userGroup = verbGroup("user", "register users and change an account's status (admin lock, deactivate, delete)", []subcommand{
	{"add", "register a user: --provider C --login L --name N [--role user-admin|auditor] --password-stdin", runUserAdd},
	statusCommand("lock", "admin-lock the account (only an admin unlock lifts it; no reset token is issued)", "admin-locked",
		(*commands.Handler).AdminLock),
	statusCommand("unlock", "lift the admin lock, and a failed-login lock with it", "unlocked",
		(*commands.Handler).AdminUnlock),
	statusCommand("deactivate", "suspend the account", "deactivated",
		(*commands.Handler).Deactivate),
	statusCommand("reactivate", "restore a deactivated account", "reactivated",
		(*commands.Handler).Reactivate),
	statusCommand("delete", "delete the account for good (its history stays)", "deleted",
		(*commands.Handler).Delete),
})

// maxPasswordInput bounds what --password-stdin reads; the policy allows 128 characters.
const maxPasswordInput = 4096

// roleList is a repeatable --role flag.
type roleList []string

func (r *roleList) String() string { return strings.Join(*r, ",") }

func (r *roleList) Set(v string) error {
	v = strings.TrimSpace(v)
	if !domain.KnownRole(v) {
		return fmt.Errorf("unknown role %q (known: %s)", v, domain.RoleNames())
	}
	for _, have := range *r {
		if have == v {
			return nil
		}
	}
	*r = append(*r, v)
	return nil
}

func runUserAdd(ctx context.Context, c *cli, args []string) error {
	const cmd = "user add"
	fs := newFlagSet(cmd, "selfreset user add --provider C --login L --name N [--role user-admin|auditor] --password-stdin < password-file")
	account := accountFlags(fs)
	name := fs.String("name", "", "the user's display name (required)")
	var roles roleList
	fs.Var(&roles, "role", "grant a `role` (repeatable; known: "+domain.RoleNames()+")")
	fromStdin := fs.Bool("password-stdin", false, "read the initial password from the first line of standard input (required)")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	code, l, err := account(cmd)
	if err != nil {
		return err
	}
	n, err := displayName(cmd, *name)
	if err != nil {
		return err
	}
	if !*fromStdin {
		return usagef("%s: --password-stdin is required: the password is read from standard input, never from a flag", cmd)
	}
	pw, err := readPassword(c.stdin)
	if err != nil {
		return usagef("%s: %v", cmd, err)
	}
	return c.withCommands(ctx, func(h *commands.Handler) error {
		err := h.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: code, Login: l, DisplayName: n, Password: pw, Roles: roles})
		if err != nil {
			return err
		}
		if len(roles) > 0 {
			c.printf("user %s/%s registered with role %s\n", code, l, roles.String())
		} else {
			c.printf("user %s/%s registered\n", code, l)
		}
		return nil
	})
}

// readPassword reads the first line of r, without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxPasswordInput), maxPasswordInput).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	if errors.Is(err, io.EOF) && len(line) >= maxPasswordInput {
		return "", fmt.Errorf("the password on standard input is longer than %d bytes", maxPasswordInput)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no password on standard input (pipe it in: --password-stdin < file)")
	}
	return line, nil
}

// statusCommand builds a `user <verb> --provider C --login L` subcommand around one handler method.
func statusCommand(verb, summary, done string, do func(*commands.Handler, context.Context, commands.UserCommand) error) subcommand {
	return subcommand{name: verb, summary: summary + ": --provider C --login L",
		run: func(ctx context.Context, c *cli, args []string) error {
			cmd := "user " + verb
			fs := newFlagSet(cmd, "selfreset "+cmd+" --provider C --login L")
			account := accountFlags(fs)
			if err := c.parseAll(fs, args); err != nil {
				return err
			}
			code, l, err := account(cmd)
			if err != nil {
				return err
			}
			return c.withCommands(ctx, func(h *commands.Handler) error {
				if err := do(h, ctx, commands.UserCommand{Actor: operator, Provider: code, Login: l}); err != nil {
					return err
				}
				c.printf("user %s/%s %s\n", code, l, done)
				return nil
			})
		}}
}

// accountFlags adds the required --provider and --login flags to fs and returns the check
// to run once fs is parsed: it gives the normalized code and login, or a usage error.
func accountFlags(fs *flag.FlagSet) func(cmd string) (code, login string, err error) {
	return accountScope(fs, "login name, stored lower-cased (required)", true)
}

// accountScope adds --provider (required) and --login to fs and returns the check to run
// once fs is parsed: the normalized code and login, or a usage error. Unless loginRequired,
// a missing --login gives "" (the whole provider).
func accountScope(fs *flag.FlagSet, loginUsage string, loginRequired bool) func(cmd string) (code, login string, err error) {
	provider := providerFlag(fs, "provider", providerUsage)
	login := loginFlag(fs, loginUsage)
	return func(cmd string) (string, string, error) {
		code, err := provider.required(cmd)
		if err != nil {
			return "", "", err
		}
		if loginRequired {
			l, err := login.required(cmd)
			return code, l, err
		}
		l, err := login.optional(cmd)
		return code, l, err
	}
}
