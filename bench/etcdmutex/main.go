// Command etcdmutex measures the lock+unlock throughput of etcd's
// concurrency.Mutex, the etcd side of the vigil DLM comparison.
//
// Each of --workers goroutines has its own client connection, its own
// concurrency.Session and (unless --contended) its own key, and loops
// Lock(ctx)+Unlock(ctx) for --duration after a --warmup. One JSON line goes
// to stdout:
//
//	{"system":"etcd","workers":N,"pairs":P,"seconds":S,"pairs_per_sec":R,"p50_us":..,"p99_us":..,...}
//
// where a pair is one Lock followed by one Unlock and the latencies are of
// whole pairs. Errors go to stderr and the exit status is non-zero.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

type config struct {
	endpoints   []string
	workers     int
	keyPrefix   string
	contended   bool
	duration    time.Duration
	warmup      time.Duration
	sessionTTL  int
	shared      bool
	dialTimeout time.Duration
	opTimeout   time.Duration
}

type result struct {
	System        string  `json:"system"`
	Workers       int     `json:"workers"`
	Shared        bool    `json:"shared,omitempty"`
	Contended     bool    `json:"contended"`
	Pairs         int     `json:"pairs"`
	Seconds       float64 `json:"seconds"`
	PairsPerSec   float64 `json:"pairs_per_sec"`
	P50us         float64 `json:"p50_us"`
	P99us         float64 `json:"p99_us"`
	Members       int     `json:"members"`
	ServerVersion string  `json:"server_version"`
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdmutex: %v\n", err)
		os.Exit(2)
	}
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdmutex: %v\n", err)
		os.Exit(1)
	}
	line, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdmutex: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(line))
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("etcdmutex", flag.ContinueOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "comma-separated etcd client endpoints")
	var cfg config
	fs.IntVar(&cfg.workers, "workers", 4, "number of concurrent workers, each with its own client and session")
	fs.StringVar(&cfg.keyPrefix, "key-prefix", "/vigil-bench/etcdmutex/", "prefix of the lock keys (worker i locks PREFIX+i unless --contended)")
	fs.BoolVar(&cfg.contended, "contended", false, "all workers lock the same key (PREFIX+\"shared\")")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured run time")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured warm-up before the measured run")
	fs.BoolVar(&cfg.shared, "shared", false, "all workers share one client and one session (each still locks its own key with its own Mutex)")
	fs.IntVar(&cfg.sessionTTL, "session-ttl", 30, "TTL in seconds of each worker's session lease")
	fs.DurationVar(&cfg.dialTimeout, "dial-timeout", 5*time.Second, "time allowed to reach the cluster")
	fs.DurationVar(&cfg.opTimeout, "op-timeout", 30*time.Second, "time allowed for one Lock or Unlock")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for _, ep := range strings.Split(*endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			cfg.endpoints = append(cfg.endpoints, ep)
		}
	}
	switch {
	case len(cfg.endpoints) == 0:
		return cfg, errors.New("--endpoints is empty")
	case cfg.workers < 1:
		return cfg, fmt.Errorf("--workers must be at least 1, got %d", cfg.workers)
	case cfg.duration <= 0:
		return cfg, fmt.Errorf("--duration must be positive, got %v", cfg.duration)
	case cfg.warmup < 0:
		return cfg, fmt.Errorf("--warmup must not be negative, got %v", cfg.warmup)
	case cfg.sessionTTL < 1:
		return cfg, fmt.Errorf("--session-ttl must be at least 1, got %d", cfg.sessionTTL)
	case cfg.keyPrefix == "":
		return cfg, errors.New("--key-prefix is empty")
	}
	return cfg, nil
}

// worker is one client, one session and one mutex (with --shared, the
// client and session are worker 0's).
type worker struct {
	cli    *clientv3.Client
	sess   *concurrency.Session
	shared bool
	mu     *concurrency.Mutex
	lat    []time.Duration
}

func run(cfg config) (*result, error) {
	res := &result{System: "etcd", Workers: cfg.workers, Shared: cfg.shared, Contended: cfg.contended}
	members, version, err := probe(cfg)
	if err != nil {
		return nil, err
	}
	res.Members, res.ServerVersion = members, version

	workers := make([]*worker, cfg.workers)
	defer func() {
		for _, w := range workers {
			if w == nil {
				continue
			}
			if w.shared {
				continue // worker 0 closes them
			}
			if w.sess != nil {
				w.sess.Close() // revokes the lease, deleting any key left behind
			}
			w.cli.Close()
		}
	}()
	for i := range workers {
		if cfg.shared && i > 0 {
			workers[i] = &worker{cli: workers[0].cli, sess: workers[0].sess, shared: true}
		} else {
			cli, err := newClient(cfg)
			if err != nil {
				return nil, err
			}
			workers[i] = &worker{cli: cli}
			sess, err := concurrency.NewSession(cli, concurrency.WithTTL(cfg.sessionTTL))
			if err != nil {
				return nil, fmt.Errorf("worker %d: new session: %w", i, err)
			}
			workers[i].sess = sess
		}
		sess := workers[i].sess
		key := cfg.keyPrefix + "shared"
		if !cfg.contended {
			key = fmt.Sprintf("%s%d", cfg.keyPrefix, i)
		}
		workers[i].mu = concurrency.NewMutex(sess, key)
	}

	if cfg.warmup > 0 {
		if _, err := phase(cfg, workers, cfg.warmup, false); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	elapsed, err := phase(cfg, workers, cfg.duration, true)
	if err != nil {
		return nil, err
	}

	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no lock+unlock pair completed in %v", cfg.duration)
	}
	slices.Sort(all)
	res.Pairs = len(all)
	res.Seconds = round(elapsed.Seconds(), 3)
	res.PairsPerSec = round(float64(len(all))/elapsed.Seconds(), 1)
	res.P50us = round(micros(percentile(all, 0.50)), 1)
	res.P99us = round(micros(percentile(all, 0.99)), 1)
	return res, nil
}

// phase runs every worker until d has passed and returns the time from the
// start until the last worker's last pair finished.
func phase(cfg config, workers []*worker, d time.Duration, record bool) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(d)
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.loop(cfg, deadline, record)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("worker %d (key %s): %w", i, w.mu.Key(), errs[i])
			}
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

func (w *worker) loop(cfg config, deadline time.Time, record bool) error {
	for time.Now().Before(deadline) {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), cfg.opTimeout)
		err := w.mu.Lock(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), cfg.opTimeout)
		err = w.mu.Unlock(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("unlock: %w", err)
		}
		if record {
			w.lat = append(w.lat, time.Since(t0))
		}
	}
	return nil
}

func newClient(cfg config) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.endpoints,
		DialTimeout: cfg.dialTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", strings.Join(cfg.endpoints, ","), err)
	}
	return cli, nil
}

// probe checks that every endpoint answers and returns the member count and
// the server version, so that a dead cluster fails fast with a clear message.
func probe(cfg config) (members int, version string, err error) {
	cli, err := newClient(cfg)
	if err != nil {
		return 0, "", err
	}
	defer cli.Close()
	for _, ep := range cfg.endpoints {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.dialTimeout)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err != nil {
			return 0, "", fmt.Errorf("etcd endpoint %s does not answer: %w", ep, err)
		}
		version = st.Version
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.dialTimeout)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("etcd member list: %w", err)
	}
	return len(ml.Members), version, nil
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(x*p) / p
}
