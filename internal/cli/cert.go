package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

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
