package cli

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/client"
)

func linksCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "links [--json]",
		Short: "show every link between every pair of members: state, round trip and loss",
		Long: `Show the link matrix (OpenVMS's LAN failure analysis): every member
probes every other member on every link with the cluster's own encrypted UDP
ping, once per probe interval, and keeps the latest 30 probes. Each cell is
FROM's view of TO on that link: memberlist's state, the median round trip,
and the probes lost. A flapping cable shows as loss before memberlist
declares the member gone; a one-way fault shows as a difference between the
two cells of a pair. Problems are listed after the matrices.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			rs, err := cl.Links(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(rs)
			}
			printLinks(g.out, rs)
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
	return cmd
}

// printLinks prints one matrix per link, then the problems found.
func printLinks(w io.Writer, rs []client.LinkReport) {
	var members []string
	links := 0
	cell := map[[3]string]client.LinkStat{}
	for _, r := range rs {
		members = append(members, r.Member)
		for _, l := range r.Links {
			links = max(links, l.Link+1)
			cell[[3]string{l.From, l.To, fmt.Sprint(l.Link)}] = l
		}
	}
	slices.Sort(members)
	for i := range links {
		fmt.Fprintf(w, "link %d\n", i)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprint(tw, "FROM \\ TO")
		for _, m := range members {
			fmt.Fprint(tw, "\t"+m)
		}
		fmt.Fprintln(tw)
		for _, from := range members {
			fmt.Fprint(tw, from)
			for _, to := range members {
				fmt.Fprint(tw, "\t"+linkCell(from, to, i, cell))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	var problems []string
	for _, r := range rs {
		if r.Error != "" {
			problems = append(problems, fmt.Sprintf("%s did not answer: %s", r.Member, r.Error))
		}
		for _, l := range r.Links {
			switch {
			case !l.Up:
				problems = append(problems, fmt.Sprintf("%s does not hear %s on link %d (%s): %d of its last %d probes lost%s", l.From, l.To, l.Link, l.Addr, l.Lost, l.Sent, lastAck(l.LastAck)))
			case l.Lost > 0:
				problems = append(problems, fmt.Sprintf("%s → %s on link %d (%s): %d of the last %d probes lost (%.0f%%)", l.From, l.To, l.Link, l.Addr, l.Lost, l.Sent, 100*float64(l.Lost)/float64(l.Sent)))
			}
		}
	}
	if len(problems) == 0 {
		fmt.Fprintln(w, "no problems: every member hears every other on every link, no probe lost")
		return
	}
	fmt.Fprintln(w, "problems:")
	for _, p := range problems {
		fmt.Fprintln(w, "  "+p)
	}
}

func linkCell(from, to string, link int, cell map[[3]string]client.LinkStat) string {
	if from == to {
		return "-"
	}
	l, ok := cell[[3]string{from, to, fmt.Sprint(link)}]
	if !ok {
		return "?"
	}
	state := "up"
	if !l.Up {
		state = "DOWN"
	}
	if l.Sent == 0 {
		return state + " (no probe yet)"
	}
	rtt := "-"
	if l.Sent > l.Lost {
		rtt = (time.Duration(l.RTTMicros) * time.Microsecond).String()
	}
	return fmt.Sprintf("%s %s %d/%d lost", state, rtt, l.Lost, l.Sent)
}

func lastAck(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf("; last answer %s ago", time.Since(t).Round(100*time.Millisecond))
}
