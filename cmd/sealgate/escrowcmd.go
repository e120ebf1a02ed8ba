package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/queue"
)

func newEscrowCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "escrow",
		Short: "List, show and revoke escrowed messages (metadata and access logs, never the content)",
		Long: `List, show and revoke the messages kept in escrow for the portal. One row
per recipient: its access record ID is <message ID>.<n>; a message ID
names every recipient of the message. Like the queue commands, these go
through a running server's admin listener, or open the data dir (and the
escrow key) when the server is stopped. The content is never shown.`,
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "config file (default: embedded defaults)")

	withEscrow := func(cmd *cobra.Command, id string, fn func(ops admin.EscrowOps, out io.Writer) error) error {
		cfg, err := loadConfig(configPath)
		if err != nil {
			return err
		}
		ops, _, closeOps, err := admin.OpenEscrowOps(cfg)
		if err != nil {
			return err
		}
		defer closeOps()
		err = fn(ops, cmd.OutOrStdout())
		switch {
		case errors.Is(err, queue.ErrEscrowGone):
			return &exitError{code: 1, err: fmt.Errorf("no escrowed message %s", id)}
		case errors.Is(err, admin.ErrNoEscrowRecipient):
			return &exitError{code: 1, err: err}
		}
		return err
	}

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List escrowed messages, one row per recipient: ID, sender, recipient, created, expires, opened, state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withEscrow(cmd, "", func(ops admin.EscrowOps, out io.Writer) error {
				recs, err := ops.List()
				if err != nil {
					return err
				}
				if listJSON {
					return printJSON(out, nonNil(recs))
				}
				printEscrowTable(out, recs)
				return nil
			})
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	var showJSON bool
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show an escrowed message's recipients and access logs (message or access record ID; never the content)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withEscrow(cmd, args[0], func(ops admin.EscrowOps, out io.Writer) error {
				recs, err := ops.Show(args[0])
				if err != nil {
					return err
				}
				if showJSON {
					return printJSON(out, recs)
				}
				for _, r := range recs {
					printEscrowRecord(out, r)
				}
				return nil
			})
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")

	var recipient string
	revoke := &cobra.Command{
		Use:   "revoke ID [--recipient ADDR]",
		Short: "End access: every recipient of a message ID (its content is destroyed), or one (access record ID or --recipient)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if recipient != "" {
				if _, _, err := mailtext.CanonicalAddress(recipient); err != nil || !strings.Contains(recipient, "@") {
					return usageErr(fmt.Errorf("--recipient %q is not an address", recipient))
				}
			}
			return withEscrow(cmd, args[0], func(ops admin.EscrowOps, out io.Writer) error {
				recs, err := ops.Revoke(args[0], recipient)
				if err != nil {
					return err
				}
				for _, r := range recs {
					fmt.Fprintf(out, "%s %s: %s\n", r.ID, printable(r.Recipient), r.State)
				}
				if len(recs) > 0 && !recs[0].Destroyed.IsZero() {
					fmt.Fprintf(out, "content of %s destroyed\n", recs[0].MessageID)
				}
				return nil
			})
		},
	}
	revoke.Flags().StringVar(&recipient, "recipient", "", "revoke this recipient's access only")
	cmd.AddCommand(list, show, revoke)
	return cmd
}

func nonNil(recs []admin.EscrowRecord) []admin.EscrowRecord {
	if recs == nil {
		return []admin.EscrowRecord{}
	}
	return recs
}

// printable keeps what a message's sender wrote (the From header, a
// remote server's reply) from driving the admin's terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, mailtext.OneLine(s))
}

func escrowSender(r admin.EscrowRecord) string {
	if r.Sender != "" {
		return printable(r.Sender)
	}
	if r.EnvelopeFrom != "" {
		return printable(r.EnvelopeFrom)
	}
	return "<>"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printEscrowTable(out io.Writer, recs []admin.EscrowRecord) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSENDER\tRECIPIENT\tCREATED\tEXPIRES\tOPENED\tSTATE")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, escrowSender(r), printable(r.Recipient),
			r.Created.Local().Format(time.DateTime), r.Expires.Local().Format(time.DateTime), yesNo(r.Opened), r.State)
	}
	tw.Flush()
	fmt.Fprintf(out, "%d escrowed recipients\n", len(recs))
}

func printEscrowRecord(out io.Writer, r admin.EscrowRecord) {
	fmt.Fprintf(out, "ID:         %s (message %s, queue ID %s)\n", r.ID, r.MessageID, r.QueueID)
	fmt.Fprintf(out, "Sender:     %s (envelope %s)\n", escrowSender(r), dash(printable(r.EnvelopeFrom)))
	fmt.Fprintf(out, "Recipient:  %s\n", printable(r.Recipient))
	fmt.Fprintf(out, "Created:    %s\n", r.Created.Format(time.RFC3339))
	fmt.Fprintf(out, "Expires:    %s\n", r.Expires.Format(time.RFC3339))
	opened := "no"
	if r.Opened {
		opened = "yes, first at " + r.OpenedAt.Format(time.RFC3339)
	}
	fmt.Fprintf(out, "Opened:     %s\n", opened)
	fmt.Fprintf(out, "State:      %s\n", r.State)
	if !r.Revoked.IsZero() {
		fmt.Fprintf(out, "Revoked:    %s by %s\n", r.Revoked.Format(time.RFC3339), dash(printable(r.RevokedBy)))
	}
	if !r.Destroyed.IsZero() {
		fmt.Fprintf(out, "Destroyed:  %s (content and key removed)\n", r.Destroyed.Format(time.RFC3339))
	}
	fmt.Fprintln(out, "Access log:")
	printEscrowEvents(out, "  ", r.Events)
	fmt.Fprintln(out)
}

func printEscrowEvents(out io.Writer, indent string, events []queue.EscrowEvent) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, e := range events {
		client := e.Client
		if client == "" {
			client = "gateway"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\n", indent, e.Time.Format(time.RFC3339), e.Kind, printable(client), printable(e.Detail))
	}
	tw.Flush()
}
