// Package localcluster runs a cluster of real `vigil agent` processes on
// 127.0.0.1, formed through the real CLI (cluster create, member add, member
// join). `vigil demo` and the multi-process tests use it. It stops only the
// processes it started, by pid, and removes only the directory it made.
package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-cluster/vigil/client"
)

// Options configure a local cluster.
type Options struct {
	// Bin is the vigil binary.
	Bin string
	// Dir holds the members' data dirs; empty means a new temp dir, removed
	// by Close.
	Dir string
	// Members is the number of members to form (at least 1).
	Members int
	// BasePort is the first port; member i uses BasePort+10*i (gossip),
	// +1 (Raft/gRPC) and +5 (API). Zero picks free ports.
	BasePort int
	// Profile is the timing profile (default lan).
	Profile string
	// Log receives the agents' logs (prefixed with the member name).
	Log io.Writer
	// CreateArgs are extra arguments to `vigil cluster create`.
	CreateArgs []string
	// Links is the number of links per member (default 1).
	Links int
}

// Member is one member process.
type Member struct {
	Name    string
	Dir     string
	Address string   // first link
	Links   []string // every link
	API     string
	cmd     *exec.Cmd
	done    chan struct{}
}

// Cluster is a running local cluster.
type Cluster struct {
	opts    Options
	ownDir  bool
	mu      sync.Mutex
	Members []*Member
}

// Start creates and forms the cluster.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Profile == "" {
		o.Profile = "lan"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	c := &Cluster{opts: o}
	if c.opts.Dir == "" {
		d, err := os.MkdirTemp("", "vigil-local-")
		if err != nil {
			return nil, err
		}
		c.opts.Dir, c.ownDir = d, true
	}
	for i := 0; i < o.Members; i++ {
		if _, err := c.Add(ctx, false); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.WaitReady(ctx, i+1); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Dir is the directory holding the data dirs.
func (c *Cluster) Dir() string { return c.opts.Dir }

// portFloor is the lowest port a local cluster takes.
const portFloor = 10000

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < portFloor+1000 {
		return 32768
	}
	return n
}

// ports picks member i's gossip address and API address (i < 0: a further
// link's gossip address, and an API address to ignore). taken holds the
// ports already picked for the member, which are not bound yet: none is
// picked twice (a second link's cluster port once fell on the API port).
func (c *Cluster) ports(i int, taken map[int]bool) (string, string, error) {
	if c.opts.BasePort != 0 && i >= 0 {
		p := c.opts.BasePort + 10*i
		taken[p], taken[p+1], taken[p+5] = true, true, true
		return fmt.Sprintf("127.0.0.1:%d", p), fmt.Sprintf("127.0.0.1:%d", p+5), nil
	}
	// Two adjacent free ports for gossip and Raft, one for the API, below
	// the kernel's range of ephemeral ports: a port from that range, free
	// while a member is down, can become the source port of some outgoing
	// connection, and the member's restart would then fail to bind it.
	hi := ephemeralLow() - 2
	free := func(q int, udp bool) bool {
		tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
		if err != nil {
			return false
		}
		defer tl.Close()
		if udp {
			ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				return false
			}
			ul.Close()
		}
		return true
	}
	for try := 0; try < 200; try++ {
		p := portFloor + rand.IntN(hi-portFloor)
		a := portFloor + rand.IntN(hi-portFloor)
		if a == p || a == p+1 || taken[p] || taken[p+1] || taken[a] || !free(p, true) || !free(p+1, true) || !free(a, false) {
			continue
		}
		taken[p], taken[p+1], taken[a] = true, true, true
		return fmt.Sprintf("127.0.0.1:%d", p), fmt.Sprintf("127.0.0.1:%d", a), nil
	}
	return "", "", fmt.Errorf("no free ports found")
}

// Run runs the vigil CLI with args and returns its combined output.
func (c *Cluster) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.opts.Bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// CLI runs the vigil CLI against member i's data dir (its Unix socket).
func (c *Cluster) CLI(ctx context.Context, i int, args ...string) (string, error) {
	return c.Run(ctx, append([]string{"--data-dir", c.Members[i].Dir}, args...)...)
}

