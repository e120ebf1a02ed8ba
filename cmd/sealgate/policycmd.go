package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check rules and explain what the policy does with a message",
	}

	var configPath, from, subject, emlFile, authUser, clientIP string
	var to, headers []string
	var asJSON bool
	explain := &cobra.Command{
		Use:   "explain --from A --to B [--to C] [--subject S] [--header 'Name: value'] | --eml FILE",
		Short: "Show, per recipient, the rules that match, the tags found and the resulting chain",
		Long: `Run a message through the policy exactly as the live gateway would (the same
code), without sending anything: per recipient the matched rules in order,
the tags found, the chain of methods, and the Subject as it will leave;
plus the forwarding verdict, message-level actions (reject, hold,
header changes) and what could not be read (a Subject too long to
search, a body part it cannot decode) with what was assumed instead.

When the config's data dir holds a key store (read through the running
server's admin listener, or the spool file when the server is stopped),
explain also says, per recipient, what each method of the chain makes of
it — the OpenPGP key or S/MIME certificate it would encrypt to and
where that came from, or why the method would be skipped — and which
method the recipient will get. Nothing is looked up on the network:
where discovery is on and the store has no key, explain says discovery
would be tried at delivery.

Give the message by flags or as an .eml file; --from and --to are the
envelope (with --eml they default to its From and To).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			msg, err := explainMessage(emlFile, from, to, subject, headers)
			if err != nil {
				return usageErr(err)
			}
			if emlFile != "" && (from == "" || len(to) == 0) {
				ef, et := envelopeFromHeader(msg)
				if from == "" {
					from = ef
				}
				if len(to) == 0 {
					to = et
				}
			}
			if from == "" || len(to) == 0 {
				return usageErr(errors.New("--from and at least one --to are required"))
			}
			in := policy.ExplainInput{From: from, Recipients: to, AuthUser: authUser}
			if in.ClientIP, err = netip.ParseAddr(clientIP); err != nil {
				return usageErr(fmt.Errorf("--client-ip: %w", err))
			}
			res, _, err := policy.Explain(cfg, in, msg)
			if err != nil {
				return err
			}
			withKeys := explainWithKeys(cfg, res, time.Now())
			if asJSON {
				return printJSON(cmd.OutOrStdout(), withKeys)
			}
			printExplain(cmd.OutOrStdout(), withKeys)
			return nil
		},
	}
	f := explain.Flags()
	f.StringVarP(&configPath, "config", "c", "", "config file (default: embedded defaults)")
	f.StringVar(&from, "from", "", "envelope sender")
	f.StringArrayVar(&to, "to", nil, "envelope recipient (repeatable)")
	f.StringVar(&subject, "subject", "", "Subject header")
	f.StringArrayVar(&headers, "header", nil, "extra header 'Name: value' (repeatable)")
	f.StringVar(&emlFile, "eml", "", "take the message from this .eml file")
	f.StringVar(&authUser, "auth-user", "", "as if sent by this authenticated user")
	f.StringVar(&clientIP, "client-ip", "127.0.0.1", "as if sent from this address")
	f.BoolVar(&asJSON, "json", false, "print JSON")

	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate the policy rules of a config file (errors name file, line and rule)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(args[0])
			if err != nil {
				return err
			}
			engine, err := policy.Compile(cfg.Policy)
			if err != nil {
				return usageErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rules ok (hash %s)\n", args[0], len(cfg.Policy.Rules), engine.Hash())
			return nil
		},
	}
	cmd.AddCommand(explain, check)
	return cmd
}

// explainMessage builds the message to explain: an .eml file, or a
// minimal message from the flags.
func explainMessage(eml, from string, to []string, subject string, headers []string) ([]byte, error) {
	if eml != "" {
		return os.ReadFile(eml)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\n", from)
	if len(to) > 0 {
		fmt.Fprintf(&b, "To: %s\r\n", strings.Join(to, ", "))
	}
	if subject != "" {
		fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	}
	for _, h := range headers {
		if !strings.Contains(h, ":") {
			return nil, fmt.Errorf("--header %q: want 'Name: value'", h)
		}
		fmt.Fprintf(&b, "%s\r\n", h)
	}
	b.WriteString("\r\n")
	return []byte(b.String()), nil
}

// envelopeFromHeader takes the envelope from an .eml's From and To.
func envelopeFromHeader(msg []byte) (string, []string) {
	m, err := readMail(msg)
	if err != nil {
		return "", nil
	}
	var from string
	if a, err := m.Header.AddressList("From"); err == nil && len(a) > 0 {
		from = a[0].Address
	}
	var to []string
	for _, h := range []string{"To", "Cc"} {
		if as, err := m.Header.AddressList(h); err == nil {
			for _, a := range as {
				to = append(to, a.Address)
			}
		}
	}
	return from, to
}

func printExplain(out io.Writer, r explainResult) {
	fmt.Fprintf(out, "Subject:    %s\n", r.Subject)
	if r.SubjectChanged {
		fmt.Fprintf(out, "            (tags removed; leaves as %q)\n", r.SubjectRaw)
	}
	fmt.Fprintf(out, "Tags:       %s\n", dash(strings.Join(r.Tags, " ")))
	for _, why := range r.ScanErrors { // fail closed: say what was not read and what was assumed
		fmt.Fprintf(out, "Not read:   %s\n", why)
	}
	fmt.Fprintf(out, "Forwarding: %s\n", r.Forwarding)
	if r.Reject != "" {
		fmt.Fprintf(out, "REJECTED at SMTP time by rule %s: 550 5.7.1 %s\n", r.RejectRule, r.Reject)
	}
	if r.Hold != "" {
		fmt.Fprintf(out, "HELD for review by rule %s\n", r.Hold)
	}
	for k, v := range r.AddHeaders {
		fmt.Fprintf(out, "Adds header: %s: %s\n", k, v)
	}
	for _, h := range r.RemoveHeaders {
		fmt.Fprintf(out, "Removes header: %s\n", h)
	}
	fmt.Fprintf(out, "Keys:       %s\n", r.KeyStore)
	if !r.KeysRead {
		fmt.Fprintf(out, "            (methods not judged: the chains are shown as the policy decides them)\n")
	}
	for _, rd := range r.Recipients {
		fmt.Fprintf(out, "\n%s\n  chain: %s, by %s\n  rules: %s\n", rd.Recipient, rd.Chain, rd.By, dash(strings.Join(rd.Rules, ", ")))
		for _, why := range rd.Reasons {
			fmt.Fprintf(out, "  - %s\n", why)
		}
		if len(rd.Methods) == 0 {
			continue
		}
		fmt.Fprintf(out, "  will get: %s\n", rd.WillGet)
		for _, mo := range rd.Methods {
			fmt.Fprintf(out, "    %s\n", mo.Why)
		}
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(out)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(out, "WARNING: %s\n", w)
	}
}

func readMail(msg []byte) (*mail.Message, error) { return mail.ReadMessage(bytes.NewReader(msg)) }
