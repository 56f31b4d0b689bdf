package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
)

func execCmd(g *globals) *cobra.Command {
	var (
		r     client.ExecRequest
		group bool
	)
	cmd := &cobra.Command{
		Use:   "exec [--members a,b | --all] [--timeout T] [--group] [--json] -- CMD [ARG...]",
		Short: "run a command on members through their agents, in parallel (cconsole for the cluster)",
		Long: `Run a command on each member through its agent, in parallel, and show each
member's output and exit code (Sun Cluster's cconsole/ctelnet, pdsh). The
command runs as the agent's user (root), from /, with a plain PATH and
VIGIL_MEMBER set; there is no shell unless you ask for one:

  vigil exec --all -- uptime
  vigil exec --members m1,m2 -- sh -c 'ip -br addr; df -h /srv'

Output lines are prefixed with the member's name, or grouped per member with
--group. Each member's run is killed at --timeout; at most 1 MiB of output is
kept per member. Every run is recorded in the event log: who, what, where and
how it ended. The exit code is 0 when the command exited 0 everywhere, 1
otherwise.`,
		Args: func(c *cobra.Command, args []string) error {
			if c.ArgsLenAtDash() != 0 || len(args) == 0 {
				return usagef("give the command after --, for example `vigil exec --all -- uptime`")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			r.Command = args
			if !r.All && len(r.Members) == 0 {
				return usagef("say where: --members a,b or --all")
			}
			if r.All && len(r.Members) > 0 {
				return usagef("give either --all or --members, not both")
			}
			// The agent answers once every member's run has ended.
			g.timeout = max(g.timeout, r.Timeout+10*time.Second)
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := g.ctx(c)
			defer cancel()
			out, err := cl.Exec(ctx, r)
			if err != nil {
				return err
			}
			if g.json {
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else {
				printExec(g.out, out, group)
			}
			failed := 0
			for _, x := range out {
				if x.RC != 0 {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("the command failed on %d of %d members", failed, len(out))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&r.Members, "members", nil, "members to run it on (comma-separated)")
	fl.BoolVar(&r.All, "all", false, "run it on every member")
	fl.DurationVar(&r.Timeout, "timeout", 30*time.Second, "kill the command on a member after this long (at most 10m)")
	fl.BoolVar(&group, "group", false, "print each member's output as a block instead of prefixing lines")
	fl.BoolVar(&g.json, "json", false, "print JSON")
	return cmd
}

// printExec prints each member's output, prefixed or grouped, with how it
// ended.
func printExec(w io.Writer, rs []client.ExecResult, group bool) {
	width := 0
	for _, x := range rs {
		width = max(width, len(x.Member))
	}
	for _, x := range rs {
		end := fmt.Sprintf("exit %d", x.RC)
		if x.Error != "" {
			end = x.Error
		}
		end += fmt.Sprintf(", %s", (time.Duration(x.DurationMS) * time.Millisecond).String())
		if x.Truncated {
			end += ", output cut at 1 MiB"
		}
		lines := strings.Split(strings.TrimRight(x.Output, "\n"), "\n")
		if x.Output == "" {
			lines = nil
		}
		if group {
			fmt.Fprintf(w, "=== %s (%s)\n", x.Member, end)
			for _, l := range lines {
				fmt.Fprintln(w, l)
			}
			continue
		}
		for _, l := range lines {
			fmt.Fprintf(w, "%-*s | %s\n", width, x.Member, l)
		}
		fmt.Fprintf(w, "%-*s : %s\n", width, x.Member, end)
	}
}
