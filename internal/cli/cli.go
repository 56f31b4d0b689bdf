// Package cli owns vigil's command line: the cobra commands, how they reach an
// agent (Unix socket or HTTPS), how results are printed (tables or --json),
// and the one mapping from errors to exit codes. It must not touch cluster
// state except through the client package, apart from the set-up commands
// (cluster create, member join, member reset) that work on a data dir.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/agent"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/pki"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitFailed   = 1
	ExitUsage    = 2
	ExitNoQuorum = 3
)

// usageError marks a mistake in the command line.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// ExitCode is the one mapping from errors to exit codes.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var es *exitStatus
	if errors.As(err, &es) {
		return es.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	if errors.Is(err, client.ErrUnreachable) {
		return ExitNoQuorum
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		switch ce.Code {
		case client.CodeNoQuorum, client.CodeUnreachable:
			return ExitNoQuorum
		case client.CodeInvalid:
			return ExitUsage
		}
	}
	switch {
	case errors.Is(err, cdb.ErrNoQuorum), errors.Is(err, cdb.ErrUnreachable):
		return ExitNoQuorum
	case errors.Is(err, cdb.ErrInvalid):
		return ExitUsage
	}
	return ExitFailed
}

// globals are the flags every command shares.
type globals struct {
	api     string
	dataDir string
	token   string
	caFile  string
	json    bool
	timeout time.Duration
	out     io.Writer
	errOut  io.Writer
	in      io.Reader
}

// Main runs the CLI and returns the exit code.
func Main(ctx context.Context, args []string) int {
	return run(ctx, args, os.Stdin, os.Stdout, os.Stderr)
}

func run(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	g := &globals{out: out, errOut: errOut, in: in}
	root := newRoot(ctx, g)
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetIn(in)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	err := root.ExecuteContext(ctx)
	if err != nil && err.Error() != "" {
		fmt.Fprintf(errOut, "vigil: %v\n", err)
	}
	return ExitCode(err)
}

func newRoot(ctx context.Context, g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "vigil",
		Short:         "vigil keeps services available on a cluster of Linux machines",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.api, "api", os.Getenv("VIGIL_API"), "agent API address HOST:PORT (env VIGIL_API); default: the Unix socket in --data-dir")
	pf.StringVar(&g.dataDir, "data-dir", envOr("VIGIL_DATA_DIR", "/var/lib/vigil"), "the member's data dir (env VIGIL_DATA_DIR)")
	pf.StringVar(&g.token, "token", os.Getenv("VIGIL_TOKEN"), "API token (env VIGIL_TOKEN), when the data dir has no member certificate")
	pf.StringVar(&g.caFile, "ca", os.Getenv("VIGIL_CA"), "cluster CA certificate file for --api without a data dir (env VIGIL_CA)")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "how long to wait for the agent")
	root.AddCommand(
		clusterCmd(g), memberCmd(g), membersCmd(g), statusCmd(g), agentCmd(g), settingsCmd(g),
		cdbCmd(g), logLevelCmd(g), demoCmd(g), versionCmd(g),
		applyCmd(g, false), applyCmd(g, true), serviceCmd(g), maintenanceCmd(g), serveNameCmd(g), fenceCmd(g),
		lockCmd(g), locksCmd(g), eventsCmd(g), alertCmd(g), linksCmd(g), execCmd(g), doctorCmd(g), tokenCmd(g), certCmd(g), keyringCmd(g), caCmd(g),
		genCmd(g, func() *cobra.Command { return newRoot(ctx, g) }),
	)
	return root
}

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no argument %q; see `%s --help`", c.CommandPath(), args[0], c.CommandPath())
	}
	return nil
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s; see `%s --help`", c.CommandPath(), names, c.CommandPath())
		}
		return nil
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// client returns a client for the agent the flags name.
func (g *globals) client() (*client.Client, error) {
	if g.api == "" {
		sock := filepath.Join(g.dataDir, agent.SocketFile)
		return client.New(client.Options{Socket: sock, Timeout: g.timeout}), nil
	}
	o := client.Options{Address: g.api, Token: g.token, Timeout: g.timeout}
	if id, err := pki.Load(g.dataDir); err == nil {
		o.TLS = id.ClientConfig("")
		o.TLS.NextProtos = nil
		if g.token != "" {
			// A token given on purpose speaks with its own role: the
			// member certificate (an admin) is not shown.
			o.TLS.GetClientCertificate = nil
		}
	} else {
		if g.caFile == "" {
			return nil, usagef("--api %s needs credentials: a --data-dir with a member certificate, or --token with --ca CA-FILE", g.api)
		}
		b, err := os.ReadFile(g.caFile)
		if err != nil {
			return nil, err
		}
		// The file may hold more than one CA: both, during a CA rotation
		// (vigil ca show --pem).
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it; give the cluster's CA certificate (vigil ca show --pem, or DATA/ca.crt of a member)", g.caFile)
		}
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "localhost"}
		if o.Token == "" {
			if t, err := agent.ReadAdminToken(g.dataDir); err == nil {
				o.Token = t
			}
		}
	}
	return client.New(o), nil
}

func (g *globals) ctx(c *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context(), g.timeout)
}

// open returns a client for the agent the flags name and a context bounded
// by --timeout; cancel releases both.
func (g *globals) open(c *cobra.Command) (*client.Client, context.Context, context.CancelFunc, error) {
	cl, err := g.client()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := g.ctx(c)
	return cl, ctx, func() { cancel(); cl.Close() }, nil
}

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (g *globals) warnStale(stale bool, reason string) {
	if stale {
		if reason == "" {
			reason = "no quorum or no director: this is the local copy of the cluster database and may be stale"
		}
		fmt.Fprintf(g.errOut, "warning: %s\n", reason)
	}
}

func versionCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "version", Short: "print vigil's version", Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			fmt.Fprintln(g.out, "vigil", agent.Version)
			return nil
		}}
}