// Add creates (first member) or joins a new member and starts its agent.
func (c *Cluster) Add(ctx context.Context, witness bool, extra ...string) (*Member, error) {
	i := len(c.Members)
	taken := map[int]bool{}
	addr, api, err := c.ports(i, taken)
	if err != nil {
		return nil, err
	}
	m := &Member{Name: fmt.Sprintf("m%d", i+1), Dir: filepath.Join(c.opts.Dir, fmt.Sprintf("m%d", i+1)), Address: addr, API: api, Links: []string{addr}}
	for l := 1; l < c.opts.Links; l++ {
		extra, _, err := c.ports(-1, taken)
		if err != nil {
			return nil, err
		}
		m.Links = append(m.Links, extra)
	}
	var linkArgs []string
	for _, l := range m.Links {
		linkArgs = append(linkArgs, "--address", l)
	}
	if i == 0 {
		args := append([]string{"cluster", "create", "--name", "demo", "--member", m.Name, "--api", api,
			"--data-dir", m.Dir, "--profile", c.opts.Profile}, linkArgs...)
		out, err := c.Run(ctx, append(args, c.opts.CreateArgs...)...)
		if err != nil {
			return nil, fmt.Errorf("cluster create: %v: %s", err, out)
		}
	} else {
		tok, err := c.Token(ctx, m.Name, addr)
		if err != nil {
			return nil, err
		}
		args := append([]string{"member", "join", tok, "--member", m.Name, "--api", api, "--data-dir", m.Dir}, linkArgs...)
		if witness {
			args = append(args, "--witness")
		}
		out, err := c.Run(ctx, append(args, extra...)...)
		if err != nil {
			return nil, fmt.Errorf("member join %s: %v: %s", m.Name, err, out)
		}
	}
	c.mu.Lock()
	c.Members = append(c.Members, m)
	c.mu.Unlock()
	return m, c.StartAgent(i)
}

// Token asks a running member for a join token.
func (c *Cluster) Token(ctx context.Context, name, addr string, extra ...string) (string, error) {
	var lastErr error
	for j, o := range c.Members {
		if !o.Running() {
			continue
		}
		out, err := c.Run(ctx, append([]string{"--data-dir", o.Dir, "member", "add", name, "--address", addr, "--json"}, extra...)...)
		if err != nil {
			lastErr = fmt.Errorf("member add %s on m%d: %v: %s", name, j+1, err, out)
			continue
		}
		i := strings.Index(out, "vigil-join-")
		if i < 0 {
			return "", fmt.Errorf("member add printed no token: %s", out)
		}
		tok := out[i:]
		if k := strings.IndexAny(tok, "\"\n"); k >= 0 {
			tok = tok[:k]
		}
		return tok, nil
	}
	return "", lastErr
}

// StartAgent starts member i's agent process.
func (c *Cluster) StartAgent(i int) error {
	m := c.Members[i]
	cmd := exec.Command(c.opts.Bin, "agent", "--data-dir", m.Dir)
	w := &prefixWriter{w: c.opts.Log, prefix: m.Name + " | "}
	cmd.Stdout, cmd.Stderr = w, w
	// Each agent leads its own session, so a crash can kill every process
	// the member started, daemons of method agents included (a machine's
	// power-off). Pdeathsig: if the demo or test process dies, its agents
	// die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(m.done)
	return nil
}

// Running reports whether the member's agent process runs.
func (m *Member) Running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Pid is the agent's process id, 0 if none.
func (m *Member) Pid() int {
	if !m.Running() {
		return 0
	}
	return m.cmd.Process.Pid
}

// Kill stops member i's agent with SIGKILL (a crash) and waits for it.
func (c *Cluster) Kill(i int) { c.signal(i, syscall.SIGKILL, 0) }

