package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm/socket"
	"github.com/vigil-cluster/vigil/internal/lab/check"
)

// DLMLoadOptions configure the lock manager's workload.
type DLMLoadOptions struct {
	// Workers per member (default 2). Every second worker ignores lost
	// notifications (DLMWorkerOptions.IgnoreLost), so that the store's
	// fencing has stale holders to refuse.
	Workers int
	// Resources to lock (default r1, r2, r3).
	Resources []string
	// Seed seeds the workers' choices (each worker its own stream).
	Seed int64
	// Worker, when set, adjusts each worker's options before it starts.
	Worker func(member string, i int, o *DLMWorkerOptions)
}

// DLMLoad runs the lock manager's workload: the lock store in the client
// namespace (vigil-lab lockstore) and lock workers (vigil-lab dlmworker) in
// the members' namespaces. A member's workers die with it when it is
// powered off; its supervisor goroutine starts them again once the member
// is on. Each worker process logs to a file of its own in Dir.
type DLMLoad struct {
	Dir   string // DIR/chaos/dlm: the store's and the workers' logs
	URL   string // the store, as the workers reach it
	l     *Lab
	o     DLMLoadOptions
	store *exec.Cmd
	done  chan struct{} // closed when the store exits
	stop  context.CancelFunc
	super sync.WaitGroup // the supervisor
	once  sync.Once      // Stop

	mu      sync.Mutex
	procs   map[string]*dlmProc // guarded by mu: the current process per worker slot ("m1/w1")
	started int                 // guarded by mu: worker processes started
}

type dlmProc struct {
	pid  int
	done chan struct{} // closed when it exits
}

