package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// powerOnNet brings a member's cables up with its fixed addresses.
func (l *Lab) powerOnNet(name string) error {
	return l.withMember(name, func(s *State, m *Member) error {
		for k, a := range m.Addrs {
			dev := fmt.Sprintf("eth%d", k)
			if err := l.ip(m.NS, "addr", "replace", a+"/24", "dev", dev); err != nil {
				return err
			}
			if err := l.ip(m.NS, "link", "set", dev, "up"); err != nil {
				return err
			}
		}
		m.On = true
		return nil
	})
}

// startAgent starts the member's vigil agent in its namespace, in a session
// of its own, logging to HOME/agent.log.
func (l *Lab) startAgent(name string) error {
	return l.withMember(name, func(s *State, m *Member) error {
		if alive(m.Agent) {
			return nil
		}
		pid, err := l.spawn(m, "agent.log", s.Vigil, "agent", "--data-dir", m.Data)
		if err != nil {
			return fmt.Errorf("starting %s's agent: %v", m.Name, err)
		}
		m.Agent = pid
		l.logf("%s: agent started (pid %d)", m.Name, pid)
		return nil
	})
}

// spawn starts a daemon in the member's namespace and returns its pid. The
// process is reaped in the background while this process lives.
func (l *Lab) spawn(m *Member, logName string, argv ...string) (int, error) {
	lf, err := os.OpenFile(filepath.Join(m.Home, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer lf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", m.NS}, argv...)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), "VIGIL_MEMBER="+m.Name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go cmd.Wait()
	return cmd.Process.Pid, nil
}

// Boot powers a member on: cables up with its addresses, then its agent (or,
// in keepalived mode, keepalived and the HTTP backend).
func (l *Lab) Boot(name string) error {
	if err := l.powerOnNet(name); err != nil {
		return err
	}
	s, err := l.State()
	if err != nil {
		return err
	}
	if s.Mode == ModeKeepalived {
		return l.startKeepalived(name)
	}
	return l.startAgent(name)
}

// Crash powers a member off: every process in its namespace is killed
// (SIGKILL), its addresses are removed (floating ones included), its cables
// go down and its netem settings go away, as a power-off would.
func (l *Lab) Crash(name string) error {
	return l.withMember(name, func(s *State, m *Member) error {
		n := killNS(m.NS, syscall.SIGKILL)
		for k := range m.Addrs {
			dev := fmt.Sprintf("eth%d", k)
			l.ip(m.NS, "addr", "flush", "dev", dev)
			l.ip(m.NS, "link", "set", dev, "down")
		}
		l.clearNetem(s, m)
		if m.Loss > 0 {
			m.Loss = 0
			l.syncSwitch(s)
		}
		m.On, m.Paused, m.Agent, m.Daemons = false, false, 0, nil
		l.logf("%s: powered off (%d processes killed, addresses removed)", m.Name, n)
		return nil
	})
}

// KillAgent kills only the member's vigil agent (SIGKILL).
func (l *Lab) KillAgent(name string) error {
	return l.withMember(name, func(s *State, m *Member) error {
		if !alive(m.Agent) {
			return fmt.Errorf("%s has no running agent to kill", m.Name)
		}
		syscall.Kill(m.Agent, syscall.SIGKILL)
		for i := 0; i < 100 && alive(m.Agent); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		l.logf("%s: agent killed (pid %d)", m.Name, m.Agent)
		m.Agent = 0
		return nil
	})
}

// Pause stops every process of the member (SIGSTOP), as a frozen VM.
func (l *Lab) Pause(name string) error {
	return l.withMember(name, func(s *State, m *Member) error {
		if !m.On {
			return fmt.Errorf("%s is powered off; restart it first", m.Name)
		}
		n := killNS(m.NS, syscall.SIGSTOP)
		m.Paused = true
		l.logf("%s: paused (%d processes stopped)", m.Name, n)
		return nil
	})
}

// Resume continues a paused member (SIGCONT).
func (l *Lab) Resume(name string) error {
	return l.withMember(name, func(s *State, m *Member) error {
		n := killNS(m.NS, syscall.SIGCONT)
		m.Paused = false
		l.logf("%s: resumed (%d processes continued)", m.Name, n)
		return nil
	})
}

// Restart boots a powered-off member, or restarts a running member's agent
// (SIGTERM, SIGKILL after 10 s); a member whose agent was killed gets a new
// one.
func (l *Lab) Restart(name string) error {
	m, err := l.Member(name)
	if err != nil {
		return err
	}
	if !m.On {
		return l.Boot(name)
	}
	if m.Paused {
		if err := l.Resume(name); err != nil {
			return err
		}
	}
	s, err := l.State()
	if err != nil {
		return err
	}
	if s.Mode == ModeKeepalived {
		return l.startKeepalived(name)
	}
	if alive(m.Agent) {
		syscall.Kill(m.Agent, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for alive(m.Agent) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(m.Agent) {
			syscall.Kill(m.Agent, syscall.SIGKILL)
		}
		l.update(func(s *State) error {
			mm, _ := s.member(name)
			mm.Agent = 0
			return nil
		})
		l.logf("%s: agent stopped", name)
	}
	return l.startAgent(name)
}

// Partition cuts the lab's links between the groups, on every link, at the
// switch (nftables in the switch namespace). Members named in no group join
// the last group. The client stays connected to everyone.
func (l *Lab) Partition(groups [][]string) error {
	return l.update(func(s *State) error {
		if len(groups) < 1 {
			return fmt.Errorf("partition needs groups, e.g. m1,m2 / m3")
		}
		seen := map[string]bool{}
		for _, g := range groups {
			for _, n := range g {
				if _, err := s.member(n); err != nil {
					return err
				}
				if seen[n] {
					return fmt.Errorf("%s is named twice in the partition", n)
				}
				seen[n] = true
			}
		}
		var rest []string
		for _, m := range s.Members {
			if !seen[m.Name] {
				rest = append(rest, m.Name)
			}
		}
		if len(rest) > 0 {
			if len(groups) == 1 {
				groups = append(groups, rest)
			} else {
				groups[len(groups)-1] = append(groups[len(groups)-1], rest...)
			}
		}
		if len(groups) < 2 {
			return fmt.Errorf("a partition needs two sides: name the members of one side, e.g. m1,m2 / m3")
		}
		s.Partition = groups
		if err := l.syncSwitch(s); err != nil {
			return err
		}
		var desc []string
		for _, g := range groups {
			desc = append(desc, strings.Join(g, ","))
		}
		l.logf("partition: %s", strings.Join(desc, " / "))
		return nil
	})
}

// HealPartition removes the partition.
func (l *Lab) HealPartition() error {
	return l.update(func(s *State) error {
		had := len(s.Partition) > 0
		s.Partition = nil
		if err := l.syncSwitch(s); err != nil {
			return err
		}
		if had {
			l.logf("partition healed")
		}
		return nil
	})
}

// syncSwitch rewrites the switch's nftables rules from the state: the
// partition's cuts and each member's packet loss (nftables' random numbers,
// so loss works on kernels without netem).
func (l *Lab) syncSwitch(s *State) error {
	var rules []string
	for i := range s.Partition {
		for j := range s.Partition {
			if i == j {
				continue
			}
			for _, a := range s.Partition[i] {
				for _, b := range s.Partition[j] {
					ma, err := s.member(a)
					if err != nil {
						return err
					}
					mb, err := s.member(b)
					if err != nil {
						return err
					}
					for k := 0; k < s.Links; k++ {
						rules = append(rules, fmt.Sprintf("    iifname %q oifname %q drop", port(ma, k), port(mb, k)))
					}
				}
			}
		}
	}
	for _, m := range s.Members {
		if m.Loss <= 0 {
			continue
		}
		for k := 0; k < s.Links; k++ {
			for _, dir := range []string{"iifname", "oifname"} {
				rules = append(rules, fmt.Sprintf("    %s %q numgen random mod 100 < %d drop", dir, port(m, k), m.Loss))
			}
		}
	}
	script := "table bridge vlab {}\ndelete table bridge vlab\n"
	if len(rules) > 0 {
		script += "table bridge vlab {\n  chain cut {\n    type filter hook forward priority 0;\n" + strings.Join(rules, "\n") + "\n  }\n}\n"
	}
	_, err := l.outputIn([]byte(script), "ip", "netns", "exec", s.Switch, "nft", "-f", "-")
	return err
}

// SetLink pulls (up=false) or plugs back a member's cable on link k, at the
// switch: the member sees its carrier go.
func (l *Lab) SetLink(name string, k int, up bool) error {
	return l.withMember(name, func(s *State, m *Member) error {
		if k < 0 || k >= s.Links {
			return fmt.Errorf("link %d: this lab has links 0..%d", k, s.Links-1)
		}
		state := "down"
		if up {
			state = "up"
		}
		if err := l.ip(s.Switch, "link", "set", port(m, k), state); err != nil {
			return err
		}
		var down []int
		for _, d := range m.LinksDown {
			if d != k {
				down = append(down, d)
			}
		}
		if !up {
			down = append(down, k)
			sort.Ints(down)
		}
		m.LinksDown = down
		l.logf("%s: link %d %s", m.Name, k, state)
		return nil
	})
}

// Netem sets packet loss (percent, each way, at the switch with nftables)
// and delay (ms, each way, with tc netem on both ends of the member's
// cables); zero for both removes them. Delay needs a kernel with netem
// (CONFIG_NET_SCH_NETEM).
func (l *Lab) Netem(name string, lossPct, delayMS int) error {
	if lossPct < 0 || lossPct > 100 {
		return fmt.Errorf("loss %d%%: give a percentage from 0 to 100", lossPct)
	}
	if delayMS < 0 || delayMS > 10000 {
		return fmt.Errorf("delay %d ms: give 0 to 10000 ms", delayMS)
	}
	return l.withMember(name, func(s *State, m *Member) error {
		if delayMS != m.Delay {
			l.clearNetem(s, m)
			if delayMS > 0 {
				for k := range m.Addrs {
					for _, side := range [][2]string{{m.NS, fmt.Sprintf("eth%d", k)}, {s.Switch, port(m, k)}} {
						out, err := l.output("ip", "netns", "exec", side[0], "tc", "qdisc", "replace", "dev", side[1], "root", "netem", "delay", fmt.Sprintf("%dms", delayMS))
						if err != nil {
							l.clearNetem(s, m)
							if strings.Contains(out+err.Error(), "unknown") {
								return fmt.Errorf("delay: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM); delay is not available here (loss is)")
							}
							return err
						}
					}
				}
			}
			m.Delay = delayMS
		}
		m.Loss = lossPct
		if err := l.syncSwitch(s); err != nil {
			return err
		}
		l.logf("%s: loss %d%%, delay %d ms each way", m.Name, lossPct, delayMS)
		return nil
	})
}

// NetemAvailable reports whether this kernel has the netem qdisc (delay).
func NetemAvailable() bool {
	ns := fmt.Sprintf("vlab-netem-%d", os.Getpid())
	if exec.Command("ip", "netns", "add", ns).Run() != nil {
		return false
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	return exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms").Run() == nil
}

func (l *Lab) clearNetem(s *State, m *Member) {
	if m.Delay == 0 {
		return
	}
	for k := range m.Addrs {
		for _, side := range [][2]string{{m.NS, fmt.Sprintf("eth%d", k)}, {s.Switch, port(m, k)}} {
			l.run("ip", "netns", "exec", side[0], "tc", "qdisc", "del", "dev", side[1], "root")
		}
	}
	m.Delay = 0
}

// Heal undoes every network fault and pause: the partition, pulled cables,
// loss and delay. Powered-off members stay off (use Restart).
func (l *Lab) Heal() error {
	if err := l.HealPartition(); err != nil {
		return err
	}
	s, err := l.State()
	if err != nil {
		return err
	}
	for _, m := range s.Members {
		for _, k := range m.LinksDown {
			if err := l.SetLink(m.Name, k, true); err != nil {
				return err
			}
		}
		if m.Loss != 0 || m.Delay != 0 {
			if err := l.Netem(m.Name, 0, 0); err != nil {
				return err
			}
		}
		if m.Paused {
			if err := l.Resume(m.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// HealAll heals the network and powers on or restarts every member that is
// off or has no agent.
func (l *Lab) HealAll() error {
	if err := l.Heal(); err != nil {
		return err
	}
	s, err := l.State()
	if err != nil {
		return err
	}
	for _, m := range s.Members {
		if !m.On || (s.Mode == ModeVigil && !alive(m.Agent)) {
			if err := l.Restart(m.Name); err != nil {
				return err
			}
		}
	}
	return nil
}
