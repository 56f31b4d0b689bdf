package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/lab/check"
)

// ChaosOptions configure a chaos run.
type ChaosOptions struct {
	Dir      string
	Members  int
	Links    int
	Profile  string
	Seed     int64
	Duration time.Duration
	Faults   []string
	Vigil    string
	LabBin   string
	// Liveness is how long, after the final heal, every service may take
	// to be ONLINE (default 30 s: members boot, rejoin and start services).
	Liveness time.Duration
	// SaveLogs, when set, receives every member's agent log at the end;
	// with violations they are saved to a temp dir anyway.
	SaveLogs string
	// NoDLM leaves out the lock manager's workload (lock workers on every
	// member and the fencing store in the client namespace).
	NoDLM bool
	Out   io.Writer
	Log   io.Writer
}

// ChaosReport is what a chaos run found.
type ChaosReport struct {
	Seed       int64
	Faults     map[string]int
	Violations []string
	Services   []ServiceReport
	Writes     int // acknowledged CDB writes
	WritesLost int
	Online     time.Duration // from the final heal to every service ONLINE
	// DLM is the lock workload's check, nil with NoDLM; DLMWorkers counts
	// the worker processes started (members that boot again restart theirs).
	DLM        *check.DLMReport
	DLMWorkers int
}

// ServiceReport is one service's availability over the chaos window.
type ServiceReport struct {
	Name          string
	Availability  float64
	LongestOutage time.Duration
	LongestAt     time.Duration // from the start of chaos
	Outages       int
}

// recServices are the chaos workload's services: writers appending
// "member epoch mono" every 10 ms to logs in DIR/chaos, favored on
// different members.
func recServices(s *State) (names []string, yaml string) {
	var b strings.Builder
	n := len(s.Members)
	for i := 0; i < 2 && i < n; i++ {
		name := fmt.Sprintf("rec%d", i+1)
		names = append(names, name)
		var fav []string
		for j := 0; j < n; j++ {
			fav = append(fav, s.Members[(i+j)%n].Name)
		}
		fmt.Fprintf(&b, `service: %s
resources:
  - name: writer
    kind: exec
    command: [%q, writer, --log, %q]
placement:
  favored: [%s]
monitor_interval: 1s
---
`, name, s.LabBin, filepath.Join(s.Dir, "chaos", name+".log"), strings.Join(fav, ", "))
	}
	return names, b.String()
}

