package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/config"
)

func fenceCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "fence", Short: "configure fence agents (power switches) for members", Args: noArgs}
	var d client.FenceDevice
	var opts []string
	add := &cobra.Command{
		Use:   "add NAME --agent PATH --member M [--member M...] [--option k=v...] [--level N] [--timeout D]",
		Short: "add or replace a fence device",
		Long: `Add or replace a fence device: an executable that reads key=value lines on
stdin (action=off|on|reboot|status, nodename=MEMBER, and the options), as
Pacemaker's fence agents do, and exits 0 once the member is off. The director
fences a lost member before (or instead of waiting for the lease to run out)
moving its services. Devices of a member are tried by level, 1 first.`,
		Args: exactArgs(1, "a device name"),
		RunE: func(c *cobra.Command, args []string) error {
			d.Name = args[0]
			if d.Agent == "" || len(d.Members) == 0 {
				return usagef("fence add needs --agent and at least one --member")
			}
			o, err := config.ParseAttributes(opts)
			if err != nil {
				return usageError{fmt.Errorf("--option: %v", err)}
			}
			d.Options = o
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.SetFenceDevice(ctx, d); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "fence device %s fences %s\n", d.Name, strings.Join(d.Members, ", "))
			return nil
		},
	}
	add.Flags().StringVar(&d.Agent, "agent", "", "absolute path of the fence agent")
	add.Flags().StringSliceVar(&d.Members, "member", nil, "a member this device can fence (repeatable)")
	add.Flags().StringArrayVar(&opts, "option", nil, "option KEY=VALUE passed on stdin (repeatable)")
	add.Flags().IntVar(&d.Level, "level", 1, "fencing level (1-9): lower levels are tried first")
	add.Flags().DurationVar(&d.Timeout, "timeout", 20*time.Second, "how long the agent may take")
	list := &cobra.Command{
		Use: "list [--json]", Short: "list the fence devices", Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			ds, err := cl.FenceDevices(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(ds)
			}
			if len(ds) == 0 {
				fmt.Fprintln(g.out, "no fence devices: lost members are waited for until their lease has run out (see `vigil fence add`)")
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "DEVICE\tLEVEL\tMEMBERS\tAGENT\tTIMEOUT")
			for _, x := range ds {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", x.Name, x.Level, strings.Join(x.Members, ","), x.Agent, x.Timeout)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&g.json, "json", false, "print JSON")
	remove := &cobra.Command{
		Use: "remove NAME", Short: "remove a fence device", Args: exactArgs(1, "a device name"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.RemoveFenceDevice(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "fence device %s removed\n", args[0])
			return nil
		},
	}
	confirm := &cobra.Command{
		Use:   "confirm M",
		Short: "record that M is off, checked by hand, when every fence device fails (its services then move)",
		Long: "Record that member M is powered off, after you have checked it yourself. The director then moves\n" +
			"its services at once. Confirming a member that still runs lets its services run twice.",
		Args: exactArgs(1, "a member name"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.ConfirmFenced(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s recorded as fenced (confirmed by hand); its services move now\n", args[0])
			return nil
		},
	}
	c.AddCommand(add, list, remove, confirm)
	return c
}
