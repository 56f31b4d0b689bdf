package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/api"
)

func eventsCmd(g *globals) *cobra.Command {
	var (
		f      client.EventFilter
		since  string
		follow bool
		steps  bool
	)
	cmd := &cobra.Command{
		Use:   "events [--since T] [--service S] [--member M] [--kind K] [--limit N] [--follow] [--steps] [--json]",
		Short: "show the cluster's event log (--follow: and wait for new events)",
		Long: `Show the cluster's event log: member state changes, quorum and director
changes, service transitions (with epoch and member), the methods each order
ran (exit code, duration, output with --steps), fencing, operator commands
(who, what, from where), configuration changes and alert failures.

The log is in the cluster database, so every member shows the same one. It
keeps the newest event-log-size events (default 10000; vigil settings set
event-log-size=N). --since takes a time (2026-12-04T21:00:00Z) or a duration
back from now (10m). --json prints one JSON object per line.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if since != "" {
				t, err := api.ParseSince(since, time.Now())
				if err != nil {
					return usageError{fmt.Errorf("--since: %v", err)}
				}
				f.Since = t
			}
			if f.Kind != "" && !slices.Contains(client.EventKinds, f.Kind) {
				return usagef("--kind %q is not an event kind: use one of %s", f.Kind, strings.Join(client.EventKinds, ", "))
			}
			if f.Limit < 0 || f.Limit > api.MaxEventLimit {
				return usagef("--limit %d: use 1 to %d", f.Limit, api.MaxEventLimit)
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := g.ctx(c)
			evs, err := cl.Events(ctx, f)
			cancel()
			if err != nil {
				return err
			}
			p := eventPrinter{w: g.out, json: g.json, steps: steps}
			p.print(evs)
			if !follow {
				if len(evs) == 0 && !g.json {
					fmt.Fprintln(g.errOut, "no events match")
				}
				return nil
			}
			if len(evs) > 0 {
				f.After = evs[len(evs)-1].Seq
			}
			return followEvents(c.Context(), cl, f, g.timeout, p.print)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "only events at or after this time, or this long ago (10m)")
	fl.StringVar(&f.Service, "service", "", "only events of this service")
	fl.StringVar(&f.Member, "member", "", "only events of this member")
	fl.StringVar(&f.Kind, "kind", "", "only events of this kind: "+strings.Join(client.EventKinds, ", "))
	fl.IntVar(&f.Limit, "limit", 0, "only the newest N events (default 1000)")
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new events as they are recorded (Ctrl-C stops)")
	fl.BoolVar(&steps, "steps", false, "print the methods behind each method event with their output")
	fl.BoolVar(&g.json, "json", false, "print one JSON object per event and line")
	return cmd
}

// followEvents long-polls the log for events after f.After until ctx ends.
// A member that goes away is retried: following survives a failover.
func followEvents(ctx context.Context, cl *client.Client, f client.EventFilter, timeout time.Duration, print func([]client.Event)) error {
	f.Limit = 0
	f.Since = time.Time{}
	f.Wait = min(20*time.Second, max(timeout-5*time.Second, time.Second))
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, f.Wait+5*time.Second)
		evs, err := cl.Events(cctx, f)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ae *client.Error
			if errors.As(err, &ae) && ae.Code == client.CodeInvalid {
				return err
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		print(evs)
		if len(evs) > 0 {
			f.After = evs[len(evs)-1].Seq
		}
	}
	return nil
}

// eventPrinter prints events as lines (or JSON lines).
type eventPrinter struct {
	w     io.Writer
	json  bool
	steps bool
}

func (p eventPrinter) print(evs []client.Event) {
	for i := range evs {
		e := &evs[i]
		if p.json {
			b, _ := json.Marshal(e)
			fmt.Fprintf(p.w, "%s\n", b)
			continue
		}
		fmt.Fprintln(p.w, EventLine(e))
		if p.steps {
			for _, s := range e.Steps {
				line := fmt.Sprintf("      %s %s rc=%d %dms", s.Resource, s.Method, s.RC, s.DurationMS)
				if s.Error != "" {
					line += ": " + s.Error
				}
				fmt.Fprintln(p.w, line)
				for _, o := range s.Output {
					fmt.Fprintln(p.w, "        | "+o)
				}
			}
		}
	}
}

// EventLine formats one event on one line: time, number, kind, message and
// who asked.
func EventLine(e *client.Event) string {
	s := fmt.Sprintf("%s  #%-5d %-8s %s", e.At.Local().Format("2006-01-02 15:04:05.000"), e.Seq, e.Kind, e.Message)
	if len(e.Steps) > 0 {
		var total int64
		for _, st := range e.Steps {
			total += st.DurationMS
		}
		s += fmt.Sprintf(" [%d methods, %dms]", len(e.Steps), total)
	}
	if e.By != "" && e.Kind != client.EventMethod && !strings.HasPrefix(e.By, "member:"+e.Member) {
		s += "  (by " + e.By + ")"
	}
	return s
}

func alertCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "alert", Short: "configure alert agents: programs run for cluster events", Args: noArgs}
	var (
		al      client.Alert
		timeout time.Duration
	)
	add := &cobra.Command{
		Use:   "add NAME --path FILE [--kind K...] [--timeout D] [--recipient R]",
		Short: "add or replace an alert agent",
		Long: `Add or replace an alert agent (TruCluster's error alert script, Pacemaker's
alert agents): an executable that the director runs for each event of the
selected kinds, with the event in the environment:

  VIGIL_ALERT_KIND, _MEMBER, _SERVICE, _EVENT (the message), _RC, _TIMESTAMP,
  _SEQ, _EPOCH, _BY, _NAME, _RECIPIENT, _CLUSTER, _DIRECTOR, _TEST, and _JSON
  (the whole event).

Runs are in parallel, each bounded by --timeout; a run that fails or times
out is recorded as an alert event. The file must be at the same path on
every member (any member may become the director). Samples: contrib/alerts.`,
		Args: exactArgs(1, "an alert name"),
		RunE: func(c *cobra.Command, args []string) error {
			al.Name = args[0]
			if al.Path == "" {
				return usagef("alert add needs --path FILE: the executable to run")
			}
			for _, k := range al.Kinds {
				if !slices.Contains(client.EventKinds, k) {
					return usagef("--kind %q is not an event kind: use some of %s", k, strings.Join(client.EventKinds, ", "))
				}
			}
			if timeout != 0 {
				al.Timeout = timeout.String()
			}
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.SetAlert(ctx, al); err != nil {
				return err
			}
			kinds := "every kind but alert"
			if len(al.Kinds) > 0 {
				kinds = strings.Join(al.Kinds, ", ")
			}
			fmt.Fprintf(g.out, "alert %s runs %s for events of %s; try it with `vigil alert test %s`\n", al.Name, al.Path, kinds, al.Name)
			return nil
		},
	}
	add.Flags().StringVar(&al.Path, "path", "", "absolute path of the executable, the same on every member")
	add.Flags().StringSliceVar(&al.Kinds, "kind", nil, "event kinds to run it for (repeatable; default: every kind but alert)")
	add.Flags().DurationVar(&timeout, "timeout", 0, "how long one run may take (default 30s)")
	add.Flags().StringVar(&al.Recipient, "recipient", "", "passed as VIGIL_ALERT_RECIPIENT (a file, a mail address)")
	list := &cobra.Command{
		Use: "list [--json]", Short: "list the alert agents", Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			as, err := cl.Alerts(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(as)
			}
			if len(as) == 0 {
				fmt.Fprintln(g.out, "no alert agents (see `vigil alert add --help`)")
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ALERT\tPATH\tKINDS\tTIMEOUT\tRECIPIENT")
			for _, a := range as {
				kinds, to := strings.Join(a.Kinds, ","), a.Timeout
				if kinds == "" {
					kinds = "(all but alert)"
				}
				if to == "" {
					to = "30s"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Path, kinds, to, a.Recipient)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&g.json, "json", false, "print JSON")
	remove := &cobra.Command{
		Use: "remove NAME", Short: "remove an alert agent", Args: exactArgs(1, "an alert name"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			if err := cl.RemoveAlert(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "alert %s removed\n", args[0])
			return nil
		},
	}
	var wait time.Duration
	test := &cobra.Command{
		Use:   "test [NAME]",
		Short: "send a test event to an alert agent (or to all) and show how each run ended",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("alert test takes at most one alert name")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			as, err := cl.Alerts(ctx)
			if err != nil {
				return err
			}
			last, err := cl.Events(ctx, client.EventFilter{Limit: 1})
			if err != nil {
				return err
			}
			f := client.EventFilter{Kind: client.EventAlert}
			if len(last) > 0 {
				f.After = last[0].Seq
			}
			if _, err := cl.TestAlert(ctx, name); err != nil {
				return err
			}
			want := map[string]bool{}
			for _, a := range as {
				if name == "" || a.Name == name {
					want[a.Name] = true
				}
			}
			fmt.Fprintf(g.out, "test event recorded; waiting up to %s for %d alert run(s)\n", wait, len(want))
			// Wait for one outcome per alert: a run or a failure.
			wctx, wcancel := context.WithTimeout(c.Context(), wait)
			defer wcancel()
			failed := 0
			for len(want) > 0 && wctx.Err() == nil {
				f.Wait = min(time.Until(deadlineOf(wctx)), 20*time.Second)
				if f.Wait <= 0 {
					break
				}
				evs, err := cl.Events(wctx, f)
				if err != nil {
					break
				}
				for i := range evs {
					e := &evs[i]
					f.After = e.Seq
					if e.Test || !want[e.Alert] {
						continue
					}
					delete(want, e.Alert)
					fmt.Fprintln(g.out, EventLine(e))
					if e.RC == nil || *e.RC != 0 {
						failed++
					}
				}
			}
			for n := range want {
				fmt.Fprintf(g.out, "alert %s: no outcome within %s (is there a director? see `vigil events --kind alert`)\n", n, wait)
				failed++
			}
			if failed > 0 {
				return fmt.Errorf("%d alert run(s) failed or did not finish", failed)
			}
			return nil
		},
	}
	test.Flags().DurationVar(&wait, "wait", 40*time.Second, "how long to wait for the runs")
	c.AddCommand(add, list, remove, test)
	return c
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
