package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway"
)

// loadConfig returns the embedded defaults when path is empty, else the
// defaults overlaid by the file. Invalid config is a usage error (exit 2).
func loadConfig(path string) (*config.Config, error) {
	var cfg *config.Config
	var err error
	if path == "" {
		cfg, err = config.Default()
	} else {
		cfg, err = config.Load(path)
	}
	if err != nil {
		return nil, usageErr(err)
	}
	return cfg, nil
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect and validate configuration files",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a config file and exit (0 valid, 2 invalid)",
		Long: `Validate FILE as it would be loaded by "sealgate serve --config FILE":
unknown keys, wrong types and invalid values are reported with the file,
line and key. Exit code 0 when valid, 2 when not. Warnings (a trusted
network holding a cloud's shared sending range, a listener certificate
that has expired, expires within 30 days or does not cover hostname) go
to standard error and do not change the exit code.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(args[0])
			if err != nil {
				return err
			}
			if err := gateway.CheckConfig(cfg); err != nil {
				return usageErr(err)
			}
			warnings := gateway.ConfigWarnings(cfg, time.Now())
			for _, w := range warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			if len(warnings) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, %d warnings\n", args[0], len(warnings))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "hash-password",
		Short: "Read a password on standard input and print its bcrypt hash for inbound.auth.users",
		Long: `Read one line (the password) from standard input and print a bcrypt hash
(cost 12) to put in inbound.auth.users[].password_hash. The password is
never echoed, logged or stored. On a terminal it is asked for twice,
without echo.

  printf '%s' "$PASSWORD" | sealgate config hash-password`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd)
			if err != nil {
				return err
			}
			if pw == "" {
				return usageErr(errors.New("no password on standard input"))
			}
			hash, err := config.HashPassword(pw)
			if err != nil {
				return usageErr(err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), hash)
			return nil
		},
	})
	return cmd
}
