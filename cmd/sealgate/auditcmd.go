package main

import (
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/pgstore"
	"github.com/sealgate/sealgate/queue"
)

func newAuditCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Search, verify and export the audit trail",
		Long: `The audit trail: every message's story (received with the client and the
policy's decision, each delivery attempt with its TLS facts and the
destination's reply, skips, holds, its end per recipient) and every admin
action with who did it, hash-chained and checkpointed with an Ed25519
signature. Through the running server's admin listener, or the spool file
of a stopped one.`,
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "config file (default: embedded defaults)")
	withAudit := func(fn func(ops admin.AuditOps) error) error {
		return withSpoolConfig(configPath, func(cfg *config.Config, q admin.QueueOps) error {
			ops, err := admin.AuditOpsFor(q, cfg)
			if err != nil {
				return err
			}
			return fn(ops)
		})
	}

	var verifyJSON, verifyLocal bool
	var verifyKey string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk the chain and the signed checkpoints; name the first entry edited, deleted or moved (exit 1); in a fleet, every node's chain too",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSpoolConfig(configPath, func(cfg *config.Config, q admin.QueueOps) error {
				ops, err := admin.AuditOpsFor(q, cfg)
				if err != nil {
					return err
				}
				rep, err := ops.AuditVerify()
				if err != nil {
					return err
				}
				if verifyKey != "" {
					want, err := parseAuditPublicKey(verifyKey)
					if err != nil {
						return &exitError{code: 2, err: fmt.Errorf("--public-key: %w", err)}
					}
					if rep.Key != want {
						rep.Problems = append([]string{fmt.Sprintf("the checkpoints verify with key %s, not with the key you hold (%s): the signing key was replaced, and whoever replaced it could sign anything", rep.Key, want)}, rep.Problems...)
						rep.Problem = rep.Problems[0]
					}
				}
				var fleetRep *audit.FleetReport
				if cfg.Shared() && !verifyLocal {
					// This node's own record of what it shipped and signed
					// is what the database cannot rewrite.
					anchor, err := ops.AuditAnchor()
					if err != nil {
						return err
					}
					fr, err := withFleet(cfg, func(s *pgstore.Store) (audit.FleetReport, error) { return audit.VerifyFleet(s, anchor) })
					if err != nil {
						return err
					}
					fleetRep = &fr
				}
				out := cmd.OutOrStdout()
				switch {
				case verifyJSON && fleetRep != nil:
					if err := printJSON(out, map[string]any{"node": rep, "fleet": fleetRep}); err != nil {
						return err
					}
				case verifyJSON:
					if err := printJSON(out, rep); err != nil {
						return err
					}
				case fleetRep != nil:
					fmt.Fprint(out, "this node: ")
					printReport(out, rep)
					printFleetReport(out, *fleetRep)
				default:
					printReport(out, rep)
				}
				if !rep.OK() {
					return &exitError{code: 1, err: fmt.Errorf("audit trail not intact: %s", rep.Problem)}
				}
				if fleetRep != nil && !fleetRep.OK() {
					return &exitError{code: 1, err: errors.New("the fleet's audit trail is not intact")}
				}
				return nil
			})
		},
	}
	verify.Flags().BoolVar(&verifyLocal, "local", false, "in a fleet: this node's chain only")
	verify.Flags().StringVar(&verifyKey, "public-key", "", "the audit public key kept elsewhere (`sealgate audit key` output, its hex, or a file holding it): the checkpoints must verify with it")
	verify.Flags().BoolVar(&verifyJSON, "json", false, "print JSON")

	var f searchFlags
	search := &cobra.Command{
		Use:   "search [--message-id ID] [--queue-id ID] [--sender A] [--recipient A] [--from T] [--to T] [--type T]",
		Short: "The records of the messages that match: how each left, per recipient (--json, --csv)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := f.filter()
			if err != nil {
				return err
			}
			return withSpoolConfig(configPath, func(cfg *config.Config, q admin.QueueOps) error {
				var found []audit.Found
				if cfg.Shared() && !f.local {
					// The fleet's trail: every node's records (this
					// node's up to its last shipping, seconds ago).
					found, err = withFleet(cfg, func(s *pgstore.Store) ([]audit.Found, error) { return audit.SearchFleet(s, filter, f.limit) })
				} else {
					var ops admin.AuditOps
					if ops, err = admin.AuditOpsFor(q, cfg); err == nil {
						found, err = ops.AuditSearch(filter, f.limit)
					}
				}
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				switch {
				case f.json:
					if found == nil {
						found = []audit.Found{}
					}
					return printJSON(out, found)
				case f.csv:
					return printAuditCSV(out, found)
				}
				printAudit(out, found)
				return nil
			})
		},
	}
	f.add(search)

	var exportFrom, exportTo string
	export := &cobra.Command{
		Use:   "export [--from T] [--to T]",
		Short: "JSON lines: the entries with their hashes, then the signed checkpoints that cover them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseWhen("--from", exportFrom)
			if err != nil {
				return err
			}
			to, err := parseWhen("--to", exportTo)
			if err != nil {
				return err
			}
			return withAudit(func(ops admin.AuditOps) error { return ops.AuditExport(cmd.OutOrStdout(), from, to) })
		},
	}
	export.Flags().StringVar(&exportFrom, "from", "", "first time (RFC 3339 or YYYY-MM-DD)")
	export.Flags().StringVar(&exportTo, "to", "", "end time, exclusive (RFC 3339 or YYYY-MM-DD)")

	key := &cobra.Command{
		Use:   "key",
		Short: "Print the public key the checkpoints verify with (keep a copy elsewhere)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAudit(func(ops admin.AuditOps) error {
				k, err := ops.AuditPublicKey()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ed25519 %s\n", hex.EncodeToString(k))
				return nil
			})
		},
	}
	cmd.AddCommand(verify, search, export, key)
	return cmd
}

