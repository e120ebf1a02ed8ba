package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/pgstore"
	"github.com/sealgate/sealgate/queue"
)

func newStoreCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "store",
		Short: "The store a fleet of nodes shares (store.postgres)",
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "config file (default: embedded defaults)")
	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Copy this node's TLS history, API keys, correspondents' keys and escrow store into the shared store",
		Long: `Copies what this node kept in its own spool and a fleet shares — the TLS
history of destinations, the REST API's keys, the correspondents' public
keys, the TLS report aggregates not sent yet (moved: removed here once
merged) — into the PostgreSQL store of store.postgres.dsn (its schema is
created or brought up to date first). Run it on a stopped node, before
starting it with the shared store configured; run it on each node that
joins a fleet.

Every record is merged, never overwritten: a domain keeps the strongest
protection any node has seen, an API key revoked anywhere stays revoked,
and the correspondents' keys and escrowed messages are copied once: a
later run leaves them as the fleet has them (keys removed, messages
revoked since stay so).
So the command can be run again, or after an interruption, at no risk.
The escrow store is copied too, sealed as it is: every node of the fleet
must then have this node's escrow key file (a fleet has one escrow key;
a node whose key differs from the fleet's is refused). The node's audit
chain is shipped to the fleet's trail (it stays in the spool as well,
where the node goes on writing it). The node's mail stays in its spool.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			if !cfg.Shared() {
				return errors.New("store.postgres.dsn is not set in the config: there is no shared store to migrate to")
			}
			local, err := queue.Open(queue.Options{Path: cfg.SpoolDBFile(), KeyFile: cfg.SpoolKeyFile(), LockTimeout: 300 * time.Millisecond})
			if errors.Is(err, queue.ErrLocked) {
				return errors.New("the spool is in use by a running server: stop the node, migrate, then start it with store.postgres set")
			}
			if err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			defer local.Close()
			shared, err := pgstore.Open(context.Background(), pgstore.Options{DSN: cfg.Store.Postgres.DSN, KeyFile: cfg.FleetKeyFile()})
			if err != nil {
				return fmt.Errorf("store.postgres: %w", err)
			}
			defer shared.Close()
			out := cmd.OutOrStdout()

			domains, err := local.Domains()
			if err != nil {
				return fmt.Errorf("reading the TLS history: %w", err)
			}
			for _, d := range domains {
				if err := shared.MergeDomain(d); err != nil {
					return fmt.Errorf("TLS history of %s: %w", d.Domain, err)
				}
			}
			fmt.Fprintf(out, "TLS history: %d domains merged\n", len(domains))

			keys, err := local.APIKeys()
			if err != nil {
				return fmt.Errorf("reading the API keys: %w", err)
			}
			added := 0
			for _, k := range keys {
				ok, err := shared.MergeAPIKey(k)
				if err != nil {
					return fmt.Errorf("API key %s: %w", k.ID, err)
				}
				if ok {
					added++
				}
			}
			fmt.Fprintf(out, "API keys: %d copied, %d already there\n", added, len(keys)-added)

			joined, err := local.JoinedFleet()
			if err != nil {
				return err
			}
			records, copied := 0, 0
			if !joined.IsZero() {
				// Copied once already: the fleet's keys and escrowed
				// messages have moved on since, and this node's frozen copy
				// must not bring back what was removed or revoked.
				fmt.Fprintf(out, "correspondents' keys and escrow store: copied on %s already, left as the fleet has them\n", joined.Format(time.RFC3339))
			} else {
				err = local.ForEachKeyRecord("", func(id string, data []byte) error {
					records++
					added, err := shared.MergeKeyRecord(id, data)
					if added {
						copied++
					}
					return err
				})
				if err != nil {
					return fmt.Errorf("correspondents' keys: %w", err)
				}
				fmt.Fprintf(out, "correspondents' keys: %d records copied, %d already there\n", copied, records-copied)
			}

			// Aggregates move: merged into the fleet's, then removed here,
			// so a second run does not count them twice.
			aggregates, err := local.TLSRPTBefore("9999-12-31")
			if err != nil {
				return fmt.Errorf("reading the TLS report aggregates: %w", err)
			}
			for _, r := range aggregates {
				if err := shared.MergeTLSRPT(r); err != nil {
					return fmt.Errorf("TLS report aggregate %s %s: %w", r.Day, r.Domain, err)
				}
				if err := local.DeleteTLSRPT(r); err != nil {
					return fmt.Errorf("TLS report aggregate %s %s: %w", r.Day, r.Domain, err)
				}
			}
			fmt.Fprintf(out, "TLS report aggregates: %d moved\n", len(aggregates))

			if joined.IsZero() {
				escrowed, err := local.CopyEscrow(shared, cfg.EscrowKeyFile())
				if err != nil {
					return fmt.Errorf("escrow store: %w", err)
				}
				fmt.Fprintf(out, "escrow store: %d messages copied (the fleet's nodes need this node's escrow key file)\n", escrowed)
				if err := local.MarkJoinedFleet(time.Now()); err != nil {
					return err
				}
			}

			// The node's audit chain joins the fleet's trail (the node
			// keeps writing it in its spool and ships what it adds).
			if key, err := audit.LoadKeyIfExists(cfg.AuditSigningKeyFile()); err != nil {
				return err
			} else if key != nil {
				n, err := audit.New(local, key, nil).Ship(shared, cfg.ServerHostname())
				if err != nil {
					return fmt.Errorf("audit trail: %w", err)
				}
				fmt.Fprintf(out, "audit trail: %d entries shipped to the fleet's trail, as node %s\n", n, cfg.ServerHostname())
			}
			fmt.Fprintln(out, "mail stays in this node's spool")
			return nil
		},
	}
	cmd.AddCommand(migrate)
	return cmd
}
