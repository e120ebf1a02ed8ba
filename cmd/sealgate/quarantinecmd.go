package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/queue"
)

// newQuarantineCmd is `sealgate queue quarantine list|restore`; the
// config path is the queue command's --config.
func newQuarantineCmd(configPath *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quarantine",
		Short: "List and restore spool records that could not be read",
		Long: `A spool record that does not decrypt or decode is moved to quarantine,
never deleted. "list" shows what is there and why; "restore" puts messages
back in the queue once their record opens — under the spool key, or under
an earlier key given with --key-file (for instance the key of a spool whose
key file was lost and later found).`,
	}

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List quarantined messages (--json for machine-readable output)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSpool(*configPath, cmd.OutOrStdout(), func(ops admin.QueueOps, out io.Writer) error {
				q, err := ops.Quarantined()
				if err != nil {
					return err
				}
				if listJSON {
					return printJSON(out, q)
				}
				printQuarantine(out, q)
				return nil
			})
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	var all bool
	var keyFiles []string
	restore := &cobra.Command{
		Use:   "restore ID... | --all",
		Short: "Put quarantined messages back in the queue",
		Args: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return fmt.Errorf("give message IDs or --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var oldKeys [][]byte
			for _, f := range keyFiles {
				k, err := queue.ReadKeyFile(f)
				if err != nil {
					return usageErr(err)
				}
				oldKeys = append(oldKeys, k)
			}
			return withSpool(*configPath, cmd.OutOrStdout(), func(ops admin.QueueOps, out io.Writer) error {
				res, err := ops.RestoreQuarantined(args, oldKeys...)
				if err != nil {
					return err
				}
				failed := 0
				for _, r := range res {
					if r.Restored {
						fmt.Fprintf(out, "%s restored\n", r.ID)
					} else {
						failed++
						fmt.Fprintf(out, "%s not restored: %s\n", r.ID, r.Error)
					}
				}
				if failed > 0 {
					return &exitError{code: 1, err: fmt.Errorf("%d of %d messages not restored", failed, len(res))}
				}
				return nil
			})
		},
	}
	restore.Flags().BoolVar(&all, "all", false, "restore every quarantined message that opens")
	restore.Flags().StringArrayVar(&keyFiles, "key-file", nil, "an earlier spool key to try as well (repeatable)")

	cmd.AddCommand(list, restore)
	return cmd
}

func printQuarantine(out io.Writer, q []queue.QuarantinedMessage) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tQUARANTINED\tBYTES\tPARTS\tREASON")
	for _, m := range q {
		at := "-"
		if !m.At.IsZero() {
			at = m.At.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", m.ID, at, m.Bytes, strings.Join(m.Parts, ","), dash(m.Reason))
	}
	tw.Flush()
	fmt.Fprintf(out, "%d messages in quarantine\n", len(q))
}
