// Command sealgate is the secure SMTP relay gateway. It only wires: it
// parses flags, loads the config, builds the objects of package gateway,
// runs them and maps errors to exit codes (0 ok, 1 runtime failure, 2 bad
// usage or invalid config).
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=…".

// exitError carries the exit code an error should end the process with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks err as bad usage or invalid config (exit 2).
func usageErr(err error) error { return &exitError{code: 2, err: err} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	reached := false
	root.PersistentPreRun = func(*cobra.Command, []string) { reached = true }
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "sealgate:", err)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case !reached:
		// Flag parsing, argument checks and unknown commands fail
		// before any command runs.
		return 2
	default:
		return 1
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "sealgate",
		Short: "Secure SMTP relay gateway: encryption policy, durable spool, verified delivery",
		Long: `sealgate is the outbound smart host for Microsoft 365 and Google Workspace
tenants. It accepts mail over SMTP, spools it durably and encrypted, and
delivers it to the recipients' mail servers with retries and bounces.

Run "sealgate serve" to start on the embedded defaults (SMTP on
127.0.0.1:2525, admin HTTP on 127.0.0.1:8025, data in ./sealgate-data).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newConfigCmd(), newQueueCmd(), newPolicyCmd(), newDomainsCmd(), newDKIMCmd(), newKeysCmd(), newEscrowCmd(), newAuditCmd(), newAPICmd(), newStoreCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the sealgate version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "sealgate", versionString())
			return nil
		},
	}
}

// versionString describes this build from the module's build info: the
// module version (a release tag, or "(devel)" for a source build), the
// VCS revision and time when the build recorded them, and the Go version.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown build)"
	}
	parts := []string{bi.Main.Version}
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	if rev != "" {
		parts = append(parts, "revision "+rev[:min(12, len(rev))]+modified)
	}
	if at != "" {
		parts = append(parts, at)
	}
	parts = append(parts, bi.GoVersion)
	return strings.Join(parts, ", ")
}

// readPassword reads the password: from a terminal without echo, asked
// twice; otherwise one line of standard input.
func readPassword(cmd *cobra.Command) (string, error) {
	if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
		first, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		fmt.Fprint(cmd.ErrOrStderr(), "Repeat: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		if string(first) != string(again) {
			return "", usageErr(errors.New("the two passwords differ"))
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 1024)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
