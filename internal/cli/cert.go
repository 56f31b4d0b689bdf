package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func keyringCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "keyring", Short: "the cluster key that seals gossip", Args: noArgs}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "replace the gossip key on every member, without downtime",
		Long: `Replace the cluster key that seals gossip (memberlist), on a running
cluster, in three phases: every member installs the new key (gossip opens
with either), then seals with it, then removes the old one. Each phase waits
for every member, so gossip works throughout and nothing fails over. Every
member must be up. If one goes away during the rotation, it stops at its
phase (gossip still works) and running this again carries it on. The new
key is stored in the cluster database sealed with the old one.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			g.timeout = max(g.timeout, 2*time.Minute)
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			r, err := cl.RotateKeys(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(r)
			}
			fmt.Fprintf(g.out, "gossip key %s replaced by %s in %s\n", r.Old, r.Key, r.Took)
			for _, p := range r.Phases {
				fmt.Fprintln(g.out, "  "+p)
			}
			return nil
		},
	}
	rotate.Flags().BoolVar(&g.json, "json", false, "print JSON")
	c.AddCommand(rotate)
	return c
}

func certCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "cert", Short: "the member certificates", Args: noArgs}
	renew := &cobra.Command{
		Use:   "renew",
		Short: "renew the certificate of the member asked, now",
		Long: `Renew the certificate of the member asked (the local one, or --api's), now.
Members renew their own certificate 30 days before it expires; this does it
at once. The new serial is recorded in the cluster database first, so every
member accepts the new certificate before it is used; the old one is still
accepted until it expires (connections made before the renewal go on).`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			ci, err := cl.RenewCert(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(ci)
			}
			fmt.Fprintf(g.out, "%s's certificate renewed: serial %s (was %s), valid until %s\n", ci.Member, ci.Serial, ci.Previous, ci.NotAfter.Local().Format(time.RFC3339))
			return nil
		},
	}
	renew.Flags().BoolVar(&g.json, "json", false, "print JSON")
	c.AddCommand(renew)
	return c
}