// Chaos builds a lab, runs the seeded fault schedule against the workload,
// heals everything, and checks the invariants: no two members' writer
// intervals overlap (no dual-active), every acknowledged CDB write is
// readable on every member, every service is ONLINE within the liveness
// bound, and the lock workload (DLMLoad) saw no incompatible holders at once,
// no stale token accepted, and a lock granted on every member within the
// liveness bound. The lab is removed at the end unless keep.
func Chaos(ctx context.Context, o ChaosOptions, keep bool) (*ChaosReport, error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	if o.Liveness == 0 {
		o.Liveness = 30 * time.Second
	}
	rep := &ChaosReport{Seed: o.Seed}
	fmt.Fprintf(out, "chaos seed %d: %d members, %s, faults %s\n", o.Seed, o.Members, o.Duration, strings.Join(o.Faults, ","))
	l, err := Up(ctx, Options{Dir: o.Dir, Members: o.Members, Links: o.Links, Profile: o.Profile, Vigil: o.Vigil, LabBin: o.LabBin, Log: o.Log})
	if err != nil {
		return nil, err
	}
	if !keep {
		defer l.Down()
	}
	var rep0 *ChaosReport
	defer func() {
		dir := o.SaveLogs
		if dir == "" && rep0 != nil && len(rep0.Violations) > 0 {
			dir = filepath.Join(os.TempDir(), fmt.Sprintf("vigil-chaos-%d-logs", o.Seed))
		}
		if dir != "" {
			if err := l.saveLogs(dir); err != nil {
				fmt.Fprintf(out, "saving the agents' logs: %v\n", err)
			} else {
				fmt.Fprintf(out, "the agents' logs are in %s\n", dir)
			}
		}
	}()
	s, err := l.State()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range s.Members {
		names = append(names, m.Name)
	}
	steps := check.Schedule(o.Seed, names, s.Links, o.Duration, o.Faults)
	rep.Faults = check.Count(steps)
	fmt.Fprintf(out, "schedule (%d steps):\n", len(steps))
	for _, st := range steps {
		fmt.Fprintln(out, st)
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, "chaos"), 0o755); err != nil {
		return nil, err
	}
	recs, yaml := recServices(s)
	if err := l.Apply(ctx, yaml); err != nil {
		return nil, err
	}
	if err := l.waitOnline(ctx, append([]string{"web"}, recs...), 60*time.Second); err != nil {
		return nil, err
	}
	prober, err := l.StartProber(ctx, 50*time.Millisecond, 300*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer prober.Stop()

	// The lock manager's workload: lock workers on every member, the
	// fencing store in the client namespace.
	var dl *DLMLoad
	if !o.NoDLM {
		dl, err = l.StartDLMLoad(ctx, DLMLoadOptions{Seed: o.Seed})
		if err != nil {
			return nil, err
		}
		defer dl.Stop(0)
	}

	// The CDB writer: settings user.chaos-N, through every member in turn.
	wctx, stopWriter := context.WithCancel(ctx)
	acks := map[string]string{}
	var amu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.cdbWriter(wctx, acks, &amu)
	}()

	// Fencing powers a member off; as with Pacemaker's default fence
	// action (reboot), a member vigil fenced boots again after a while.
	// Only the schedule's own crashes keep a member off until their heal.
	var crashMu sync.Mutex
	crashed := map[string]bool{}
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.rebootFenced(wctx, out, start, func(n string) bool {
			crashMu.Lock()
			defer crashMu.Unlock()
			return crashed[n]
		})
	}()

	from := Mono()
	for _, st := range steps {
		if d := time.Until(start.Add(st.At)); d > 0 {
			select {
			case <-ctx.Done():
				stopWriter()
				wg.Wait()
				return nil, ctx.Err()
			case <-time.After(d):
			}
		}
		if st.Fault == check.FaultCrash {
			crashMu.Lock()
			crashed[st.Members[0]] = !st.Heal
			crashMu.Unlock()
		}
		err := l.step(st)
		line := fmt.Sprintf("%s (done at %.3fs)", st, time.Since(start).Seconds())
		if err != nil {
			line += ": " + err.Error()
		}
		fmt.Fprintln(out, line)
	}
	if d := time.Until(start.Add(o.Duration)); d > 0 {
		time.Sleep(d)
	}
	to := Mono()
	stopWriter()
	wg.Wait()

	// The final heal: network, pauses, and every member powered on.
	fmt.Fprintf(out, "%8.3fs final heal\n", time.Since(start).Seconds())
	healed, healedMono := time.Now(), Mono()
	if err := l.HealAll(); err != nil {
		return nil, err
	}
	if err := l.WaitMembers(ctx, len(s.Members), o.Liveness); err != nil {
		rep.Violations = append(rep.Violations, "liveness: "+err.Error())
	}
	all := append([]string{"web"}, recs...)
	if err := l.waitOnline(ctx, all, o.Liveness-time.Since(healed)); err != nil {
		rep.Violations = append(rep.Violations, "liveness: "+err.Error())
	}
	rep.Online = time.Since(healed)
	if dl != nil {
		// The lock manager recovers too: a worker on every member gets a
		// lock within the liveness bound.
		var members []string
		for _, m := range s.Members {
			members = append(members, m.Name)
		}
		if err := dl.WaitGrants(ctx, members, healedMono, max(o.Liveness-time.Since(healed), 10*time.Second)); err != nil {
			rep.Violations = append(rep.Violations, "dlm liveness after the final heal: "+err.Error())
		}
		dl.StopWorkers()
	}

	// Invariant 1: no dual-active, from the writers' logs.
	time.Sleep(300 * time.Millisecond)
	for _, name := range recs {
		f, err := os.Open(filepath.Join(s.Dir, "chaos", name+".log"))
		if err != nil {
			rep.Violations = append(rep.Violations, fmt.Sprintf("%s: no writer log: %v", name, err))
			continue
		}
		rs, bad, err := check.ParseRecords(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		for _, b := range bad {
			rep.Violations = append(rep.Violations, fmt.Sprintf("%s: malformed writer line: %s", name, b))
		}
		for _, ov := range check.Overlaps(check.Intervals(rs, 100*time.Millisecond)) {
			rep.Violations = append(rep.Violations, fmt.Sprintf("%s: dual-active: %s", name, ov))
		}
		c := check.Cover(rs, from, to, 100*time.Millisecond)
		rep.Services = append(rep.Services, ServiceReport{Name: name, Availability: c.Availability, LongestOutage: c.LongestOutage,
			LongestAt: time.Duration(c.LongestAt - from), Outages: c.Outages})
	}
	c := check.ProbeCoverage(prober.Probes(), from, to, 300*time.Millisecond)
	rep.Services = append(rep.Services, ServiceReport{Name: "web (from the client)", Availability: c.Availability, LongestOutage: c.LongestOutage,
		LongestAt: time.Duration(c.LongestAt - from), Outages: c.Outages})

	// Invariant 2: every acknowledged write is readable on every member.
	amu.Lock()
	rep.Writes = len(acks)
	amu.Unlock()
	s, _ = l.State()
	for _, m := range s.Members {
		// A member that just rejoined may still be catching up: give it
		// a few seconds before calling a write lost.
		var missing []string
		var rerr error
		for deadline := time.Now().Add(10 * time.Second); ; {
			missing, rerr = l.missingWrites(ctx, m, acks, &amu)
			if (rerr == nil && len(missing) == 0) || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if rerr != nil {
			rep.Violations = append(rep.Violations, fmt.Sprintf("reading the CDB on %s after the heal: %v", m.Name, rerr))
			continue
		}
		for i, k := range missing {
			if i == 5 {
				rep.Violations = append(rep.Violations, fmt.Sprintf("... and %d more acknowledged writes not readable on %s", len(missing)-5, m.Name))
				break
			}
			rep.Violations = append(rep.Violations, fmt.Sprintf("acknowledged write %s is not readable on %s", k, m.Name))
		}
		if len(missing) > rep.WritesLost {
			rep.WritesLost = len(missing)
		}
	}
	// Invariant 3: the lock manager's workload saw no incompatible
	// holders at once and the store accepted no stale token.
	if dl != nil {
		dl.Stop(10 * time.Second)
		rep.DLMWorkers = dl.Started()
		d, err := dl.Check()
		if err != nil {
			rep.Violations = append(rep.Violations, "dlm: reading the lock workload's logs: "+err.Error())
		} else {
			rep.DLM = d
			for _, v := range d.Violations {
				rep.Violations = append(rep.Violations, "dlm: "+v)
			}
		}
	}
	rep.Print(out)
	rep0 = rep
	return rep, nil
}

// rebootDelay is how long a fenced member stays off before it boots again.
const rebootDelay = 2 * time.Second

// rebootFenced boots members that are off, unless the schedule crashed
// them, rebootDelay after it first sees them off.
func (l *Lab) rebootFenced(ctx context.Context, out io.Writer, start time.Time, crashed func(string) bool) {
	offSince := map[string]time.Time{}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := l.State()
		if err != nil {
			return
		}
		for _, m := range s.Members {
			if m.On || crashed(m.Name) {
				delete(offSince, m.Name)
				continue
			}
			since, ok := offSince[m.Name]
			if !ok {
				offSince[m.Name] = time.Now()
				continue
			}
			if time.Since(since) >= rebootDelay {
				delete(offSince, m.Name)
				if err := l.Restart(m.Name); err != nil {
					fmt.Fprintf(out, "%9.3fs boot %s after its fence: %v\n", time.Since(start).Seconds(), m.Name, err)
				} else {
					fmt.Fprintf(out, "%9.3fs boot %s after its fence\n", time.Since(start).Seconds(), m.Name)
				}
			}
		}
	}
}