type searchFlags struct {
	messageID, queueID, sender, recipient, from, to, typ string
	limit                                                int
	json, csv, local                                     bool
}

func (f *searchFlags) add(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.messageID, "message-id", "", "Message-ID header (with or without <>)")
	fl.StringVar(&f.queueID, "queue-id", "", "queue ID or a prefix of it")
	fl.StringVar(&f.sender, "sender", "", "envelope sender")
	fl.StringVar(&f.recipient, "recipient", "", "recipient address")
	fl.StringVar(&f.from, "from", "", "records at or after this time (RFC 3339 or YYYY-MM-DD)")
	fl.StringVar(&f.to, "to", "", "records before this time (RFC 3339 or YYYY-MM-DD)")
	fl.StringVar(&f.typ, "type", "", "record type (received, attempt, finished, admin…)")
	fl.IntVar(&f.limit, "limit", 0, "at most this many records (0: all)")
	fl.BoolVar(&f.json, "json", false, "print JSON")
	fl.BoolVar(&f.csv, "csv", false, "print CSV (one row per record)")
	fl.BoolVar(&f.local, "local", false, "in a fleet: this node's records only")
}

func (f *searchFlags) filter() (audit.Filter, error) {
	from, err := parseWhen("--from", f.from)
	if err != nil {
		return audit.Filter{}, err
	}
	to, err := parseWhen("--to", f.to)
	if err != nil {
		return audit.Filter{}, err
	}
	if f.json && f.csv {
		return audit.Filter{}, usageErr(fmt.Errorf("--json and --csv: give one"))
	}
	return audit.Filter{MessageID: f.messageID, QueueID: f.queueID, Sender: f.sender, Recipient: f.recipient, From: from, To: to, Type: f.typ}, nil
}

// parseWhen reads a time as RFC 3339 or a day (UTC midnight).
func parseWhen(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, usageErr(fmt.Errorf("%s %q: want RFC 3339 (2026-03-03T09:00:00Z) or a day (2026-03-03)", flag, v))
}

// withFleet runs fn on the fleet's shared store.
func withFleet[T any](cfg *config.Config, fn func(s *pgstore.Store) (T, error)) (T, error) {
	var zero T
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: cfg.Store.Postgres.DSN})
	if err != nil {
		return zero, fmt.Errorf("store.postgres: %w", err)
	}
	defer s.Close()
	return fn(s)
}

// printFleetReport prints each node's chain in the fleet's trail and the
// fleet checkpoints.
func printFleetReport(out io.Writer, rep audit.FleetReport) {
	fmt.Fprintf(out, "fleet: %d nodes, %d fleet checkpoints\n", len(rep.Nodes), rep.FleetCheckpoints)
	for _, n := range rep.Nodes {
		fmt.Fprintf(out, "  %s (node %.12s…): ", n.Hostname, n.Node)
		printReport(out, n.Report)
	}
	if len(rep.Problems) == 0 {
		fmt.Fprintln(out, "  fleet checkpoints: intact")
		return
	}
	fmt.Fprintln(out, "  fleet checkpoints: NOT INTACT")
	for _, p := range rep.Problems {
		fmt.Fprintf(out, "    %s\n", p)
	}
}

func printReport(out io.Writer, rep audit.Report) {
	if rep.OK() {
		fmt.Fprintf(out, "intact: %d entries (%d to %d), %d signed checkpoints", rep.Entries, rep.First, rep.Last, rep.Checkpoints)
	} else {
		fmt.Fprintf(out, "NOT INTACT: %d entries (%d to %d), %d checkpoints\n", rep.Entries, rep.First, rep.Last, rep.Checkpoints)
		for _, p := range rep.Problems {
			fmt.Fprintf(out, "  %s\n", p)
		}
		return
	}
	if cp := rep.LastCheckpoint; cp != nil {
		fmt.Fprintf(out, "; the last, at entry %d, signed %s", cp.Seq, cp.Time.Format(time.RFC3339))
		if cp.Seq < rep.Last {
			fmt.Fprintf(out, " (entries after it are bound by the chain until the next)")
		}
	}
	fmt.Fprintln(out)
}