func (p *dlmProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// StartDLMLoad starts the lock store, then the workers of every powered-on
// member, and keeps them running.
func (l *Lab) StartDLMLoad(ctx context.Context, o DLMLoadOptions) (*DLMLoad, error) {
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if len(o.Resources) == 0 {
		o.Resources = []string{"r1", "r2", "r3"}
	}
	s, err := l.State()
	if err != nil {
		return nil, err
	}
	d := &DLMLoad{Dir: filepath.Join(s.Dir, "chaos", "dlm"), l: l, o: o, procs: map[string]*dlmProc{}, done: make(chan struct{})}
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("%s:%d", s.clientAddr(), LockStorePort)
	d.URL = "http://" + listen
	cmd, err := l.Command(context.Background(), "client", s.LabBin, "lockstore", "--listen", listen, "--log", filepath.Join(d.Dir, "store.log"))
	if err != nil {
		return nil, err
	}
	errf, err := os.OpenFile(filepath.Join(d.Dir, "store.err"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer errf.Close()
	cmd.Stderr = errf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the lock store: %v", err)
	}
	d.store = cmd
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && strings.HasPrefix(sc.Text(), "listening")
		ready <- ok
		for sc.Scan() {
		}
		cmd.Wait()
		close(d.done)
	}()
	select {
	case ok := <-ready:
		if !ok {
			<-d.done
			b, _ := os.ReadFile(filepath.Join(d.Dir, "store.err"))
			return nil, fmt.Errorf("the lock store did not start: %s", strings.TrimSpace(string(b)))
		}
	case <-time.After(10 * time.Second):
		d.killStore()
		return nil, errors.New("the lock store did not start within 10 s")
	}
	l.logf("dlm: lock store on %s", d.URL)

	sctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	d.super.Add(1)
	go func() {
		defer d.super.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			d.ensure()
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return d, nil
}

// ensure starts the missing workers of every powered-on member. It starts
// them under the lab lock, so a power-off cannot come between the check
// and the start.
func (d *DLMLoad) ensure() {
	d.l.update(func(s *State) error {
		for _, m := range s.Members {
			if !m.On {
				continue
			}
			for i := 1; i <= d.o.Workers; i++ {
				slot := fmt.Sprintf("%s/w%d", m.Name, i)
				d.mu.Lock()
				p := d.procs[slot]
				d.mu.Unlock()
				if p != nil && !p.exited() {
					continue
				}
				if err := d.startWorker(s, m, i); err != nil {
					d.l.logf("dlm: starting worker %s: %v", slot, err)
				}
			}
		}
		return errSkipWrite
	})
}

func (d *DLMLoad) startWorker(s *State, m *Member, i int) error {
	d.mu.Lock()
	d.started++
	n := d.started
	d.mu.Unlock()
	slot := fmt.Sprintf("%s/w%d", m.Name, i)
	client := fmt.Sprintf("%s.%d", slot, n)
	h := fnv.New64a()
	h.Write([]byte(client))
	o := DLMWorkerOptions{Socket: filepath.Join(m.Data, socket.File), Store: d.URL, Member: m.Name, Client: client,
		Resources: d.o.Resources, IgnoreLost: i%2 == 0, Seed: uint64(d.o.Seed) ^ h.Sum64(),
		Log: filepath.Join(d.Dir, fmt.Sprintf("%s-w%d.%d.log", m.Name, i, n))}
	if d.o.Worker != nil {
		d.o.Worker(m.Name, i, &o)
	}
	args := append([]string{"netns", "exec", m.NS, s.LabBin}, o.Args()...)
	cmd := exec.Command("ip", args...)
	errf, err := os.OpenFile(filepath.Join(m.Home, fmt.Sprintf("dlmworker-w%d.err", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer errf.Close()
	cmd.Stdout, cmd.Stderr = errf, errf
	cmd.Env = append(os.Environ(), "VIGIL_MEMBER="+m.Name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &dlmProc{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	d.mu.Lock()
	d.procs[slot] = p
	d.mu.Unlock()
	d.l.logf("dlm: %s started (pid %d)", client, p.pid)
	return nil
}

// Args are the worker's command line (vigil-lab ARGS).
func (o *DLMWorkerOptions) Args() []string {
	a := []string{"dlmworker", "--socket", o.Socket, "--store", o.Store, "--member", o.Member, "--client", o.Client,
		"--resources", strings.Join(o.Resources, ","), "--log", o.Log, "--seed", strconv.FormatUint(o.Seed, 10)}
	if len(o.Modes) > 0 {
		a = append(a, "--modes", strings.Join(o.Modes, ","))
	}
	if o.MinOps > 0 {
		a = append(a, "--ops-min", strconv.Itoa(o.MinOps))
	}
	if o.MaxOps > 0 {
		a = append(a, "--ops", strconv.Itoa(o.MaxOps))
	}
	if o.GapMin > 0 || o.GapMax > 0 {
		a = append(a, "--gap-min", o.GapMin.String(), "--gap-max", o.GapMax.String())
	}
	if o.Timeout > 0 {
		a = append(a, "--timeout", o.Timeout.String())
	}
	if o.IgnoreLost {
		a = append(a, "--ignore-lost")
	}
	return a
}

// StopWorkers stops restarting workers and asks every worker to stop
// (SIGTERM: it unlocks what it holds, logs and exits). A paused worker
// stops once it is resumed.
func (d *DLMLoad) StopWorkers() {
	d.stop()
	d.super.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.procs {
		if !p.exited() {
			syscall.Kill(p.pid, syscall.SIGTERM)
		}
	}
}

// Stop stops the workers (SIGKILL for those still running after wait)
// and then the store. Only the first call does anything.
func (d *DLMLoad) Stop(wait time.Duration) {
	d.once.Do(func() { d.stopAll(wait) })
}

func (d *DLMLoad) stopAll(wait time.Duration) {
	d.StopWorkers()
	deadline := time.After(wait)
	d.mu.Lock()
	procs := make([]*dlmProc, 0, len(d.procs))
	for _, p := range d.procs {
		procs = append(procs, p)
	}
	d.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			syscall.Kill(p.pid, syscall.SIGKILL)
			<-p.done
		}
	}
	d.killStore()
}

func (d *DLMLoad) killStore() {
	if d.store == nil || d.store.Process == nil {
		return
	}
	d.store.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.store.Process.Kill()
		<-d.done
	}
}

// Started is how many worker processes were started.
func (d *DLMLoad) Started() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.started
}

// Read parses the workers' and the store's logs. Malformed lines come back
// in bad, as "FILE: line N: ...".
func (d *DLMLoad) Read() (evs []check.DLMEvent, ops []check.DLMOp, bad []string, err error) {
	files, err := filepath.Glob(filepath.Join(d.Dir, "*-w*.log"))
	if err != nil {
		return nil, nil, nil, err
	}
	sort.Strings(files)
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, nil, err
		}
		e, b, err := check.ParseDLMEvents(f)
		f.Close()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %v", name, err)
		}
		evs = append(evs, e...)
		for _, x := range b {
			bad = append(bad, filepath.Base(name)+": "+x)
		}
	}
	f, err := os.Open(filepath.Join(d.Dir, "store.log"))
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	ops, b, err := check.ParseDLMOps(f)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("store.log: %v", err)
	}
	for _, x := range b {
		bad = append(bad, "store.log: "+x)
	}
	return evs, ops, bad, nil
}

// WaitGrants waits until a worker on each of members was granted a lock
// after the mono time `after`, and says which members were not, with their
// workers' last complaint.
func (d *DLMLoad) WaitGrants(ctx context.Context, members []string, after int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		evs, _, _, err := d.Read()
		if err != nil {
			return err
		}
		granted := map[string]bool{}
		last := map[string]string{}
		for _, e := range evs {
			switch {
			case e.Mono <= after:
			case e.Event == check.DLMGrant:
				granted[e.Member] = true
			case e.Err != "" && e.Event != check.DLMOpDone:
				last[e.Member] = e.Event + ": " + e.Err
			}
		}
		var missing []string
		for _, m := range members {
			if !granted[m] {
				why := last[m]
				if why == "" {
					why = "no error"
				}
				missing = append(missing, fmt.Sprintf("%s (last: %s)", m, why))
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no lock granted within %s on %s", timeout, strings.Join(missing, "; "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Check reads the logs and checks them (check.CheckDLM); malformed lines
// are violations too.
func (d *DLMLoad) Check() (*check.DLMReport, error) {
	evs, ops, bad, err := d.Read()
	if err != nil {
		return nil, err
	}
	rep := check.CheckDLM(evs, ops)
	for _, b := range bad {
		rep.Violations = append(rep.Violations, "malformed log line: "+b)
	}
	return rep, nil
}
