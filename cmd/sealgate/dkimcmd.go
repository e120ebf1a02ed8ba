package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/gateway/probe"
)

func newDKIMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dkim",
		Short: "Make DKIM keys and check their DNS records",
	}

	var configPath, domain, selector, algo, out string
	var bits int
	keygen := &cobra.Command{
		Use:   "keygen --domain D --selector S [--algo rsa|ed25519]",
		Short: "Generate a DKIM key and print the DNS TXT record to publish",
		Long: `Generate a DKIM signing key (RSA, 2048 bits by default, or Ed25519),
write it with mode 0600 (never over an existing file), and print the DNS
TXT record to publish and the dkim.keys entry to add to the config (the
key file by its absolute path: a config's relative paths count from its
own directory, not from where this command ran).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if domain == "" || selector == "" {
				return usageErr(errors.New("--domain and --selector are required"))
			}
			keyFile := out
			if keyFile == "" {
				cfg, err := loadConfig(configPath)
				if err != nil {
					return err
				}
				keyFile = filepath.Join(cfg.DataDir, "dkim", fmt.Sprintf("%s.%s.%s.pem", domain, selector, algo))
			}
			// The key_file printed below is pasted into a config file,
			// whose relative paths count from its own directory, not from
			// where this command ran: only an absolute path names the
			// same file in both places.
			keyFile, err := filepath.Abs(keyFile)
			if err != nil {
				return err
			}
			key, pemKey, err := certs.GenerateDKIMKey(algo, bits)
			if err != nil {
				return usageErr(err)
			}
			if err := certs.WriteDKIMKey(keyFile, pemKey); err != nil {
				return err
			}
			record, err := certs.DKIMRecord(key)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Wrote %s key to %s (mode 0600).\n\n", algo, keyFile)
			fmt.Fprintf(w, "Publish this DNS record:\n\n%s._domainkey.%s. IN TXT ( %s )\n\n", selector, domain, certs.SplitTXT(record))
			fmt.Fprintf(w, "Then add to the config and reload:\n\ndkim:\n  keys:\n    - domain: %s\n      selector: %s\n      key_file: %s\n", domain, selector, keyFile)
			return nil
		},
	}
	keygen.Flags().StringVarP(&configPath, "config", "c", "", "config file (for data_dir)")
	keygen.Flags().StringVar(&domain, "domain", "", "domain the key signs for")
	keygen.Flags().StringVar(&selector, "selector", "", "selector to publish the key under")
	keygen.Flags().StringVar(&algo, "algo", "rsa", "rsa or ed25519")
	keygen.Flags().IntVar(&bits, "bits", 2048, "RSA key size (at least 2048)")
	keygen.Flags().StringVar(&out, "out", "", "key file (default <data_dir>/dkim/<domain>.<selector>.<algo>.pem)")

	var checkConfig, checkDomain string
	check := &cobra.Command{
		Use:   "check --domain D",
		Short: "Look up a domain's DKIM records and compare them with the configured keys",
		Long: `Look up <selector>._domainkey.<domain> for every configured key of the
domain, through outbound.dns_resolver, and say whether the published public
key is the configured one. Exit 0 when all match, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if checkDomain == "" {
				return usageErr(errors.New("--domain is required"))
			}
			cfg, err := loadConfig(checkConfig)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			results, err := probe.CheckDKIM(ctx, cfg, checkDomain)
			if err != nil {
				return usageErr(err)
			}
			failed := 0
			for _, r := range results {
				if r.OK {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, matches %s\n", r.Name, r.KeyFile)
					continue
				}
				failed++
				fmt.Fprintf(cmd.OutOrStdout(), "%s: MISMATCH: %s\n  want: %s\n", r.Name, r.Problem, certs.SplitTXT(r.Want))
				if r.Published != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "  found: %s\n", r.Published)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d DKIM records do not match their keys", failed, len(results))
			}
			return nil
		},
	}
	check.Flags().StringVarP(&checkConfig, "config", "c", "", "config file (default: embedded defaults)")
	check.Flags().StringVar(&checkDomain, "domain", "", "domain to check")
	cmd.AddCommand(keygen, check)
	return cmd
}
