package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/gateway/probe"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

func newDomainsCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "domains",
		Short: "TLS domain monitoring: what each destination has shown, live probes, resets",
		Long: `sealgate remembers, per destination domain, whether it has taken mail over
TLS and with a verified certificate; once it has, later deliveries require
it. These commands show that history, probe domains live (EHLO and STARTTLS,
no mail sent), and reset a domain that has really dropped TLS.`,
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "config file (default: embedded defaults)")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List destination domains with their TLS status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSpool(configPath, cmd.OutOrStdout(), func(ops admin.QueueOps, out io.Writer) error {
				ds, err := ops.Domains()
				if err != nil {
					return err
				}
				if listJSON {
					return printJSON(out, ds)
				}
				printDomains(out, ds)
				return nil
			})
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	reset := &cobra.Command{
		Use:   "reset DOMAIN",
		Short: "Forget a domain's TLS history (after it has really dropped TLS)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withSpool(configPath, cmd.OutOrStdout(), func(ops admin.QueueOps, out io.Writer) error {
				if err := ops.ResetDomain(args[0]); errors.Is(err, queue.ErrNotFound) {
					return fmt.Errorf("no TLS history for %s", args[0])
				} else if err != nil {
					return err
				}
				auditLocal(ops, cmd.ErrOrStderr(), "domain-reset", "", "TLS history of "+args[0]+" forgotten")
				fmt.Fprintf(out, "%s: TLS history reset; deliveries fall back to outbound.tls_policy\n", args[0])
				return nil
			})
		},
	}

	var checkJSON bool
	check := &cobra.Command{
		Use:   "check DOMAIN",
		Short: "Probe a domain now: MX hosts, STARTTLS, TLS version, cipher, certificate, TLSA",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			p, err := probe.New(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := p.Probe(ctx, args[0])
			verdict, err := judgeProbe(cfg, res)
			if err != nil {
				return err
			}
			if checkJSON {
				if err := printJSON(cmd.OutOrStdout(), checked{ProbeResult: res, Verdict: verdict}); err != nil {
					return err
				}
			} else {
				printProbe(cmd.OutOrStdout(), res)
				printVerdict(cmd.OutOrStdout(), verdict)
			}
			if res.TLSVersion == "" {
				return fmt.Errorf("%s: no TLS", args[0])
			}
			return nil
		},
	}
	check.Flags().BoolVar(&checkJSON, "json", false, "print JSON")

	var scanFile string
	var scanConcurrency int
	scan := &cobra.Command{
		Use:   "scan --file FILE",
		Short: "Probe many domains (one per line in FILE) with bounded concurrency",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if scanFile == "" {
				return usageErr(errors.New("--file is required"))
			}
			domains, err := readDomainList(scanFile)
			if err != nil {
				return usageErr(err)
			}
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			p, err := probe.New(cfg)
			if err != nil {
				return err
			}
			results := scanDomains(p, domains, max(scanConcurrency, 1), cmd.ErrOrStderr())
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DOMAIN\tMX\tSTARTTLS\tTLS\tVERIFIED\tTLSA\tERROR")
			noTLS := 0
			for _, r := range results {
				if r.TLSVersion == "" {
					noTLS++
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%v\t%d\t%s\n", r.Domain, dash(r.Host), r.STARTTLS, dash(r.TLSVersion), r.Verified, len(r.TLSA), dash(r.Error))
			}
			tw.Flush()
			fmt.Fprintf(out, "%d domains, %d without TLS\n", len(results), noTLS)
			return nil
		},
	}
	scan.Flags().StringVar(&scanFile, "file", "", "file with one domain per line (# comments allowed)")
	scan.Flags().IntVar(&scanConcurrency, "concurrency", 8, "probes at once")

	cmd.AddCommand(list, check, scan, reset)
	return cmd
}

