package cli

import (
	"fmt"
	"strings"
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

func caCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "ca", Short: "the cluster's certificate authority", Args: noArgs}
	var stage bool
	rotate := &cobra.Command{
		Use:   "rotate [--stage]",
		Short: "replace the cluster CA on every member, without downtime",
		Long: `Replace the cluster's certificate authority on a running cluster, in three
phases that each wait for every member: every member trusts the new CA beside
the old; then each takes a certificate of the new CA, shown with the new CA
cross-signed by the old, so that clients that trust only the old CA (--ca
FILE, a dashboard's browser, a Prometheus scraper) still accept it, and the
new CA issues from then on; then the old CA is trusted no more. Connections
made before go on, so nothing fails over. Every member must be up; no member
joins until the rotation ends (join tokens made before it must be made
again). If a member goes away during it, it stops at its phase and running
this again carries it on.

With --stage it stops once every member has a certificate of the new CA,
both CAs trusted: give the clients the new CA's certificate (vigil ca show
--pem), then run vigil ca rotate again to finish. The new CA's key is stored
in the cluster database sealed with the gossip key.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			g.timeout = max(g.timeout, 2*time.Minute)
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			r, err := cl.RotateCA(ctx, stage)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(r)
			}
			if r.Staged != "" {
				fmt.Fprintf(g.out, "CA %s staged in %s: every member has a certificate of it, and CA %s is still trusted\n", short(r.Key), r.Took, short(r.Old))
			} else {
				fmt.Fprintf(g.out, "CA %s replaced by %s in %s\n", short(r.Old), short(r.Key), r.Took)
			}
			for _, p := range r.Phases {
				fmt.Fprintln(g.out, "  "+p)
			}
			if r.Staged != "" {
				fmt.Fprintln(g.out, "give clients that use --ca the new CA (vigil ca show --pem), then run vigil ca rotate again to finish")
			} else {
				fmt.Fprintln(g.out, "clients that use --ca need the new CA's certificate: vigil ca show --pem")
			}
			return nil
		},
	}
	rotate.Flags().BoolVar(&stage, "stage", false, "stop with both CAs trusted, every member on the new one")
	rotate.Flags().BoolVar(&g.json, "json", false, "print JSON")
	var pemOnly bool
	show := &cobra.Command{
		Use:   "show [--pem]",
		Short: "the CAs the member trusts, and a rotation under way",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			info, err := cl.CA(ctx)
			if err != nil {
				return err
			}
			switch {
			case g.json:
				return g.printJSON(info)
			case pemOnly:
				for _, ca := range info.CAs {
					fmt.Fprint(g.out, ca.PEM)
				}
				return nil
			}
			for _, ca := range info.CAs {
				fmt.Fprintf(g.out, "%-8s %s  %s  valid %s to %s\n", ca.Role, ca.Fingerprint, ca.Subject,
					ca.NotBefore.Local().Format("2006-01-02"), ca.NotAfter.Local().Format("2006-01-02"))
			}
			if r := info.Rotation; r != nil {
				fmt.Fprintf(g.out, "rotation to %s under way since %s: phase %s", short(r.CA), r.Started.Local().Format(time.RFC3339), r.Phase)
				if len(r.Waiting) > 0 {
					fmt.Fprintf(g.out, ", waiting for %s", strings.Join(r.Waiting, ", "))
				}
				fmt.Fprintln(g.out, "; run vigil ca rotate to carry it on")
			}
			return nil
		},
	}
	show.Flags().BoolVar(&pemOnly, "pem", false, "print the CA certificates (PEM), the issuing one first: what --ca FILE needs")
	show.Flags().BoolVar(&g.json, "json", false, "print JSON")
	c.AddCommand(rotate, show)
	return c
}

// short shortens a fingerprint for a line of text.
func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}
