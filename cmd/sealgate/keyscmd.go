package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/gateway/admin"
)

func newKeysCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage correspondents' public keys (OpenPGP) and certificates (S/MIME)",
		Long: `Manage the key store: the OpenPGP public keys and S/MIME certificates
sealgate encrypts to when a policy chain reaches pgp or smime. An entry is
named by its fingerprint: the OpenPGP key's, or the SHA-256 of the
certificate (as openssl x509 -noout -fingerprint -sha256 prints it; colons
and case do not matter). Like the queue commands, these go through a
running server's admin listener, or open the data dir when the server is
stopped.`,
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "config file (default: embedded defaults)")

	withKeys := func(fn func(ops admin.KeyOps, out io.Writer) error) error {
		cfg, err := loadConfig(configPath)
		if err != nil {
			return err
		}
		ops, _, closeOps, err := admin.OpenKeyOps(cfg)
		if err != nil {
			return err
		}
		defer closeOps()
		return fn(ops, cmd.OutOrStdout())
	}

	imp := &cobra.Command{
		Use:   "import FILE...",
		Short: "Import public keys (armored or binary OpenPGP) or S/MIME certificates (PEM, DER, PKCS #7 bundle); a refused file stores nothing",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKeys(func(ops admin.KeyOps, out io.Writer) error {
				var failed []error
				for _, file := range args {
					data, err := os.ReadFile(file)
					if err != nil {
						return usageErr(err)
					}
					keys, err := ops.ImportKeys(data)
					if errors.Is(err, certs.ErrBadKey) {
						failed = append(failed, fmt.Errorf("%s: %w", file, err))
						continue
					}
					if err != nil {
						return err
					}
					for _, k := range keys {
						if k.Kind == certs.KindSMIME {
							fmt.Fprintf(out, "%s: imported S/MIME certificate %s serial %s (%s, expires %s) for %s\n",
								file, k.Fingerprint, k.Serial, k.Algorithm, expiry(k.Expires), k.Address)
							continue
						}
						fmt.Fprintf(out, "%s: imported %s %s for %s\n", file, k.Algorithm, k.Fingerprint, k.Address)
					}
				}
				if len(failed) > 0 {
					return &exitError{code: 1, err: errors.Join(failed...)}
				}
				return nil
			})
		},
	}

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List stored keys: address, kind, fingerprint, algorithm, expiry, source",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withKeys(func(ops admin.KeyOps, out io.Writer) error {
				keys, err := ops.Keys()
				if err != nil {
					return err
				}
				if listJSON {
					if keys == nil {
						keys = []certs.Key{}
					}
					return printJSON(out, keys)
				}
				printKeyTable(out, keys)
				return nil
			})
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	var showJSON bool
	show := &cobra.Command{
		Use:   "show ADDRESS",
		Short: "Show the keys of one address",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := certs.KeyAddress(args[0]); err != nil {
				return usageErr(err)
			}
			return withKeys(func(ops admin.KeyOps, out io.Writer) error {
				keys, err := ops.KeysFor(args[0])
				if err != nil {
					return err
				}
				if showJSON {
					if keys == nil {
						keys = []certs.Key{}
					}
					return printJSON(out, keys)
				}
				if len(keys) == 0 {
					return &exitError{code: 1, err: fmt.Errorf("no key for %s", args[0])}
				}
				for _, k := range keys {
					printKey(out, k)
				}
				return nil
			})
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")

	remove := &cobra.Command{
		Use:   "remove FINGERPRINT",
		Short: "Remove a key or certificate, by fingerprint (every address it was stored for)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKeys(func(ops admin.KeyOps, out io.Writer) error {
				n, err := ops.RemoveKey(args[0])
				if errors.Is(err, certs.ErrNoKey) {
					return &exitError{code: 1, err: fmt.Errorf("no key with fingerprint %s%s", certs.NormalizeFingerprint(args[0]), serialHint(ops, args[0]))}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s removed (%d entries)\n", certs.NormalizeFingerprint(args[0]), n)
				return nil
			})
		},
	}
	cmd.AddCommand(imp, list, show, remove)
	return cmd
}

// serialHint helps an admin who gave a certificate's serial number where
// its fingerprint belongs: a serial is unique only per issuer, so it
// does not remove anything, but the hint names the fingerprints.
func serialHint(ops admin.KeyOps, arg string) string {
	keys, err := ops.Keys()
	if err != nil {
		return ""
	}
	serial := certs.NormalizeFingerprint(arg)
	var fps []string
	for _, k := range keys {
		if k.Kind == certs.KindSMIME && k.Serial == serial && !slices.Contains(fps, k.Fingerprint) {
			fps = append(fps, k.Fingerprint)
		}
	}
	if len(fps) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s is the serial of certificate %s; remove a certificate by its fingerprint)", serial, strings.Join(fps, ", "))
}

func printKeyTable(out io.Writer, keys []certs.Key) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tKIND\tFINGERPRINT\tSERIAL\tALGORITHM\tEXPIRES\tSOURCE")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Address, k.Kind, k.Fingerprint, dash(k.Serial), k.Algorithm, expiry(k.Expires), k.Source)
	}
	tw.Flush()
	fmt.Fprintf(out, "%d keys\n", len(keys))
}

func printKey(out io.Writer, k certs.Key) {
	if k.Kind == certs.KindSMIME {
		printCertificate(out, k)
		return
	}
	fmt.Fprintf(out, "Address:     %s\n", k.Address)
	fmt.Fprintf(out, "Kind:        %s\n", k.Kind)
	fmt.Fprintf(out, "Fingerprint: %s\n", k.Fingerprint)
	fmt.Fprintf(out, "User ID:     %s\n", dash(k.UserID))
	fmt.Fprintf(out, "Algorithm:   %s (encryption key)\n", k.Algorithm)
	fmt.Fprintf(out, "Created:     %s\n", k.Created.Format(time.RFC3339))
	fmt.Fprintf(out, "Expires:     %s\n", expiry(k.Expires))
	fmt.Fprintf(out, "Source:      %s, added %s%s\n\n", k.Source, k.Added.Format(time.RFC3339), lookedUpAgain(k.Until))
}

// lookedUpAgain says when a discovered key is due for a new lookup.
func lookedUpAgain(until time.Time) string {
	if until.IsZero() {
		return ""
	}
	return ", looked up again after " + until.Format(time.RFC3339)
}

func printCertificate(out io.Writer, k certs.Key) {
	fmt.Fprintf(out, "Address:     %s\n", k.Address)
	fmt.Fprintf(out, "Kind:        %s (certificate)\n", k.Kind)
	fmt.Fprintf(out, "Fingerprint: %s (SHA-256)\n", k.Fingerprint)
	fmt.Fprintf(out, "Serial:      %s\n", k.Serial)
	fmt.Fprintf(out, "Subject:     %s\n", dash(k.Subject))
	fmt.Fprintf(out, "Issuer:      %s\n", dash(k.Issuer))
	fmt.Fprintf(out, "Algorithm:   %s\n", k.Algorithm)
	fmt.Fprintf(out, "Valid:       %s to %s\n", k.Created.Format(time.RFC3339), k.Expires.Format(time.RFC3339))
	source := k.Source
	if k.Trust != "" {
		source += " (" + k.Trust + ")"
	}
	fmt.Fprintf(out, "Source:      %s, added %s%s\n\n", source, k.Added.Format(time.RFC3339), lookedUpAgain(k.Until))
}

func expiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.DateOnly)
}