func readDomainList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// scanDomains probes domains with bounded concurrency, keeping input
// order, and shows progress on stderr when it is a terminal.
func scanDomains(p *probe.Prober, domains []string, concurrency int, progress io.Writer) []probe.ProbeResult {
	results := make([]probe.ProbeResult, len(domains))
	tty := isTerminal(progress)
	var mu sync.Mutex
	done := 0
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, d := range domains {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			results[i] = p.Probe(ctx, d)
			mu.Lock()
			done++
			if tty {
				const width = 30
				filled := done * width / len(domains)
				fmt.Fprintf(progress, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, len(domains))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if tty {
		fmt.Fprintln(progress)
	}
	return results
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func printDomains(out io.Writer, ds []queue.DomainInfo) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tTLS\tVERIFIED\tVERSIONS\tMTA-STS\tDANE\tLAST TLS\tLAST CHECKED\tPROBE FAILING SINCE")
	for _, d := range ds {
		tlsStatus := "never"
		if d.TLSSeen {
			tlsStatus = "required"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%v\t%s\t%s\t%s\n", d.Domain, tlsStatus, d.Verified,
			dash(strings.Join(d.TLSVersions, ",")), dash(d.MTASTSMode), d.DANE,
			timeOrDash(d.LastTLS), timeOrDash(d.LastChecked), timeOrDash(d.ProbeFailingSince))
	}
	tw.Flush()
	fmt.Fprintf(out, "%d domains\n", len(ds))
}

func printProbe(out io.Writer, r probe.ProbeResult) {
	fmt.Fprintf(out, "Domain:    %s\n", r.Domain)
	fmt.Fprintf(out, "MX hosts:  %s\n", dash(strings.Join(r.MXHosts, ", ")))
	if r.Host != "" {
		fmt.Fprintf(out, "Probed:    %s [%s]\n", r.Host, r.IP)
		fmt.Fprintf(out, "STARTTLS:  %v\n", r.STARTTLS)
	}
	if r.TLSVersion != "" {
		fmt.Fprintf(out, "TLS:       %s %s\n", r.TLSVersion, r.Cipher)
		verdict := "verified"
		if !r.Verified {
			verdict = "NOT verified: " + r.CertError
		}
		fmt.Fprintf(out, "Cert:      %s\n", verdict)
		for i, c := range r.Chain {
			fmt.Fprintf(out, "  [%d] %s\n", i, c)
		}
	}
	if r.MTASTS != "" {
		fmt.Fprintf(out, "MTA-STS:   %s\n", r.MTASTS)
	} else if r.Host != "" {
		fmt.Fprintln(out, "MTA-STS:   none")
	}
	if len(r.TLSA) > 0 {
		fmt.Fprintf(out, "TLSA:      %s (DNSSEC-authenticated: %v)\n", strings.Join(r.TLSA, "; "), r.TLSASecure)
	} else if r.Host != "" {
		fmt.Fprintln(out, "TLSA:      none")
	}
	if r.Error != "" {
		fmt.Fprintf(out, "Problem:   %s\n", r.Error)
	}
}

// checked is domains check --json: the probe and the verdict.
type checked struct {
	probe.ProbeResult
	probe.Verdict
}

// judgeProbe says what delivery would do with the domain's mail under
// cfg's TLS policy, the domain's TLS history (when the spool can be
// read: the stopped server's file or the running one's admin API) and
// the MTA-STS policy the probe found.
func judgeProbe(cfg *config.Config, res probe.ProbeResult) (probe.Verdict, error) {
	transport, err := policy.NewTransportPolicy(cfg.Outbound.TLSPolicy)
	if err != nil {
		return probe.Verdict{}, err
	}
	var history *policy.TLSHistory
	historyNote := ""
	if ops, _, closeOps, err := admin.OpenQueueOps(cfg); err != nil {
		historyNote = "the domain's TLS history was not read (" + err.Error() + "): a history that requires TLS would change the verdict"
	} else {
		defer closeOps()
		ds, err := ops.Domains()
		if err != nil {
			historyNote = "the domain's TLS history was not read (" + err.Error() + ")"
		}
		for _, d := range ds {
			if d.Domain == res.Domain && d.TLSSeen {
				history = &policy.TLSHistory{TLSSeen: true, Verified: d.Verified, Since: d.FirstSeen.UTC().Format(time.DateOnly)}
			}
		}
	}
	var sts *policy.MTASTSPolicy
	if res.MTASTSMode != "" {
		sts = &policy.MTASTSPolicy{Mode: policy.MTASTSMode(res.MTASTSMode)}
	}
	v := probe.Judge(res, transport.Requirement(res.Domain, false, history, sts))
	if historyNote != "" {
		v.Notes = append(v.Notes, historyNote)
	}
	return v, nil
}

func printVerdict(out io.Writer, v probe.Verdict) {
	level := v.Level
	if v.RequiredBy != "" {
		level += " (required by " + v.RequiredBy + ")"
	}
	fmt.Fprintf(out, "TLS level: %s\n", level)
	fmt.Fprintf(out, "Delivery:  %s\n", v.Delivery)
	if v.Change != "" {
		fmt.Fprintf(out, "To change: %s\n", v.Change)
	}
	for _, n := range v.Notes {
		fmt.Fprintf(out, "Note:      %s\n", n)
	}
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}
