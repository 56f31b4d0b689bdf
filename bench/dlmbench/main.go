// Command dlmbench is vigil's side of the DLM comparison with etcd
// (bench/dlm-vs-etcd.sh): it forms a local 3-member vigil cluster from a
// vigil binary, then runs workers that each loop lock+unlock (EX) on their
// own resource through member m1's lock manager socket, as bench/etcdmutex
// does against etcd, and prints one JSON line.
//
//	go run ./bench/dlmbench --vigil bin/vigil --workers 4 --duration 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/dlmclient"
	"github.com/vigil-cluster/vigil/internal/agent"
	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
	"github.com/vigil-cluster/vigil/internal/dlm/socket"
	"github.com/vigil-cluster/vigil/internal/localcluster"
)

// spin is --spin: the clients' dlmclient.Spin; shared is --shared;
// posted is --posted; raw is --raw.
var (
	spin   time.Duration
	shared bool
	posted bool
	raw    bool
)

// dial opens a session on the socket at sock with the flags' options.
func dial(ctx context.Context, sock string) (*dlmclient.Client, error) {
	opts := []dlmclient.DialOption{dlmclient.Spin(spin)}
	if posted {
		opts = append(opts, dlmclient.PostUnlocks())
	}
	if raw {
		opts = append(opts, dlmclient.NoRings())
	}
	return dlmclient.Dial(ctx, sock, opts...)
}

type result struct {
	System      string  `json:"system"`
	Workers     int     `json:"workers"`
	Shared      bool    `json:"shared,omitempty"`
	Contended   bool    `json:"contended"`
	Pairs       int     `json:"pairs"`
	Seconds     float64 `json:"seconds"`
	PairsPerSec float64 `json:"pairs_per_sec"`
	P50us       float64 `json:"p50_us"`
	P90us       float64 `json:"p90_us,omitempty"`
	P99us       float64 `json:"p99_us"`
	Members     int     `json:"members"`
	Sessions    string  `json:"sessions"`
}

