package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
)

func tokenCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "make, list and revoke API tokens (roles viewer, operator, admin)", Args: noArgs}
	var r client.TokenCreateRequest
	create := &cobra.Command{
		Use:   "create NAME --role viewer|operator|admin [--ttl T]",
		Short: "make an API token; it is printed once",
		Long: `Make an API token for a person or a program. Its role decides what it may do:

  viewer    read: status, members, services, events, metrics, locks, links
  operator  also: service online/offline/relocate/clear, member drain,
            maintenance, lock probes, alert tests, vigil doctor
  admin     everything: members, services, settings, fencing, alerts,
            tokens, exec, backups

The token is printed once; the cluster keeps only its hash. Use it with
--api HOST:PORT --token TOKEN (or VIGIL_API and VIGIL_TOKEN), or sign in to
the dashboard with it. Every call made with it is audited under its name.
Revoke it with vigil token revoke NAME: every member refuses it at once.`,
		Args: exactArgs(1, "a token name"),
		RunE: func(c *cobra.Command, args []string) error {
			r.Name = args[0]
			if r.Role == "" {
				return usagef("token create needs --role: one of %s", strings.Join(client.Roles, ", "))
			}
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			out, err := cl.CreateToken(ctx, r)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(out)
			}
			until := "no end"
			if !out.Expires.IsZero() {
				until = "until " + out.Expires.Local().Format(time.RFC3339)
			}
			fmt.Fprintf(g.errOut, "API token %s (id %s), role %s, %s; it is shown this once:\n", out.Name, out.ID, out.Role, until)
			fmt.Fprintln(g.out, out.Token)
			return nil
		},
	}
	create.Flags().StringVar(&r.Role, "role", "", "viewer, operator or admin")
	create.Flags().DurationVar(&r.TTL, "ttl", 0, "lifetime (at least 1m); 0 for no end")
	create.Flags().BoolVar(&g.json, "json", false, "print JSON")
	list := &cobra.Command{
		Use: "list [--json]", Short: "list the API tokens (never their secrets)", Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			ts, err := cl.Tokens(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(ts)
			}
			if len(ts) == 0 {
				fmt.Fprintln(g.out, "no API tokens (see `vigil token create --help`)")
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tROLE\tCREATED\tEXPIRES\tBY")
			for _, t := range ts {
				exp := "-"
				if !t.Expires.IsZero() {
					exp = t.Expires.Local().Format("2006-01-02 15:04")
					if t.Expired {
						exp += " (expired)"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.ID, t.Role, t.Created.Local().Format("2006-01-02 15:04"), exp, t.CreatedBy)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&g.json, "json", false, "print JSON")
	revoke := &cobra.Command{
		Use: "revoke NAME|ID", Short: "revoke an API token", Args: exactArgs(1, "a token name or id"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.RevokeToken(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "API token %s revoked\n", args[0])
			return nil
		},
	}
	c.AddCommand(create, list, revoke)
	return c
}
