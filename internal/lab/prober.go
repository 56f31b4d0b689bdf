package lab

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/internal/lab/check"
)

// Prober runs `vigil-lab probe` in the client namespace and keeps every
// answer it reports.
type Prober struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	probes []check.Probe
}

// StartProber starts a prober against the floating address: a new request
// every `every`, each with its own timeout and connection.
func (l *Lab) StartProber(ctx context.Context, every, timeout time.Duration) (*Prober, error) {
	s, err := l.State()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	cmd, err := l.Command(ctx, "client", s.LabBin, "probe", "--url", s.URL(),
		"--every", every.String(), "--timeout", timeout.String())
	if err != nil {
		cancel()
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	p := &Prober{cmd: cmd, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ps, _, err := check.ParseProbes(strings.NewReader(sc.Text() + "\n"))
			if err != nil || len(ps) != 1 {
				continue
			}
			p.mu.Lock()
			p.probes = append(p.probes, ps[0])
			p.mu.Unlock()
		}
		cmd.Wait()
	}()
	return p, nil
}

// Probes returns a copy of the answers so far.
func (p *Prober) Probes() []check.Probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]check.Probe(nil), p.probes...)
}

// Stop ends the prober.
func (p *Prober) Stop() {
	p.cancel()
	<-p.done
}

// Steady waits until every request sent in the last `window` (and at least
// a few) was answered by the same member, and returns that member.
func (p *Prober) Steady(ctx context.Context, window, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		now := Mono()
		ps := p.Probes()
		who, n, ok := "", 0, true
		for i := len(ps) - 1; i >= 0; i-- {
			if ps[i].Done < now-int64(window) {
				break
			}
			n++
			if !ps[i].OK() || (who != "" && ps[i].Body != who) {
				ok = false
				break
			}
			who = ps[i].Body
		}
		if ok && n >= 5 && who != "" {
			return who, nil
		}
		if time.Now().After(deadline) {
			last := "no answer"
			if len(ps) > 0 {
				q := ps[len(ps)-1]
				last = fmt.Sprintf("status %d from %q", q.Status, q.Body)
			}
			return "", fmt.Errorf("the floating address did not answer steadily within %s (last request: %s)", timeout, last)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitOther waits for the first good answer after t0 from a member other
// than `not`, and returns its time.
func (p *Prober) WaitOther(ctx context.Context, t0 int64, not string, timeout time.Duration) (int64, string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ps := p.Probes()
		if done, ok := check.FirstAnswer(ps, t0, not); ok {
			for _, q := range ps {
				if q.Done == done && q.OK() && q.Body != not {
					return done, q.Body, nil
				}
			}
			return done, "", nil
		}
		if time.Now().After(deadline) {
			return 0, "", fmt.Errorf("no member but %s answered within %s", not, timeout)
		}
		select {
		case <-ctx.Done():
			return 0, "", ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
