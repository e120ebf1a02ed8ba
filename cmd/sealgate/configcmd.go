package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/config"
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
line and key. Exit code 0 when valid, 2 when not.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := loadConfig(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	})
	return cmd
}