// Stop stops member i's agent with SIGTERM (graceful), SIGKILL after 10 s.
func (c *Cluster) Stop(i int) { c.signal(i, syscall.SIGTERM, 10*time.Second) }

func (c *Cluster) signal(i int, sig syscall.Signal, grace time.Duration) {
	m := c.Members[i]
	if !m.Running() {
		return
	}
	m.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-m.done:
			return
		case <-time.After(grace):
			m.cmd.Process.Kill()
		}
	}
	<-m.done
}

// Client returns an API client for member i over its Unix socket.
func (c *Cluster) Client(i int) *client.Client {
	return client.New(client.Options{Socket: filepath.Join(c.Members[i].Dir, "vigil.sock"), Timeout: 10 * time.Second})
}

// WaitReady waits until member 0..n-1 that run all see every running member
// UP and RUNNING, with a director.
func (c *Cluster) WaitReady(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last string
	for {
		ok := true
		for i := 0; i < n && ok; i++ {
			m := c.Members[i]
			if !m.Running() {
				continue
			}
			cl := c.Client(i)
			st, err := cl.Status(ctx)
			cl.Close()
			if err != nil {
				ok, last = false, err.Error()
				break
			}
			if st.Director == "" || len(st.Members) < n {
				ok, last = false, fmt.Sprintf("%s: director %q, %d members", m.Name, st.Director, len(st.Members))
				break
			}
			for j, row := range st.Members {
				if j >= n {
					break
				}
				want := c.Members[j].Running()
				if want && (row.State != client.MemberUp || row.AgentState != client.AgentRunning) {
					ok, last = false, fmt.Sprintf("%s sees %s %s/%s", m.Name, row.Name, row.State, row.AgentState)
					break
				}
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: %s", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops every agent it started, kills what their services left
// running, and removes its temp dir.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range c.Members {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m := c.Members[i]
			if !m.Running() {
				return
			}
			pid := m.cmd.Process.Pid
			c.Stop(i)
			// A stopped agent leaves its services running (as on a
			// real machine); a test cluster's must not outlive it. They
			// are still in the session the agent led.
			for _, p := range descendants(pid) {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}(i)
	}
	wg.Wait()
	if c.ownDir {
		os.RemoveAll(c.opts.Dir)
	}
}

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// Crash powers member i off: SIGKILL to its agent and to every process of
// its session or descended from it (the services it started, daemons
// included), found through /proc.
func (c *Cluster) Crash(i int) {
	m := c.Members[i]
	if !m.Running() {
		return
	}
	pids := descendants(m.cmd.Process.Pid)
	m.cmd.Process.Kill()
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	<-m.done
}

// descendants lists the processes descended from pid or in the session it
// leads.
func descendants(pid int) []int {
	parent := map[int]int{}
	session := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var p int
		if _, err := fmt.Sscan(e.Name(), &p); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		if j := strings.LastIndexByte(s, ')'); j >= 0 {
			f := strings.Fields(s[j+1:])
			if len(f) > 3 {
				var pp, sid int
				fmt.Sscan(f[1], &pp)
				fmt.Sscan(f[3], &sid)
				parent[p], session[p] = pp, sid
			}
		}
	}
	var out []int
	for p := range parent {
		if p != pid && session[p] == pid {
			out = append(out, p)
			continue
		}
		for q, n := parent[p], 0; q != 0 && n < 64; q, n = parent[q], n+1 {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// Apply applies a service file through member i's CLI.
func (c *Cluster) Apply(ctx context.Context, i int, yamlText string) (string, error) {
	f := filepath.Join(c.opts.Dir, fmt.Sprintf("services-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(yamlText), 0o644); err != nil {
		return "", err
	}
	return c.CLI(ctx, i, "apply", "-f", f)
}

// Pause stops member i's agent with SIGSTOP (a hung agent); its services keep
// running. Resume continues it.
func (c *Cluster) Pause(i int) { c.Members[i].cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused agent.
func (c *Cluster) Resume(i int) { c.Members[i].cmd.Process.Signal(syscall.SIGCONT) }
