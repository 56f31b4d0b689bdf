package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
)

func doctorCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "doctor [--all] [--json]",
		Short: "check the cluster and every member, and say what to fix",
		Long: `Check the cluster from the member asked, over every member (TruCluster's
clu_ivp, OpenVMS's checklist for a member that fails to join): quorum and
director, the vote arithmetic (a two-member cluster without a witness),
each member's identity, certificate expiry, clock skew, version, timing
profile and cluster-wide attributes, every link both ways (loss, and round
trips against the timing profile), the cluster and API ports, each
service's resource agents on each member that may run it (OCF validate-all
included), fence and alert executables on every member, the modes of the
secret files, and fencing coverage (a warning when there is none, as
pcs status gives).

Problems are listed with what to do; --all lists the checks that passed too.
Exit code 0 when nothing failed (warnings allowed), 1 otherwise.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			r, err := cl.Doctor(ctx)
			if err != nil {
				return err
			}
			if g.json {
				if err := g.printJSON(r); err != nil {
					return err
				}
			} else {
				printDoctor(g.out, r, all)
			}
			if r.Failures > 0 {
				return fmt.Errorf("doctor: %d check(s) failed", r.Failures)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list the checks that passed too")
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
	return cmd
}

func printDoctor(w io.Writer, r *client.DoctorReport, all bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tCHECK\tMEMBER\tFINDING")
	for _, order := range []string{client.CheckFail, client.CheckWarn, client.CheckOK} {
		if order == client.CheckOK && !all {
			continue
		}
		for _, f := range r.Findings {
			if f.Result != order {
				continue
			}
			m := f.Member
			if m == "" {
				m = "-"
			}
			res := map[string]string{client.CheckFail: "FAIL", client.CheckWarn: "WARN", client.CheckOK: "ok"}[f.Result]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res, f.Check, m, f.Message)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d checks: %d ok, %d warnings, %d failures\n", r.OK+r.Warnings+r.Failures, r.OK, r.Warnings, r.Failures)
}
