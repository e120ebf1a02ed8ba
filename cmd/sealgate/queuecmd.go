package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/gateway/report"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

func newQueueCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Inspect and manage the spool",
		Long: `Inspect and manage the spool. When a server is running with the same config,
the commands go through its admin HTTP listener; when it is stopped, they
open the data dir directly. Message bodies are never shown.`,
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "config file (default: embedded defaults)")

	withOps := func(fn func(ops admin.QueueOps, out io.Writer) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			return queueErr(withSpool(configPath, cmd.OutOrStdout(), fn))
		}
	}

	var listJSON bool
	var listLimit int
	var listAfter, listState string
	list := &cobra.Command{
		Use:   "list",
		Short: "List spooled messages (--state to filter; --json for machine-readable output; --limit and --after page through a large spool)",
		Args:  cobra.NoArgs,
		RunE: withOps(func(ops admin.QueueOps, out io.Writer) error {
			keep, err := admin.StateFilter(listState)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			return listQueue(ops, out, listQuery{after: listAfter, limit: listLimit, keep: keep}, listJSON)
		}),
	}
	list.Flags().StringVar(&listState, "state", "", "only messages in this state: "+strings.Join(admin.ListStates, ", "))
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON (a JSON array, written page by page)")
	list.Flags().IntVar(&listLimit, "limit", 0, "at most this many messages (0: all)")
	list.Flags().StringVar(&listAfter, "after", "", "start after this queue ID (the last one of the previous page)")

	var showJSON bool
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a message's envelope, recipients, history and escrow access logs (never its body)",
		Args:  cobra.ExactArgs(1),
	}
	show.RunE = func(cmd *cobra.Command, args []string) error {
		return queueErr(showQueueMessage(configPath, args[0], showJSON, cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")

	var retryAll bool
	retry := &cobra.Command{
		Use:   "retry ID | --all",
		Short: "Attempt delivery of a message (or of all) now",
		Args: func(cmd *cobra.Command, args []string) error {
			if retryAll != (len(args) == 0) || len(args) > 1 {
				return fmt.Errorf("give either one message ID or --all")
			}
			return nil
		},
	}
	retry.RunE = func(cmd *cobra.Command, args []string) error {
		return withOps(func(ops admin.QueueOps, out io.Writer) error {
			if retryAll {
				n, err := ops.RetryAll()
				if err == nil {
					auditLocal(ops, cmd.ErrOrStderr(), "retry-all", "", fmt.Sprintf("%d messages made due", n))
					fmt.Fprintf(out, "%d messages scheduled for immediate retry\n", n)
				}
				return err
			}
			id, err := ops.Resolve(args[0])
			if err != nil {
				return err
			}
			if err := ops.Retry(id); err != nil {
				return err
			}
			auditLocal(ops, cmd.ErrOrStderr(), "retry", id, "")
			fmt.Fprintf(out, "%s scheduled for immediate retry\n", id)
			return nil
		})(cmd, args)
	}
	retry.Flags().BoolVar(&retryAll, "all", false, "retry every pending message")

	simple := func(use, short, done string, op func(admin.QueueOps, string) error) *cobra.Command {
		c := &cobra.Command{Use: use + " ID", Short: short, Args: cobra.ExactArgs(1)}
		c.RunE = func(cmd *cobra.Command, args []string) error {
			return withOps(func(ops admin.QueueOps, out io.Writer) error {
				id, err := ops.Resolve(args[0])
				if err != nil {
					return err
				}
				if err := op(ops, id); err != nil {
					return err
				}
				auditLocal(ops, cmd.ErrOrStderr(), use, id, "")
				fmt.Fprintf(out, "%s %s\n", id, done)
				return nil
			})(cmd, args)
		}
		return c
	}
	var deleteBounce bool
	del := &cobra.Command{
		Use:   "delete ID [--bounce]",
		Short: "Remove a message from the spool without delivering it (--bounce: and tell its sender with a DSN)",
		Args:  cobra.ExactArgs(1),
	}
	del.RunE = func(cmd *cobra.Command, args []string) error {
		return queueErr(withSpoolConfig(configPath, func(cfg *config.Config, ops admin.QueueOps) error {
			out := cmd.OutOrStdout()
			id, err := ops.Resolve(args[0])
			if err != nil {
				return err
			}
			if !deleteBounce {
				if err := ops.Delete(id); err != nil {
					return err
				}
				auditLocal(ops, cmd.ErrOrStderr(), "delete", id, "message deleted without delivery")
				fmt.Fprintf(out, "%s deleted\n", id)
				return nil
			}
			rq, err := requeueOps(cfg, ops)
			if err != nil {
				return err
			}
			res, err := rq.Bounce(id)
			if err != nil {
				return err
			}
			auditLocal(ops, cmd.ErrOrStderr(), "bounce", id, "message deleted with a DSN to the sender")
			if res.DSNID == "" {
				fmt.Fprintf(out, "%s deleted; no DSN (the sender is the null address)\n", id)
			} else {
				fmt.Fprintf(out, "%s deleted; DSN %s queued to the sender\n", id, res.DSNID)
			}
			return nil
		}))
	}
	del.Flags().BoolVar(&deleteBounce, "bounce", false, "send the sender a DSN (\"message deleted by the mail administrator\"); the record stays for queue.retention")

	var reapplyAll bool
	reapply := &cobra.Command{
		Use:   "reapply ID | --all",
		Short: "Decide queued mail again under the current policy (after a change of rules, tags or escalation_chain)",
		Long: `Decide queued mail again under the current policy: the running server's
(reload it first) or, when it is stopped, the config file's. Every recipient
still pending starts over at the first method of its new chain, due now; a
policy hold is set or lifted (an admin's hold stays); a rule that now rejects
the message bounces its pending recipients with a DSN. The tags and the
escalation header the message arrived with still count. Delivered recipients,
the message's expiry and its content do not change.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if reapplyAll != (len(args) == 0) || len(args) > 1 {
				return fmt.Errorf("give either one message ID or --all")
			}
			return nil
		},
	}
	reapply.RunE = func(cmd *cobra.Command, args []string) error {
		return queueErr(withSpoolConfig(configPath, func(cfg *config.Config, ops admin.QueueOps) error {
			out := cmd.OutOrStdout()
			rq, err := requeueOps(cfg, ops)
			if err != nil {
				return err
			}
			if reapplyAll {
				res, err := rq.ReapplyAll()
				if err != nil {
					return err
				}
				auditLocal(ops, cmd.ErrOrStderr(), "reapply-all", "", fmt.Sprintf("%d messages decided again", len(res)))
				failed := 0
				for _, r := range res {
					fmt.Fprintln(out, r)
					if r.Error != "" {
						failed++
					}
				}
				fmt.Fprintf(out, "%d messages decided again\n", len(res)-failed)
				if failed > 0 {
					return &exitError{code: 1, err: fmt.Errorf("%d messages could not be decided again", failed)}
				}
				return nil
			}
			id, err := ops.Resolve(args[0])
			if err != nil {
				return err
			}
			res, err := rq.Reapply(id)
			if err != nil {
				return err
			}
			auditLocal(ops, cmd.ErrOrStderr(), "reapply", id, res.String())
			fmt.Fprintln(out, res)
			return nil
		}))
	}
	reapply.Flags().BoolVar(&reapplyAll, "all", false, "every unfinished message")

	cmd.AddCommand(list, show, retry, del, reapply,
		simple("hold", "Stop delivery attempts for a message until released", "held",
			func(o admin.QueueOps, id string) error { return o.Hold(id) }),
		simple("release", "Let a held message be delivered again", "released",
			func(o admin.QueueOps, id string) error { return o.Release(id) }),
		newQuarantineCmd(&configPath),
	)
	return cmd
}

// requeueOps are the reapply and bounce operations beside ops: the
// running server's, or the spool file's under the config file's policy.
func requeueOps(cfg *config.Config, ops admin.QueueOps) (admin.RequeueOps, error) {
	var engine *policy.Engine
	if _, remote := ops.(*admin.AdminClient); !remote {
		var err error
		if engine, err = policy.Compile(cfg.Policy); err != nil {
			return nil, err
		}
	}
	return admin.RequeueOpsFor(ops, engine, report.DSNBuilder{Hostname: cfg.ServerHostname()}.Build)
}

// withSpool runs fn on the spool of the config at configPath: the file
// itself when no server holds it, the running server's admin API when
// one does.
func withSpool(configPath string, out io.Writer, fn func(ops admin.QueueOps, out io.Writer) error) error {
	return withSpoolConfig(configPath, func(_ *config.Config, ops admin.QueueOps) error { return fn(ops, out) })
}

// withSpoolConfig is withSpool for a command that needs the loaded
// configuration too.
func withSpoolConfig(configPath string, fn func(cfg *config.Config, ops admin.QueueOps) error) error {
	cfg, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	ops, _, closeOps, err := admin.OpenQueueOps(cfg)
	if err != nil {
		return err
	}
	defer closeOps()
	return fn(cfg, ops)
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// queueErr gives the queue commands' errors their exit status and words:
// no such message, an ambiguous prefix, a held or finished message.
func queueErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, queue.ErrNotFound):
		return &exitError{code: 1, err: fmt.Errorf("no such message")}
	case errors.Is(err, queue.ErrAmbiguous), errors.Is(err, queue.ErrHeld), errors.Is(err, queue.ErrFinished):
		return &exitError{code: 1, err: errors.New(strings.TrimPrefix(err.Error(), "queue: "))}
	}
	return err
}

// listQuery is what queue list asks for: up to limit messages (0: all)
// after the ID after that keep accepts (nil: all).
type listQuery struct {
	after string
	limit int
	keep  func(queue.Message) bool
}

// listQueue prints the queue a page at a time, so that neither the
// server nor this command holds a large spool in memory at once.
func listQueue(ops admin.QueueOps, out io.Writer, q listQuery, asJSON bool) error {
	const page = 1000
	after, limit := q.after, q.limit
	n := 0
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if asJSON {
		fmt.Fprint(out, "[")
	} else {
		fmt.Fprintln(tw, "ID\tRECEIVED\tSIZE\tFROM\tRECIPIENTS\tSTATE\tNEXT ATTEMPT")
	}
	for {
		want := page
		if limit > 0 && q.keep == nil {
			want = min(page, limit-n)
		}
		msgs, next, err := ops.ListPage(after, want)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if q.keep != nil && !q.keep(m) {
				continue
			}
			if limit > 0 && n >= limit {
				break
			}
			if asJSON {
				data, err := json.MarshalIndent(m, "  ", "  ")
				if err != nil {
					return err
				}
				if n > 0 {
					fmt.Fprint(out, ",")
				}
				fmt.Fprintf(out, "\n  %s", data)
			} else {
				printQueueRow(tw, m)
			}
			n++
		}
		if next == "" || limit > 0 && n >= limit {
			break
		}
		after = next
	}
	if asJSON {
		fmt.Fprintln(out, "\n]")
		return nil
	}
	tw.Flush()
	fmt.Fprintf(out, "%d messages\n", n)
	return nil
}

func printQueueRow(tw io.Writer, m queue.Message) {
	from := m.Envelope.From
	if from == "" {
		from = "<>"
	}
	state, next := summarise(m)
	fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.ID, m.Received.Local().Format(time.DateTime),
		m.Size, from, recipientsCell(m.Recipients), state, next)
}

// recipientsCell is the RECIPIENTS column: the first two addresses and
// how many more there are.
func recipientsCell(rs []queue.Recipient) string {
	const shown = 2
	var addrs []string
	for i, r := range rs {
		if i == shown {
			addrs = append(addrs, fmt.Sprintf("+%d more", len(rs)-shown))
			break
		}
		addrs = append(addrs, r.Address)
	}
	return strings.Join(addrs, ",")
}

// summarise gives a one-word state of a message and its next attempt.
func summarise(m queue.Message) (string, string) {
	counts := map[queue.State]int{}
	var next time.Time
	for _, r := range m.Recipients {
		counts[r.State]++
		if !r.State.Final() && (next.IsZero() || r.NextAttempt.Before(next)) {
			next = r.NextAttempt
		}
	}
	var parts []string
	for _, s := range []queue.State{queue.StateQueued, queue.StateDeferred, queue.StateDelivered, queue.StateBounced, queue.StateDropped} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", s, counts[s]))
		}
	}
	state := strings.Join(parts, ",")
	if m.Held {
		state = "HELD " + state
	}
	nextS := "-"
	if !next.IsZero() && !m.Held {
		nextS = next.Local().Format(time.DateTime)
	}
	return state, nextS
}

func printMessage(out io.Writer, m *queue.Message) {
	from := m.Envelope.From
	if from == "" {
		from = "<>"
	}
	fmt.Fprintf(out, "ID:        %s\n", m.ID)
	fmt.Fprintf(out, "From:      %s\n", from)
	fmt.Fprintf(out, "Size:      %d bytes\n", m.Size)
	fmt.Fprintf(out, "Received:  %s from %s (helo %s)", m.Received.Format(time.RFC3339), m.Envelope.ClientAddr, m.Envelope.ClientHelo)
	if m.Envelope.TLS != "" {
		fmt.Fprintf(out, " over %s", m.Envelope.TLS)
	}
	if m.Envelope.AuthUser != "" {
		fmt.Fprintf(out, " as %s", m.Envelope.AuthUser)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "Expires:   %s\n", m.Expires.Format(time.RFC3339))
	if m.Held {
		fmt.Fprintln(out, "Held:      yes")
	}
	if m.Envelope.RequireTLS {
		fmt.Fprintln(out, "REQUIRETLS: yes")
	}
	fmt.Fprintln(out, "\nRecipients:")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ADDRESS\tSTATE\tMETHOD\tATTEMPTS\tSTATUS\tNEXT/DONE\tLAST RESULT")
	for _, r := range m.Recipients {
		when := r.NextAttempt
		if r.State.Final() {
			when = r.DoneAt
		}
		whenS := "-"
		if !when.IsZero() {
			whenS = when.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Address, r.State, r.Method(), r.Attempts, dash(r.Status), whenS, dash(r.LastError))
	}
	tw.Flush()
	for _, r := range m.Recipients {
		if len(r.Chain) > 0 {
			by := r.By
			if by == "" { // recorded before what chose the chain was kept
				by = "rules " + dash(strings.Join(r.Rules, ", "))
			}
			fmt.Fprintf(out, "  %s: policy chain [%s] by %s\n", r.Address, strings.Join(r.Chain, ", "), by)
		}
	}
	fmt.Fprintln(out, "\nHistory:")
	for _, e := range m.Events {
		fmt.Fprintf(out, "  %s  %-9s %s\n", e.Time.Format(time.RFC3339), e.Kind, e.Detail)
		if a := e.Attempt; a != nil {
			printAttemptTransport(out, a)
			if a.TLSLevel != "" && (a.Connected() || a.TLSRequiredBy != "") {
				req := "TLS level " + a.TLSLevel
				if a.TLSRequiredBy != "" {
					req += ", required by " + a.TLSRequiredBy
				}
				fmt.Fprintf(out, "      %s\n", req)
			}
			if a.MTASTS != "" {
				fmt.Fprintf(out, "      MTA-STS %s\n", a.MTASTS)
			}
			if a.DANE != "" {
				fmt.Fprintf(out, "      DANE: certificate matched TLSA %s\n", a.DANE)
			}
			if a.Protection != "" {
				fmt.Fprintf(out, "      content: %s\n", a.Protection)
			}
			fmt.Fprintf(out, "      recipients: %s\n", strings.Join(a.Recipients, ", "))
			if a.Reply != "" {
				fmt.Fprintf(out, "      reply: %s\n", a.Reply)
			}
		}
	}
}

// printAttemptTransport is the attempt's "to …" line: the host and the
// TLS facts of its session or, for an attempt that reached no server
// (held by policy, DNS, TLS refused before connecting), why none was
// made — never "plaintext", which is a fact about a connection.
func printAttemptTransport(out io.Writer, a *queue.Attempt) {
	if !a.Connected() {
		why := a.NoConnection
		if why == "" { // recorded before the reason was kept
			why = "reason not recorded"
		}
		what := "no connection made"
		if strings.HasPrefix(why, "no mail host took a session") {
			what = "no session opened" // a host may have answered and refused
		}
		fmt.Fprintf(out, "      to %s: %s (%s)\n", dash(a.Destination), what, why)
		return
	}
	tls := "plaintext"
	if a.TLSFallback != "" {
		tls = "plaintext after a failed TLS handshake (" + a.TLSFallback + "; opportunistic TLS allows it)"
	}
	if a.TLSVersion != "" {
		tls = a.TLSVersion + " " + a.Cipher
		if a.CertVerified {
			tls += ", certificate verified"
		} else {
			tls += ", certificate not verified"
			if a.CertError != "" {
				tls += " (" + a.CertError + ")"
			}
		}
	}
	fmt.Fprintf(out, "      to %s via %s [%s], %s\n", a.Destination, dash(a.MXHost), dash(a.IP), tls)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
