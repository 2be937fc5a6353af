package main

import (
	"context"

	"selfreset/commands"
)

var providerGroup = verbGroup("provider", "register providers (agencies) and allow or revoke Self Password Reset for them", []subcommand{
	{"add", "register a provider: --code C --name N [--allow-self-reset]", runProviderAdd},
	{"allow-self-reset", "let the provider's users be enabled for Self Password Reset: --code C", runProviderAllow},
	{"revoke-self-reset", "withdraw that; pending requests are then refused: --code C", runProviderRevoke},
})

func runProviderAdd(ctx context.Context, c *cli, args []string) error {
	const cmd = "provider add"
	fs := newFlagSet(cmd, "selfreset provider add --code C --name N [--allow-self-reset]")
	code := providerFlag(fs, "code", "provider code: 2 to 32 letters and digits, stored upper-cased (required)")
	name := fs.String("name", "", "the provider's display name (required)")
	allow := fs.Bool("allow-self-reset", false, "allow Self Password Reset for this provider at once")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	normalized, err := code.required(cmd)
	if err != nil {
		return err
	}
	n, err := displayName(cmd, *name)
	if err != nil {
		return err
	}
	return c.withCommands(ctx, func(h *commands.Handler) error {
		err := h.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: normalized, Name: n, AllowSelfReset: *allow})
		if err != nil {
			return err
		}
		if *allow {
			c.printf("provider %s registered; Self Password Reset allowed\n", normalized)
		} else {
			c.printf("provider %s registered\n", normalized)
		}
		return nil
	})
}

func runProviderAllow(ctx context.Context, c *cli, args []string) error {
	return providerToggle(ctx, c, args, "allow-self-reset", "Self Password Reset allowed", (*commands.Handler).AllowProviderSelfReset)
}

func runProviderRevoke(ctx context.Context, c *cli, args []string) error {
	return providerToggle(ctx, c, args, "revoke-self-reset", "Self Password Reset revoked", (*commands.Handler).RevokeProviderSelfReset)
}

func providerToggle(ctx context.Context, c *cli, args []string, sub, done string,
	do func(*commands.Handler, context.Context, commands.ProviderCommand) error) error {
	cmd := "provider " + sub
	fs := newFlagSet(cmd, "selfreset "+cmd+" --code C")
	code := providerFlag(fs, "code", providerUsage)
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	normalized, err := code.required(cmd)
	if err != nil {
		return err
	}
	return c.withCommands(ctx, func(h *commands.Handler) error {
		if err := do(h, ctx, commands.ProviderCommand{Actor: operator, Code: normalized}); err != nil {
			return err
		}
		c.printf("provider %s: %s\n", normalized, done)
		return nil
	})
}
