package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-cluster/vigil/client"
)

// Options configure a new lab.
type Options struct {
	Dir     string // empty: a new directory under the temp dir
	Members int
	Links   int    // 1 or 2
	Profile string // vigil timing profile (default lan)
	Vigil   string // the vigil binary
	LabBin  string // the vigil-lab binary
	// Mode is ModeVigil (default) or ModeKeepalived (the comparison peer:
	// no vigil, keepalived and the HTTP backend on every member).
	Mode string
	// NoFencing leaves the lab's power switch out of vigil's fence devices.
	NoFencing bool
	// NoService leaves out the web service (floating IP + HTTP backend).
	NoService bool
	Log       io.Writer
	Verbose   bool
}

// Up builds the lab and forms the cluster through the real CLI flow
// (cluster create, member add, member join). On failure it removes what it
// made.
func Up(ctx context.Context, o Options) (*Lab, error) {
	if err := CheckRoot(); err != nil {
		return nil, err
	}
	if o.Members < 1 || o.Members > 9 {
		return nil, fmt.Errorf("--members %d: the lab has 1 to 9 members", o.Members)
	}
	if o.Links == 0 {
		o.Links = 1
	}
	if o.Links < 1 || o.Links > 2 {
		return nil, fmt.Errorf("--links %d: the lab has 1 or 2 links", o.Links)
	}
	if o.Profile == "" {
		o.Profile = "lan"
	}
	if o.Mode == "" {
		o.Mode = ModeVigil
	}
	if o.Mode != ModeVigil && o.Mode != ModeKeepalived {
		return nil, fmt.Errorf("mode %q: use %s or %s", o.Mode, ModeVigil, ModeKeepalived)
	}
	for _, b := range []*string{&o.Vigil, &o.LabBin} {
		abs, err := filepath.Abs(*b)
		if err != nil {
			return nil, err
		}
		*b = abs
	}
	if _, err := os.Stat(o.Vigil); err != nil && o.Mode == ModeVigil {
		return nil, fmt.Errorf("vigil binary %s: %v (build it with make build, or pass --vigil)", o.Vigil, err)
	}
	if o.Mode == ModeKeepalived {
		if _, err := exec.LookPath("keepalived"); err != nil {
			return nil, fmt.Errorf("keepalived is not installed: apt-get install keepalived")
		}
	}
	created := false
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "vigil-lab-")
		if err != nil {
			return nil, err
		}
		o.Dir, created = d, true
	} else {
		abs, err := filepath.Abs(o.Dir)
		if err != nil {
			return nil, err
		}
		o.Dir = abs
		if _, err := os.Stat(filepath.Join(o.Dir, "lab.json")); err == nil {
			return nil, fmt.Errorf("a lab is already up in %s: run vigil-lab down --dir %s first", o.Dir, o.Dir)
		}
		if _, err := os.Stat(o.Dir); os.IsNotExist(err) {
			created = true
		}
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	l := &Lab{Dir: o.Dir, Log: o.Log, Verbose: o.Verbose}
	id := labID(o.Dir)
	s := &State{Dir: o.Dir, ID: id, Created: created, Vigil: o.Vigil, LabBin: o.LabBin, Profile: o.Profile,
		Links: o.Links, Mode: o.Mode, Fencing: !o.NoFencing && o.Mode == ModeVigil,
		Switch: id + "-sw", Client: id + "-client", Started: time.Now()}
	for i := 1; i <= o.Members; i++ {
		m := &Member{Name: fmt.Sprintf("m%d", i), NS: fmt.Sprintf("%s-m%d", id, i), Home: filepath.Join(o.Dir, fmt.Sprintf("m%d", i))}
		m.Data = filepath.Join(m.Home, "data")
		for k := 0; k < o.Links; k++ {
			m.Addrs = append(m.Addrs, fmt.Sprintf("198.18.%d.%d", k, 10+i))
		}
		s.Members = append(s.Members, m)
	}
	if err := l.save(s); err != nil {
		return nil, err
	}
	fail := func(err error) (*Lab, error) {
		l.Down()
		return nil, err
	}
	if err := l.update(func(s *State) error { return l.buildNet(s) }); err != nil {
		return fail(err)
	}
	l.logf("lab %s: %d members, %d link(s), client %s, in %s", id, o.Members, o.Links, s.clientAddr(), o.Dir)
	switch o.Mode {
	case ModeVigil:
		if err := l.formCluster(ctx); err != nil {
			return fail(err)
		}
		if !o.NoService {
			if err := l.ApplyWeb(ctx); err != nil {
				return fail(err)
			}
		}
	case ModeKeepalived:
		for _, m := range s.Members {
			if err := l.Boot(m.Name); err != nil {
				return fail(err)
			}
		}
	}
	return l, nil
}

