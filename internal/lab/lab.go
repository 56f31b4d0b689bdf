// Package lab runs vigil clusters on real hosts made of Linux network
// namespaces: one namespace per member, a client namespace, and a switch
// namespace that holds a bridge per link. It injects faults (power-off,
// agent kill, pause, partition, link down, loss, delay), runs the chaos
// schedule with its checker, and the failover benchmark against keepalived.
//
// Every resource the lab creates is recorded in DIR/lab.json (namespaces,
// pids, addresses) before it is used, so `vigil-lab down` removes exactly
// what `up` made. Processes are stopped by pid, or as "every process in this
// member's namespace" (a power-off); never by name. Addresses come from
// 198.18.0.0/15 and exist only inside the lab's namespaces.
package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Lab addresses: link L is 198.18.L.0/24; member i (from 1) is .10+i. The
// client (.2) and the floating address (.100) are on the public link, the
// last one: with two links, link 0 is the private interconnect and link 1
// the public network, as in TruCluster's and Sun Cluster's set-ups.
const (
	gossipPort = 7000
	apiPort    = 7080
	// HTTPPort is where the web service's backend listens.
	HTTPPort = 80
)

// Modes say what a member runs when it is powered on.
const (
	ModeVigil      = "vigil"
	ModeKeepalived = "keepalived"
)

// State is the lab as recorded in DIR/lab.json.
type State struct {
	Dir     string    `json:"dir"`
	ID      string    `json:"id"`
	Created bool      `json:"created"` // up created Dir, so down removes it
	Vigil   string    `json:"vigil"`   // the vigil binary
	LabBin  string    `json:"lab_bin"` // the vigil-lab binary (httpd, writer, fence agent)
	Profile string    `json:"profile"`
	Links   int       `json:"links"`
	Mode    string    `json:"mode"`
	Fencing bool      `json:"fencing"`
	Switch  string    `json:"switch"` // the namespace holding the bridges
	Client  string    `json:"client"` // the client namespace
	NS      []string  `json:"namespaces"`
	Members []*Member `json:"members"`
	// Partition holds the groups of the current partition, if any.
	Partition [][]string `json:"partition,omitempty"`
	Started   time.Time  `json:"started"`
}

// Member is one lab host.
type Member struct {
	Name  string   `json:"name"`
	NS    string   `json:"namespace"`
	Addrs []string `json:"addresses"` // per link
	Data  string   `json:"data_dir"`
	Home  string   `json:"home"` // DIR/mN: logs, pid files, keepalived config
	// On is the power state; Paused means every process is stopped.
	On        bool  `json:"on"`
	Paused    bool  `json:"paused,omitempty"`
	Agent     int   `json:"agent_pid,omitempty"`
	Daemons   []int `json:"daemon_pids,omitempty"` // keepalived mode: keepalived, httpd
	Loss      int   `json:"loss,omitempty"`
	Delay     int   `json:"delay_ms,omitempty"`
	LinksDown []int `json:"links_down,omitempty"`
}

// API is the member's API address.
func (m *Member) API() string { return fmt.Sprintf("%s:%d", m.Addrs[0], apiPort) }

// Socket is the member agent's Unix socket (reachable from the host).
func (m *Member) Socket() string { return filepath.Join(m.Data, "vigil.sock") }

// Lab is a handle on a lab directory. Every operation reads and writes the
// state under an exclusive lock on DIR/lab.lock, so the CLI, the chaos driver
// and the fence agent (run by vigil itself) can act on one lab at once.
type Lab struct {
	Dir string
	// Log receives one line per action; nil discards.
	Log io.Writer
	// Verbose also logs every command run.
	Verbose bool
}

// Open returns a handle on the lab in dir, which must be up.
func Open(dir string) (*Lab, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(abs, "lab.json")); err != nil {
		return nil, fmt.Errorf("no lab is up in %s (no lab.json): start one with vigil-lab up --dir %s", abs, abs)
	}
	return &Lab{Dir: abs}, nil
}