// printAudit prints each record as a line and its facts below it.
func printAudit(out io.Writer, found []audit.Found) {
	for _, r := range found {
		fmt.Fprintf(out, "%s  #%d  %-9s %s", r.Time.Format(time.RFC3339), r.Seq, r.Type, dash(r.QueueID))
		if r.Node != "" {
			fmt.Fprintf(out, "  on %s", r.Node)
		}
		if r.MessageID != "" {
			fmt.Fprintf(out, "  %s", r.MessageID)
		}
		fmt.Fprintln(out)
		switch {
		case r.Client != nil:
			fmt.Fprintf(out, "    from %s via %s (helo %s)", r.From, dash(r.Client.Addr), dash(r.Client.Helo))
			if r.Client.TLS != "" {
				fmt.Fprintf(out, " over %s", r.Client.TLS)
			}
			if r.Client.AuthUser != "" {
				fmt.Fprintf(out, " as %s", r.Client.AuthUser)
			}
			fmt.Fprintf(out, ", %d bytes\n", r.Size)
			for _, d := range r.Decisions {
				fmt.Fprintf(out, "    %s: chain [%s] by %s\n", d.Recipient, strings.Join(d.Chain, ", "), dash(d.By))
			}
		case r.Attempt != nil:
			printAttemptTransport(out, r.Attempt)
			if r.Attempt.Protection != "" {
				fmt.Fprintf(out, "      content: %s\n", r.Attempt.Protection)
			}
			fmt.Fprintf(out, "      recipients: %s\n", strings.Join(r.Attempt.Recipients, ", "))
			if r.Attempt.Reply != "" {
				fmt.Fprintf(out, "      reply: %s\n", r.Attempt.Reply)
			}
		case len(r.Outcomes) > 0:
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			for _, o := range r.Outcomes {
				fmt.Fprintf(tw, "    %s\t%s\tby %s\t%s\t%s\n", o.Recipient, o.State, o.Method, dash(o.Status), dash(o.Result))
			}
			tw.Flush()
		case r.Actor != "":
			fmt.Fprintf(out, "    by %s: %s\n", r.Actor, dash(r.Detail))
		case r.Detail != "":
			fmt.Fprintf(out, "    %s\n", r.Detail)
		}
	}
	fmt.Fprintf(out, "%d records\n", len(found))
}

func printAuditCSV(out io.Writer, found []audit.Found) error {
	w := csv.NewWriter(out)
	w.Write([]string{"seq", "time", "type", "queue_id", "message_id", "from", "recipients", "actor", "tls", "cert_verified", "mx", "reply", "detail"})
	for _, r := range found {
		var tls, verified, mx, reply string
		if a := r.Attempt; a != nil {
			tls, verified, mx, reply = strings.TrimSpace(a.TLSVersion+" "+a.Cipher), fmt.Sprint(a.CertVerified), a.MXHost, a.Reply
		}
		w.Write([]string{fmt.Sprint(r.Seq), r.Time.Format(time.RFC3339Nano), r.Type, r.QueueID, r.MessageID, r.From,
			strings.Join(r.Recipients, " "), r.Actor, tls, verified, mx, reply, r.Detail})
	}
	w.Flush()
	return w.Error()
}

// auditLocal records an admin action done on a stopped server's spool
// file, with who did it (the running server's admin API records its
// own). A failure to record is reported, the action stands.
func auditLocal(ops admin.QueueOps, errOut io.Writer, action, queueID, detail string) {
	s, ok := ops.(*queue.Store)
	if !ok {
		return
	}
	if err := s.Audit(audit.Admin(time.Now(), action, admin.LocalActor(), queueID, detail)); err != nil {
		fmt.Fprintf(errOut, "sealgate: the audit record of this action failed: %v\n", err)
	}
}

// parseAuditPublicKey reads an Ed25519 public key as `sealgate audit
// key` prints it ("ed25519 HEX"), as bare hex, or from a file holding
// either; it returns the hex.
func parseAuditPublicKey(v string) (string, error) {
	text := strings.TrimSpace(v)
	if data, err := os.ReadFile(v); err == nil {
		text = strings.TrimSpace(string(data))
	}
	text = strings.TrimSpace(strings.TrimPrefix(text, "ed25519"))
	key, err := hex.DecodeString(text)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return "", fmt.Errorf("%q is not an Ed25519 public key (64 hex digits, as `sealgate audit key` prints it)", v)
	}
	return hex.EncodeToString(key), nil
}
