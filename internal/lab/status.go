package lab

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// PrintStatus writes the lab's hosts with their power state and faults, then
// the cluster's own status as one live member sees it.
func (l *Lab) PrintStatus(ctx context.Context, w io.Writer) error {
	s, err := l.State()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "lab %s in %s: %d members, %d link(s), mode %s, profile %s\n", s.ID, s.Dir, len(s.Members), s.Links, s.Mode, s.Profile)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tNAMESPACE\tADDRESSES\tPOWER\tAGENT\tFAULTS")
	for _, m := range s.Members {
		power := "on"
		if !m.On {
			power = "off"
		}
		agent := "-"
		if alive(m.Agent) {
			agent = fmt.Sprintf("pid %d", m.Agent)
		} else if s.Mode == ModeKeepalived && m.On {
			agent = "keepalived"
		}
		var faults []string
		if m.Paused {
			faults = append(faults, "paused")
		}
		for _, k := range m.LinksDown {
			faults = append(faults, fmt.Sprintf("link %d down", k))
		}
		if m.Loss > 0 {
			faults = append(faults, fmt.Sprintf("loss %d%%", m.Loss))
		}
		if m.Delay > 0 {
			faults = append(faults, fmt.Sprintf("delay %d ms", m.Delay))
		}
		if len(faults) == 0 {
			faults = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.NS, strings.Join(m.Addrs, ","), power, agent, strings.Join(faults, ", "))
	}
	tw.Flush()
	if len(s.Partition) > 0 {
		var g []string
		for _, p := range s.Partition {
			g = append(g, strings.Join(p, ","))
		}
		fmt.Fprintf(w, "partition: %s\n", strings.Join(g, " / "))
	}
	if s.Mode == ModeKeepalived {
		h, _ := l.Holder()
		fmt.Fprintf(w, "floating address %s held by %q\n", s.Floating(), h)
		return nil
	}
	for _, m := range s.live() {
		out, _ := l.output(s.Vigil, "--data-dir", m.Data, "status")
		fmt.Fprintf(w, "\n$ vigil status   (on %s)\n%s", m.Name, out)
		break
	}
	return nil
}