// saveLogs copies every member's agent log, and the lock workload's logs
// (in dir/dlm), into dir.
func (l *Lab) saveLogs(dir string) error {
	s, err := l.State()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if dlm, _ := filepath.Glob(filepath.Join(s.Dir, "chaos", "dlm", "*")); len(dlm) > 0 {
		if err := os.MkdirAll(filepath.Join(dir, "dlm"), 0o755); err != nil {
			return err
		}
		for _, f := range dlm {
			if b, err := os.ReadFile(f); err == nil {
				if err := os.WriteFile(filepath.Join(dir, "dlm", filepath.Base(f)), b, 0o644); err != nil {
					return err
				}
			}
		}
	}
	for _, m := range s.Members {
		b, err := os.ReadFile(filepath.Join(m.Home, "agent.log"))
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, m.Name+".log"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// step applies one schedule step. Healing a fault also powers on a member
// that vigil fenced meanwhile, or starts an agent that is gone.
func (l *Lab) step(st check.Step) error {
	if !st.Heal {
		switch st.Fault {
		case check.FaultCrash:
			return l.Crash(st.Members[0])
		case check.FaultKillAgent:
			return l.KillAgent(st.Members[0])
		case check.FaultPause:
			return l.Pause(st.Members[0])
		case check.FaultPartition:
			return l.Partition([][]string{st.Members})
		case check.FaultLoss:
			return l.Netem(st.Members[0], st.Arg, 0)
		case check.FaultDelay:
			return l.Netem(st.Members[0], 0, st.Arg)
		case check.FaultLinkDown:
			return l.SetLink(st.Members[0], st.Arg, false)
		}
		return fmt.Errorf("unknown fault %q", st.Fault)
	}
	var err error
	switch st.Fault {
	case check.FaultPause:
		err = l.Resume(st.Members[0])
	case check.FaultPartition:
		err = l.HealPartition()
	case check.FaultLoss, check.FaultDelay:
		err = l.Netem(st.Members[0], 0, 0)
	case check.FaultLinkDown:
		err = l.SetLink(st.Members[0], st.Arg, true)
	}
	if err != nil {
		return err
	}
	s, err := l.State()
	if err != nil {
		return err
	}
	for _, n := range st.Members {
		m, err := s.member(n)
		if err != nil {
			return err
		}
		if !m.On || !alive(m.Agent) {
			if err := l.Restart(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// cdbWriter writes user.chaos-N settings through the members in turn and
// records every acknowledged one.
func (l *Lab) cdbWriter(ctx context.Context, acks map[string]string, mu *sync.Mutex) {
	for i := 0; ctx.Err() == nil; i++ {
		s, err := l.State()
		if err != nil {
			return
		}
		m := s.Members[i%len(s.Members)]
		if !m.On || m.Paused || !alive(m.Agent) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		k, v := "user.chaos-"+strconv.Itoa(i), strconv.FormatInt(Mono(), 10)
		cl := client.New(client.Options{Socket: m.Socket(), Timeout: 2 * time.Second})
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = cl.SetSettings(wctx, map[string]string{k: v})
		cancel()
		cl.Close()
		if err == nil {
			mu.Lock()
			acks[k] = v
			mu.Unlock()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// missingWrites lists the acknowledged writes member m does not return.
func (l *Lab) missingWrites(ctx context.Context, m *Member, acks map[string]string, mu *sync.Mutex) ([]string, error) {
	cl := client.New(client.Options{Socket: m.Socket(), Timeout: 5 * time.Second})
	defer cl.Close()
	got, err := cl.Settings(ctx)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	var missing []string
	for k, v := range acks {
		if got.Settings[k] != v {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// waitOnline waits until every named service is ONLINE, as a live member
// reports.
func (l *Lab) waitOnline(ctx context.Context, services []string, timeout time.Duration) error {
	if timeout < time.Second {
		timeout = time.Second
	}
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		s, err := l.State()
		if err != nil {
			return err
		}
		for _, m := range s.live() {
			cl := client.New(client.Options{Socket: m.Socket(), Timeout: 2 * time.Second})
			list, err := cl.Services(ctx)
			cl.Close()
			if err != nil {
				last = err.Error()
				continue
			}
			state := map[string]string{}
			for _, sv := range list {
				state[sv.Name] = string(sv.State) + " on " + sv.Owner
			}
			var not []string
			for _, n := range services {
				if !strings.HasPrefix(state[n], "ONLINE") {
					not = append(not, n+" "+state[n])
				}
			}
			if len(not) == 0 {
				return nil
			}
			last = "not ONLINE: " + strings.Join(not, ", ")
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("services not ONLINE within %s: %s", timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Print writes the report.
func (r *ChaosReport) Print(w io.Writer) {
	fmt.Fprintf(w, "\nchaos report, seed %d\n", r.Seed)
	var kinds []string
	total := 0
	for k, n := range r.Faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "faults injected: %d (%s)\n", total, strings.Join(kinds, ", "))
	fmt.Fprintf(w, "CDB writes acknowledged: %d, lost: %d\n", r.Writes, r.WritesLost)
	fmt.Fprintf(w, "every service ONLINE %s after the final heal\n", r.Online.Round(time.Millisecond))
	for _, s := range r.Services {
		fmt.Fprintf(w, "  %-22s availability %6.2f%%  outages %3d  longest %s (from %.1fs)\n", s.Name, 100*s.Availability, s.Outages,
			s.LongestOutage.Round(time.Millisecond), s.LongestAt.Seconds())
	}
	if r.DLM != nil {
		fmt.Fprintf(w, "DLM: %d worker processes\n", r.DLMWorkers)
		for _, line := range strings.Split(r.DLM.String(), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	fmt.Fprintf(w, "violations: %d\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  VIOLATION %s\n", v)
	}
}
