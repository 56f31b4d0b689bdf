package cli

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
)

func applyCmd(g *globals, dry bool) *cobra.Command {
	var file string
	use, short := "apply -f FILE", "create or update services from a YAML file (idempotent)"
	if dry {
		use, short = "diff -f FILE", "show what `vigil apply -f FILE` would change"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if file == "" {
				return usagef("give the service file with -f FILE")
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			res, err := cl.Apply(ctx, client.ApplyRequest{File: file, YAML: string(data), DryRun: dry})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			for _, ch := range res.Changes {
				verb := ch.Action
				if dry && ch.Action != "unchanged" {
					verb = "would be " + ch.Action
				}
				fmt.Fprintf(g.out, "service %s %s\n", ch.Service, verb)
				if dry || ch.Action == "updated" {
					for _, l := range ch.Diff {
						fmt.Fprintf(g.out, "  %s\n", l)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "YAML file of service definitions")
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
	return cmd
}

func serviceCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "service", Short: "list, show and control services", Args: noArgs}
	list := &cobra.Command{
		Use: "list [--json]", Short: "list the services with their state and owner", Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			ss, err := cl.Services(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(ss)
			}
			printServices(g.out, ss)
			return nil
		},
	}
	list.Flags().BoolVar(&g.json, "json", false, "print JSON")
	show := func(use, short string, whyOnly bool) *cobra.Command {
		cmd := &cobra.Command{
			Use: use, Short: short, Args: exactArgs(1, "a service name"),
			RunE: func(c *cobra.Command, args []string) error {
				cl, ctx, cancel, err := g.open(c)
				if err != nil {
					return err
				}
				defer cancel()
				d, err := cl.Service(ctx, args[0])
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(d)
				}
				if !whyOnly {
					printServices(g.out, []client.ServiceInfo{d.ServiceInfo})
					for _, f := range d.Fails {
						fmt.Fprintf(g.out, "  failed on %s %d time(s), last %s: %s\n", f.Member, f.Count, f.Last.Local().Format(time.RFC3339), f.What)
					}
					if d.LastRequest != "" {
						fmt.Fprintf(g.out, "  last request: %s\n", d.LastRequest)
					}
					fmt.Fprintln(g.out)
				}
				fmt.Fprintln(g.out, strings.TrimRight(d.Why, "\n"))
				return nil
			},
		}
		cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
		return cmd
	}
	action := func(name, short string) *cobra.Command {
		var to string
		cmd := &cobra.Command{
			Use: name + " S", Short: short, Args: exactArgs(1, "a service name"),
			RunE: func(c *cobra.Command, args []string) error {
				if name == "relocate" && to == "" {
					return usagef("relocate needs --to MEMBER")
				}
				cl, ctx, cancel, err := g.open(c)
				if err != nil {
					return err
				}
				defer cancel()
				if err := cl.ServiceAction(ctx, args[0], name, to); err != nil {
					return err
				}
				fmt.Fprintf(g.out, "service %s: %s requested; follow it with `vigil service show %s`\n", args[0], name, args[0])
				return nil
			},
		}
		if name == "relocate" {
			cmd.Flags().StringVar(&to, "to", "", "the member to move it to")
		}
		return cmd
	}
	del := &cobra.Command{
		Use: "delete S", Short: "stop a service and delete it", Args: exactArgs(1, "a service name"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.DeleteService(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "service %s stopped and deleted\n", args[0])
			return nil
		},
	}
	c.AddCommand(list, show("show S", "show a service, its fail counts and why it runs where it does", false),
		show("why S", "explain where a service runs and why, or why it does not run", true),
		action("online", "start a service (wherever it may run)"), action("offline", "stop a service"),
		action("relocate", "move a service gracefully to another member"),
		action("clear", "forget a service's failures and retry it"), del)
	return c
}

func printServices(w io.Writer, ss []client.ServiceInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tOWNER\tEPOCH\tTARGET\tRESOURCES\tREASON")
	for _, s := range ss {
		owner := s.Owner
		if owner == "" {
			owner = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", s.Name, s.State, owner, s.Epoch, s.Target, s.Resources, s.Reason)
	}
	tw.Flush()
}

func drainCmd(g *globals, on bool) *cobra.Command {
	use, short := "drain M", "move services away from a member gracefully and place nothing new there (standby)"
	if !on {
		use, short = "undrain M", "let a drained member host services again"
	}
	return &cobra.Command{
		Use: use, Short: short, Args: exactArgs(1, "a member name"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.Drain(ctx, args[0], on); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "member %s draining=%v\n", args[0], on)
			return nil
		},
	}
}

func maintenanceCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "maintenance on|off", Short: "stop all activity: nothing is started, stopped or moved",
		Args: exactArgs(1, "on or off"),
		RunE: func(c *cobra.Command, args []string) error {
			if args[0] != "on" && args[0] != "off" {
				return usagef("maintenance takes on or off, not %q", args[0])
			}
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.Maintenance(ctx, args[0] == "on"); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "maintenance %s\n", args[0])
			return nil
		},
	}
}

// serveNameCmd is the demo's service: an HTTP server that answers the name of
// the member it runs on (VIGIL_MEMBER).
func serveNameCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use: "serve-name --listen HOST:PORT", Short: "answer HTTP requests with this member's name (the demo's service)",
		Hidden: true, Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			name := os.Getenv("VIGIL_MEMBER")
			if name == "" {
				name, _ = os.Hostname()
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s\n", name)
			}))
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address to answer on")
	return cmd
}
