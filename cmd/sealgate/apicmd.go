package main

import (
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/queue"
)

func newAPICmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Credentials of the REST API",
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "config file (default: embedded defaults)")
	key := &cobra.Command{Use: "key", Short: "API keys: create, list, revoke"}
	withKeys := func(fn func(ops admin.APIKeyOps, q admin.QueueOps) error) error {
		return withSpoolConfig(configPath, func(_ *config.Config, q admin.QueueOps) error {
			ops, err := admin.APIKeyOpsFor(q)
			if err != nil {
				return err
			}
			return fn(ops, q)
		})
	}

	var nk admin.NewAPIKey
	create := &cobra.Command{
		Use:   "create --name N --scope read|send|admin [--domains D,...] [--rate-per-minute R] [--max-message-bytes B]",
		Short: "Create a key and print its credential id:secret once (only a hash is kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withKeys(func(ops admin.APIKeyOps, q admin.QueueOps) error {
				info, cred, err := ops.CreateAPIKey(nk)
				if err != nil {
					return usageErr(err)
				}
				auditLocal(q, cmd.ErrOrStderr(), "apikey-create", "", info.Describe())
				fmt.Fprintln(cmd.OutOrStdout(), cred)
				fmt.Fprintf(cmd.ErrOrStderr(), "%s created; the line above is shown only now: "+
					"send it as \"X-API-Key: id:secret\", \"Authorization: Bearer id:secret\" or HTTP Basic\n", info.Describe())
				return nil
			})
		},
	}
	create.Flags().StringVar(&nk.Name, "name", "", "what uses the key (an EHR, a script)")
	create.Flags().StringVar(&nk.Scope, "scope", "", "read, send or admin")
	create.Flags().StringSliceVar(&nk.Domains, "domains", nil, "sender domains a send key may use (comma-separated; subdomains too)")
	create.Flags().IntVar(&nk.RatePerMinute, "rate-per-minute", 0, "messages a minute this key may send (default: api.messages_per_minute)")
	create.Flags().Int64Var(&nk.MaxMessageBytes, "max-message-bytes", 0, "bytes a message this key may send, at most inbound.max_message_bytes (default: that)")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the keys (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withKeys(func(ops admin.APIKeyOps, _ admin.QueueOps) error {
				keys, err := ops.ListAPIKeys()
				if err != nil {
					return err
				}
				if listJSON {
					if keys == nil {
						keys = []admin.APIKeyInfo{}
					}
					return printJSON(cmd.OutOrStdout(), keys)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				// A limit the key does not set is the node's: "default".
				fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tRATE/MIN\tMAX BYTES\tCREATED\tREVOKED")
				for _, k := range keys {
					revoked := "-"
					if !k.Revoked.IsZero() {
						revoked = k.Revoked.Format(time.RFC3339)
					}
					rate, size := "default", "default"
					if k.RatePerMinute > 0 {
						rate = strconv.Itoa(k.RatePerMinute)
					}
					if k.MaxMessageBytes > 0 {
						size = strconv.FormatInt(k.MaxMessageBytes, 10)
					}
					if k.Scope == admin.ScopeRead {
						rate, size = "-", "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Scope, rate, size, k.Created.Format(time.RFC3339), revoked)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "End a key at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKeys(func(ops admin.APIKeyOps, q admin.QueueOps) error {
				if err := ops.RevokeAPIKey(args[0]); errors.Is(err, queue.ErrNotFound) {
					return &exitError{code: 1, err: fmt.Errorf("no such API key %s", args[0])}
				} else if err != nil {
					return err
				}
				auditLocal(q, cmd.ErrOrStderr(), "apikey-revoke", "", "API key "+args[0]+" revoked")
				fmt.Fprintf(cmd.OutOrStdout(), "%s revoked\n", args[0])
				return nil
			})
		},
	}
	key.AddCommand(create, list, revoke)
	cmd.AddCommand(key)
	return cmd
}