func (l *Lab) logf(format string, args ...any) {
	if l.Log != nil {
		fmt.Fprintf(l.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// State returns a copy of the recorded state.
func (l *Lab) State() (*State, error) {
	var out *State
	err := l.update(func(s *State) error { out = s; return errSkipWrite })
	return out, err
}

var errSkipWrite = errors.New("no change")

// update runs fn on the state under the lab lock and writes the state back
// unless fn returns an error (errSkipWrite: no error, nothing written).
func (l *Lab) update(fn func(*State) error) error {
	lf, err := os.OpenFile(filepath.Join(l.Dir, "lab.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	defer unix.Flock(int(lf.Fd()), unix.LOCK_UN)
	b, err := os.ReadFile(filepath.Join(l.Dir, "lab.json"))
	if err != nil {
		return fmt.Errorf("reading the lab state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("lab state %s is damaged: %v", filepath.Join(l.Dir, "lab.json"), err)
	}
	if err := fn(&s); err != nil {
		if err == errSkipWrite {
			return nil
		}
		// Partial work is recorded too, so down can undo it.
		l.save(&s)
		return err
	}
	return l.save(&s)
}

func (l *Lab) save(s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, "lab.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.Dir, "lab.json"))
}

// Public is the link the client and the floating address are on.
func (s *State) Public() int { return s.Links - 1 }

// Floating is the web service's floating address.
func (s *State) Floating() string { return fmt.Sprintf("198.18.%d.100", s.Public()) }

func (s *State) clientAddr() string { return fmt.Sprintf("198.18.%d.2", s.Public()) }

// URL is the web service's address as the client asks it.
func (s *State) URL() string { return fmt.Sprintf("http://%s:%d/", s.Floating(), HTTPPort) }

// member finds a member by name.
func (s *State) member(name string) (*Member, error) {
	for _, m := range s.Members {
		if m.Name == name {
			return m, nil
		}
	}
	names := make([]string, len(s.Members))
	for i, m := range s.Members {
		names[i] = m.Name
	}
	return nil, fmt.Errorf("no member %q in this lab; members: %s", name, strings.Join(names, ", "))
}

// withMember runs fn on the state and the named member under the lab lock.
func (l *Lab) withMember(name string, fn func(*State, *Member) error) error {
	return l.update(func(s *State) error {
		m, err := s.member(name)
		if err != nil {
			return err
		}
		return fn(s, m)
	})
}

// live lists the members whose agent runs and is not paused.
func (s *State) live() []*Member {
	var out []*Member
	for _, m := range s.Members {
		if alive(m.Agent) && !m.Paused {
			out = append(out, m)
		}
	}
	return out
}

// Member returns a copy of the named member.
func (l *Lab) Member(name string) (*Member, error) {
	s, err := l.State()
	if err != nil {
		return nil, err
	}
	return s.member(name)
}

// labID names a lab's namespaces after its directory, so two labs in two
// directories do not collide.
func labID(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return fmt.Sprintf("vl%x", h[:2])
}

// run runs a command and returns its error with its output.
func (l *Lab) run(name string, args ...string) error {
	_, err := l.output(name, args...)
	return err
}

func (l *Lab) output(name string, args ...string) (string, error) {
	return l.outputIn(nil, name, args...)
}

func (l *Lab) outputIn(stdin []byte, name string, args ...string) (string, error) {
	if l.Verbose {
		l.logf("$ %s %s", name, strings.Join(args, " "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// ip runs `ip -n NS ARGS`.
func (l *Lab) ip(ns string, args ...string) error {
	return l.run("ip", append([]string{"-n", ns}, args...)...)
}

// nsPids lists every process whose network namespace is ns.
func nsPids(ns string) []int {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join("/run/netns", ns), &want); err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	self := os.Getpid()
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join("/proc", e.Name(), "ns/net"), &st); err != nil {
			continue
		}
		if st.Ino == want.Ino && st.Dev == want.Dev {
			out = append(out, pid)
		}
	}
	return out
}

// killNS sends sig to every process in ns; with SIGKILL it repeats until none
// is left (a process may fork while it is being killed).
func killNS(ns string, sig syscall.Signal) int {
	n := 0
	for try := 0; try < 50; try++ {
		pids := nsPids(ns)
		if len(pids) == 0 {
			return n
		}
		for _, p := range pids {
			if syscall.Kill(p, sig) == nil {
				n++
			}
		}
		if sig != syscall.SIGKILL {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// CheckRoot says why the lab cannot run here, or nil.
func CheckRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, veth, bridges, tc)")
	}
	for _, tool := range []string{"ip", "nft", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the lab needs %s: install iproute2 and nftables", tool)
		}
	}
	return nil
}