// buildNet creates the namespaces, the bridges and the cables.
func (l *Lab) buildNet(s *State) error {
	add := func(ns string) error {
		if err := l.run("ip", "netns", "add", ns); err != nil {
			return err
		}
		s.NS = append(s.NS, ns)
		return l.ip(ns, "link", "set", "lo", "up")
	}
	if err := add(s.Switch); err != nil {
		return err
	}
	for k := 0; k < s.Links; k++ {
		br := fmt.Sprintf("br%d", k)
		if err := l.ip(s.Switch, "link", "add", br, "type", "bridge", "mcast_snooping", "0"); err != nil {
			return err
		}
		if err := l.ip(s.Switch, "link", "set", br, "up"); err != nil {
			return err
		}
	}
	cable := func(ns, port string, link int) error {
		if err := l.ip(s.Switch, "link", "add", port, "type", "veth", "peer", "name", fmt.Sprintf("eth%d", link), "netns", ns); err != nil {
			return err
		}
		return l.ip(s.Switch, "link", "set", port, "master", fmt.Sprintf("br%d", link), "up")
	}
	if err := add(s.Client); err != nil {
		return err
	}
	pub := s.Public()
	if err := cable(s.Client, fmt.Sprintf("cl%d", pub), pub); err != nil {
		return err
	}
	if err := l.ip(s.Client, "addr", "add", s.clientAddr()+"/24", "dev", fmt.Sprintf("eth%d", pub)); err != nil {
		return err
	}
	if err := l.ip(s.Client, "link", "set", fmt.Sprintf("eth%d", pub), "up"); err != nil {
		return err
	}
	for _, m := range s.Members {
		if err := add(m.NS); err != nil {
			return err
		}
		for k := range m.Addrs {
			if err := cable(m.NS, port(m, k), k); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(m.Home, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// port is the switch-side end of a member's cable on link k.
func port(m *Member, k int) string { return fmt.Sprintf("%sl%d", m.Name, k) }

// formCluster creates the cluster on m1, joins the others through member
// add / member join, and registers the lab's power switch as a fence device.
func (l *Lab) formCluster(ctx context.Context) error {
	s, err := l.State()
	if err != nil {
		return err
	}
	first := s.Members[0]
	if err := l.powerOnNet(first.Name); err != nil {
		return err
	}
	args := []string{"cluster", "create", "--name", "lab", "--member", first.Name, "--api", first.API(),
		"--data-dir", first.Data, "--profile", s.Profile}
	args = append(args, addrArgs(first)...)
	if out, err := l.Exec(ctx, first.Name, nil, append([]string{s.Vigil}, args...)...); err != nil {
		return fmt.Errorf("cluster create: %v: %s", err, out)
	}
	if err := l.startAgent(first.Name); err != nil {
		return err
	}
	if err := l.WaitMembers(ctx, 1, 60*time.Second); err != nil {
		return err
	}
	for i, m := range s.Members[1:] {
		if err := l.powerOnNet(m.Name); err != nil {
			return err
		}
		tok, err := l.joinToken(ctx, m)
		if err != nil {
			return err
		}
		args := append([]string{s.Vigil, "member", "join", tok, "--member", m.Name, "--api", m.API(), "--data-dir", m.Data}, addrArgs(m)...)
		if out, err := l.Exec(ctx, m.Name, nil, args...); err != nil {
			return fmt.Errorf("member join %s: %v: %s", m.Name, err, out)
		}
		if err := l.startAgent(m.Name); err != nil {
			return err
		}
		if err := l.WaitMembers(ctx, i+2, 60*time.Second); err != nil {
			return err
		}
	}
	l.logf("cluster formed: %d members, profile %s", len(s.Members), s.Profile)
	if s.Fencing {
		if err := l.writeFenceAgent(s); err != nil {
			return err
		}
		args := []string{"--data-dir", first.Data, "fence", "add", "lab-power", "--agent", filepath.Join(s.Dir, "fence_lab"),
			"--option", "dir=" + s.Dir, "--timeout", "10s"}
		for _, m := range s.Members {
			args = append(args, "--member", m.Name)
		}
		if out, err := l.output(s.Vigil, args...); err != nil {
			return fmt.Errorf("fence add: %v: %s", err, out)
		}
		l.logf("fencing: the lab's power switch is fence device lab-power")
	}
	return nil
}

func addrArgs(m *Member) []string {
	var out []string
	for _, a := range m.Addrs {
		out = append(out, "--address", fmt.Sprintf("%s:%d", a, gossipPort))
	}
	return out
}

func (l *Lab) joinToken(ctx context.Context, m *Member) (string, error) {
	s, err := l.State()
	if err != nil {
		return "", err
	}
	var lastErr error
	for _, o := range s.Members {
		if o.Agent == 0 || !alive(o.Agent) {
			continue
		}
		out, err := l.output(s.Vigil, "--data-dir", o.Data, "member", "add", m.Name, "--address", fmt.Sprintf("%s:%d", m.Addrs[0], gossipPort), "--json")
		if err != nil {
			lastErr = err
			continue
		}
		var r client.AddMemberResponse
		if err := json.Unmarshal([]byte(out), &r); err != nil || r.Token == "" {
			return "", fmt.Errorf("member add printed no token: %s", out)
		}
		return r.Token, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no member runs an agent to ask for a join token")
	}
	return "", lastErr
}

// writeFenceAgent writes DIR/fence_lab, the lab's power switch in the form
// of a fence agent (Pacemaker's stdin interface).
func (l *Lab) writeFenceAgent(s *State) error {
	script := fmt.Sprintf("#!/bin/sh\nexec '%s' fence-agent\n", s.LabBin)
	return os.WriteFile(filepath.Join(s.Dir, "fence_lab"), []byte(script), 0o755)
}

// Exec runs argv in member's namespace (or "client"), with the member's
// data dir as VIGIL_DATA_DIR and the vigil binary's directory on PATH.
func (l *Lab) Exec(ctx context.Context, member string, stdin io.Reader, argv ...string) (string, error) {
	cmd, err := l.Command(ctx, member, argv...)
	if err != nil {
		return "", err
	}
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Command returns the command that runs argv in member's namespace.
func (l *Lab) Command(ctx context.Context, member string, argv ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command given: vigil-lab exec M -- CMD [ARGS]")
	}
	s, err := l.State()
	if err != nil {
		return nil, err
	}
	ns, env := s.Client, []string{}
	if member != "client" {
		m, err := s.member(member)
		if err != nil {
			return nil, err
		}
		ns, env = m.NS, []string{"VIGIL_DATA_DIR=" + m.Data, "VIGIL_MEMBER=" + m.Name}
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "PATH="+filepath.Dir(s.Vigil)+":"+filepath.Dir(s.LabBin)+":"+os.Getenv("PATH"))
	return cmd, nil
}

// Client returns an API client for the member's agent (its Unix socket).
func (l *Lab) Client(member string) (*client.Client, error) {
	m, err := l.Member(member)
	if err != nil {
		return nil, err
	}
	return client.New(client.Options{Socket: m.Socket(), Timeout: 5 * time.Second}), nil
}

// WaitMembers waits until n members are UP and RUNNING as seen by every
// member whose agent runs, with a director.
func (l *Lab) WaitMembers(ctx context.Context, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no answer yet"
	for {
		s, err := l.State()
		if err != nil {
			return err
		}
		ok := true
		for _, m := range s.Members {
			if m.Agent == 0 || m.Paused {
				continue
			}
			c := client.New(client.Options{Socket: m.Socket(), Timeout: 2 * time.Second})
			st, err := c.Status(ctx)
			c.Close()
			if err != nil {
				ok, last = false, fmt.Sprintf("%s: %v", m.Name, err)
				break
			}
			up := 0
			for _, row := range st.Members {
				if row.State == client.MemberUp && row.AgentState == client.AgentRunning {
					up++
				}
			}
			if st.Director == "" || up < n {
				ok, last = false, fmt.Sprintf("%s sees director %q and %d of %d members up", m.Name, st.Director, up, n)
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the cluster did not get %d members up within %s: %s", n, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Down stops every process in the lab's namespaces, deletes the namespaces
// (and with them every cable and bridge), and removes the directory if up
// created it (otherwise only the files up wrote in it).
func (l *Lab) Down() error {
	var s State
	b, err := os.ReadFile(filepath.Join(l.Dir, "lab.json"))
	if err != nil {
		return fmt.Errorf("no lab is up in %s: %v", l.Dir, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("lab state damaged: %v", err)
	}
	// Agents first, gracefully, so they leave their data consistent.
	for _, m := range s.Members {
		if m.Paused {
			killNS(m.NS, syscall.SIGCONT)
		}
		if alive(m.Agent) {
			syscall.Kill(m.Agent, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, m := range s.Members {
		for alive(m.Agent) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	var errs []string
	for _, ns := range s.NS {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); os.IsNotExist(err) {
			continue // already gone (a down that ran before)
		}
		killNS(ns, syscall.SIGKILL)
		if err := l.run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if s.Created {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, err.Error())
		}
	} else {
		for _, m := range s.Members {
			os.RemoveAll(m.Home)
		}
		for _, f := range []string{"lab.json", "lab.lock", "fence_lab", "chaos", "bench", "web.yaml"} {
			os.RemoveAll(filepath.Join(s.Dir, f))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("down: %s", strings.Join(errs, "; "))
	}
	l.logf("lab %s is down", s.ID)
	return nil
}