func main() {
	bin := flag.String("vigil", "bin/vigil", "the vigil binary")
	workers := flag.Int("workers", 4, "concurrent workers, each with its own session and resource")
	contended := flag.Bool("contended", false, "every worker locks the same resource")
	local := flag.Bool("local", false, "pick each worker's resource among those m1 masters (no network on the lock path), instead of spreading them over the masters")
	duration := flag.Duration("duration", 10*time.Second, "how long to measure")
	warmup := flag.Duration("warmup", 2*time.Second, "how long to run before measuring")
	members := flag.Int("members", 3, "cluster members")
	sock := flag.String("socket", "", "instead of forming a cluster: measure lock latency through this lock manager socket of a running cluster (with --view and --self)")
	view := flag.String("view", "", "with --socket: the lock manager view's members, comma-separated")
	self := flag.String("self", "", "with --socket: the member whose socket it is")
	count := flag.Int("n", 2000, "with --socket: locks per kind of master")
	inAgent := flag.Bool("in-agent", false, "time sessions in m1's agent process (vigil locks probe: the Go package, no socket) instead of clients on its socket; --n locks per worker and master")
	hold := flag.Int("hold", 0, "instead of the throughput run: take this many EX locks on distinct resources through m1's socket, hold them, and report each agent's resident memory")
	flag.BoolVar(&posted, "posted", false, "the clients post their unlocks (dlmclient.PostUnlocks: one round trip a pair)")
	flag.BoolVar(&raw, "raw", false, "the clients' frames go through the socket (dlmclient.NoRings: the raw protocol) instead of the rings in memory they share with the agent")
	flag.BoolVar(&shared, "shared", false, "the workers share one session (each still locks its own resource); without it each has its own")
	flag.DurationVar(&spin, "spin", socket.SpinDue, "how long each session's reader polls the socket while it waits (dlmclient.Spin; 0: never)")
	fixed := flag.Bool("fixed", false, "use lockspace \"fixed.bench\" (in-agent: \"fixed.vigil-probe\"), whose resources stay on their hash masters, instead of a lockspace whose resources move to the member that uses them")
	flag.Parse()
	if *fixed {
		benchLS = cluster.FixedPrefix + "bench"
	}
	if *workers < 1 || *members < 1 || *duration <= 0 {
		fmt.Fprintln(os.Stderr, "dlmbench: --workers, --members and --duration must be positive")
		os.Exit(2)
	}
	if *sock != "" {
		if err := latency(*sock, strings.Split(*view, ","), *self, *count); err != nil {
			fmt.Fprintln(os.Stderr, "dlmbench:", err)
			os.Exit(1)
		}
		return
	}
	if *hold > 0 {
		if err := holdMany(*bin, *workers, *members, *hold); err != nil {
			fmt.Fprintln(os.Stderr, "dlmbench:", err)
			os.Exit(1)
		}
		return
	}
	if *inAgent {
		if err := probe(*bin, *workers, *members, *local, !*fixed, *count); err != nil {
			fmt.Fprintln(os.Stderr, "dlmbench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*bin, *workers, *members, *contended, *local, *duration, *warmup); err != nil {
		fmt.Fprintln(os.Stderr, "dlmbench:", err)
		os.Exit(1)
	}
}

// benchLS is the lockspace of the throughput run: resources move to the
// member that uses them, unless --fixed.
var benchLS = "default"

func run(bin string, workers, members int, contended, local bool, duration, warmup time.Duration) error {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("vigil binary %s: %w (run `make build` first)", bin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+duration+warmup)
	defer cancel()
	fmt.Fprintf(os.Stderr, "dlmbench: forming a %d-member vigil cluster\n", members)
	lc, err := localcluster.Start(ctx, localcluster.Options{Bin: abs, Members: members, Log: io.Discard})
	if err != nil {
		return err
	}
	defer lc.Close()
	sock := filepath.Join(lc.Members[0].Dir, agent.DLMSocketFile)
	var clients []*dlmclient.Client
	for i := range workers {
		if shared && i > 0 {
			clients = append(clients, clients[0])
			continue
		}
		c, err := dial(ctx, sock)
		if err != nil {
			return err
		}
		defer c.Close()
		clients = append(clients, c)
	}
	// Wait until every member is in the lock manager's view: a lock on each
	// worker's resource succeeds (they are spread over the masters).
	var view []string
	for _, m := range lc.Members {
		view = append(view, m.Name)
	}
	slices.Sort(view)
	var names []string
	for i := 0; len(names) < workers; i++ {
		n := fmt.Sprintf("bench-%d", i)
		if !local || cluster.Master(cluster.View{Number: 1, Members: view}, benchLS, n) == lc.Members[0].Name {
			names = append(names, n)
		}
	}
	name := func(i int) string {
		if contended {
			return names[0]
		}
		return names[i]
	}
	deadline := time.Now().Add(time.Minute)
	for i, c := range clients {
		for {
			l, err := c.Lock(ctx, name(i), dlmclient.EX, dlmclient.Lockspace(benchLS))
			if err == nil {
				l.Unlock(ctx)
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the lock manager did not grant within a minute: %w", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second) // let the last members join the view
	fmt.Fprintf(os.Stderr, "dlmbench: %d workers, %v warm-up, %v measured\n", workers, warmup, duration)
	var (
		mu      sync.Mutex
		lat     []time.Duration
		measure = time.Now().Add(warmup)
		stop    = measure.Add(duration)
		wg      sync.WaitGroup
		failed  error
	)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				t0 := time.Now()
				if t0.After(stop) {
					break
				}
				l, err := c.Lock(ctx, name(i), dlmclient.EX, dlmclient.Lockspace(benchLS))
				if err == nil {
					err = l.Unlock(ctx)
				}
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				if t0.After(measure) {
					mine = append(mine, time.Since(t0))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if failed != nil {
		return failed
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*p)]) / float64(time.Microsecond)
	}
	r := result{System: "vigil", Workers: workers, Shared: shared, Contended: contended, Pairs: len(lat), Seconds: duration.Seconds(),
		PairsPerSec: float64(len(lat)) / duration.Seconds(), P50us: pct(0.5), P90us: pct(0.9), P99us: pct(0.99), Members: members,
		Sessions: "one per worker on " + lc.Members[0].Name + "'s socket; resources whose hash masters are spread over the members, in lockspace " + benchLS}
	if local {
		r.Sessions = "one per worker on " + lc.Members[0].Name + "'s socket; resources whose hash master is " + lc.Members[0].Name + ", in lockspace " + benchLS
	}
	if shared {
		r.Sessions = "one shared by the workers" + r.Sessions[len("one per worker"):]
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// holdMany takes n locks on distinct resources through m1's socket with
// workers sessions (each keeping up to 256 requests in flight), holds them,
// and prints each agent's resident memory as one JSON line.
func holdMany(bin string, workers, members, n int) error {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	fmt.Fprintf(os.Stderr, "dlmbench: forming a %d-member vigil cluster\n", members)
	lc, err := localcluster.Start(ctx, localcluster.Options{Bin: abs, Members: members, Log: io.Discard})
	if err != nil {
		return err
	}
	defer lc.Close()
	before := agentsRSS(lc)
	sock := filepath.Join(lc.Members[0].Dir, agent.DLMSocketFile)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var clients []*dlmclient.Client
	for w := range workers {
		c, err := dial(ctx, sock)
		if err != nil {
			return err
		}
		clients = append(clients, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inflight []*dlmclient.Pending
			flush := func() error {
				for _, p := range inflight {
					if _, err := p.Wait(ctx); err != nil {
						return err
					}
				}
				inflight = inflight[:0]
				return nil
			}
			for i := w; i < n; i += workers {
				for {
					p, err := c.LockAsync(fmt.Sprintf("hold-%d", i), dlmclient.EX)
					if err == nil {
						inflight = append(inflight, p)
						break
					}
					time.Sleep(50 * time.Millisecond) // the view may still be rebuilding
				}
				if len(inflight) == 256 {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := flush(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	took := time.Since(start)
	time.Sleep(5 * time.Second) // let the collectors settle
	after := agentsRSS(lc)
	out := map[string]any{"system": "vigil", "locks_held": n, "members": members, "sessions": workers,
		"seconds_to_take": took.Seconds(), "rss_mib_before": before, "rss_mib_holding": after}
	runtime.KeepAlive(clients)
	return json.NewEncoder(os.Stdout).Encode(out)
}

// agentsRSS is each agent's resident memory in MiB.
func agentsRSS(lc *localcluster.Cluster) map[string]float64 {
	out := map[string]float64{}
	for _, m := range lc.Members {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.Pid()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				out[m.Name] = kb / 1024
			}
		}
	}
	return out
}

// latLockspace is fixed: its resources stay on their hash masters, so that
// a remote master's latency is measured (in other lockspaces a resource
// moves to the member that uses it).
const latLockspace = cluster.FixedPrefix + "bench"

// latency measures Lock (EX, then an unlock not timed) through sock on
// resources mastered by self and by each other member of view, and prints
// one JSON line with the percentiles in microseconds.
func latency(sock string, view []string, self string, n int) error {
	slices.Sort(view)
	if !slices.Contains(view, self) {
		return fmt.Errorf("--self %q is not in --view %v", self, view)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := dial(ctx, sock)
	if err != nil {
		return err
	}
	defer c.Close()
	v := cluster.View{Number: 1, Members: view}
	out := map[string]any{"system": "vigil", "self": self, "view": view, "locks_per_master": n}
	for _, m := range view {
		var names []string
		for i := 0; len(names) < 64; i++ {
			name := fmt.Sprintf("lat-%d", i)
			if cluster.Master(v, latLockspace, name) == m {
				names = append(names, name)
			}
		}
		var lat []time.Duration
		for i := range n + n/10 {
			t0 := time.Now()
			l, err := c.Lock(ctx, names[i%len(names)], dlmclient.EX, dlmclient.Lockspace(latLockspace))
			d := time.Since(t0)
			if err != nil {
				return fmt.Errorf("lock on a resource of %s: %w", m, err)
			}
			if i >= n/10 { // the first tenth warms up
				lat = append(lat, d)
			}
			if err := l.Unlock(ctx); err != nil {
				return err
			}
		}
		slices.Sort(lat)
		us := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)]) / float64(time.Microsecond) }
		kind := "remote_" + m
		if m == self {
			kind = "local"
		}
		out[kind] = map[string]float64{"p50_us": us(0.5), "p90_us": us(0.9), "p99_us": us(0.99)}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// probe forms a cluster and runs `vigil locks probe` on m1: workers
// sessions in m1's agent process, n locks each on resources of m1 (local)
// or of every member in turn. Pairs per second over all masters: all the
// locks over the time they took.
func probe(bin string, workers, members int, local, handoff bool, n int) error {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fmt.Fprintf(os.Stderr, "dlmbench: forming a %d-member vigil cluster\n", members)
	lc, err := localcluster.Start(ctx, localcluster.Options{Bin: abs, Members: members, Log: io.Discard})
	if err != nil {
		return err
	}
	defer lc.Close()
	cl := lc.Client(0)
	req := client.LockProbeRequest{N: n, Workers: workers, Handoff: handoff}
	if local {
		req.Masters = []string{lc.Members[0].Name}
	}
	// Every member in the view first: a short probe succeeds on each.
	deadline := time.Now().Add(time.Minute)
	for {
		ps, err := cl.ProbeLocks(ctx, client.LockProbeRequest{N: 10})
		if err == nil && len(ps) == members && ps[0].Error == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lock manager's view did not take every member within a minute: %v %v", ps, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "dlmbench: in m1's agent: %d workers, %d locks each per master\n", workers, n)
	// One master per request: each answers within the API client's
	// timeout.
	masters := req.Masters
	if len(masters) == 0 {
		for _, m := range lc.Members {
			masters = append(masters, m.Name)
		}
	}
	var ps []client.LockProbe
	for _, m := range masters {
		req.Masters = []string{m}
		p, err := cl.ProbeLocks(ctx, req)
		if err != nil {
			return fmt.Errorf("probe of %s: %w", m, err)
		}
		ps = append(ps, p...)
	}
	var locks, secs float64
	var p50 []float64
	for _, p := range ps {
		if p.Error != "" {
			return fmt.Errorf("probe of %s: %s", p.Master, p.Error)
		}
		locks += float64(p.Locks)
		secs += float64(p.Locks) / p.PairsPerSec
		p50 = append(p50, p.P50US)
	}
	r := result{System: "vigil", Workers: workers, Pairs: int(locks), Seconds: secs, PairsPerSec: locks / secs, P50us: slices.Max(p50), Members: members,
		Sessions: "one per worker in " + lc.Members[0].Name + "'s agent (Go package); resources whose hash masters are spread over the members"}
	if local {
		r.Sessions = "one per worker in " + lc.Members[0].Name + "'s agent (Go package); resources whose hash master is " + lc.Members[0].Name
	}
	if handoff {
		r.Sessions += ", moving to where they are used"
	} else {
		r.Sessions += ", staying there (fixed lockspace)"
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
