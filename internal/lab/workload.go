package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Mono is CLOCK_MONOTONIC in nanoseconds. Network namespaces share it, so
// lines from every member and the client compare directly.
func Mono() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// webYAML is the lab's floating-IP service: the address on link 0 and an
// HTTP backend that answers with its member's name.
func webYAML(s *State) string {
	return fmt.Sprintf(`service: web
description: the lab's floating address with an HTTP backend answering its member's name
resources:
  - name: httpd
    kind: exec
    command: [%q, httpd]
  - name: vip
    kind: ip
    address: %s/24
    interface: eth%d
monitor_interval: 1s
`, s.LabBin, s.Floating(), s.Public())
}

// ApplyWeb applies the web service and waits for it to answer the client.
func (l *Lab) ApplyWeb(ctx context.Context) error {
	s, err := l.State()
	if err != nil {
		return err
	}
	if err := l.Apply(ctx, webYAML(s)); err != nil {
		return err
	}
	return l.WaitWeb(ctx, 60*time.Second)
}

// Apply applies service YAML through the first member whose agent runs.
func (l *Lab) Apply(ctx context.Context, yamlText string) error {
	s, err := l.State()
	if err != nil {
		return err
	}
	f := filepath.Join(s.Dir, fmt.Sprintf("apply-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(yamlText), 0o644); err != nil {
		return err
	}
	defer os.Remove(f)
	var last error
	for _, m := range s.live() {
		out, err := l.output(s.Vigil, "--data-dir", m.Data, "apply", "-f", f)
		if err == nil {
			return nil
		}
		last = fmt.Errorf("apply through %s: %v: %s", m.Name, err, out)
	}
	if last == nil {
		last = errors.New("no member runs an agent")
	}
	return last
}

// WaitWeb waits until the client gets an answer from the floating address,
// and returns nil then.
func (l *Lab) WaitWeb(ctx context.Context, timeout time.Duration) error {
	s, err := l.State()
	if err != nil {
		return err
	}
	url := s.URL()
	deadline := time.Now().Add(timeout)
	for {
		who, err := l.Curl(ctx)
		if err == nil && who != "" {
			l.logf("web: %s answers on %s", who, url)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the web service did not answer the client on %s within %s: %v", url, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Curl asks the floating address, from the client namespace, who answers.
func (l *Lab) Curl(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := l.State()
	if err != nil {
		return "", err
	}
	out, err := l.Exec(ctx, "client", nil, s.LabBin, "get", s.URL())
	return strings.TrimSpace(out), err
}

// ServeHTTP is the web backend (vigil-lab httpd): it answers every request
// with the member's name until SIGTERM.
func ServeHTTP(listen, name string) error {
	if name == "" {
		name = os.Getenv("VIGIL_MEMBER")
	}
	if name == "" {
		h, _ := os.Hostname()
		name = h
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, name+"\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// Get fetches url once (vigil-lab get) and prints the body.
func Get(url string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}

// Write is the chaos workload's service (vigil-lab writer): every 10 ms it
// appends "MEMBER EPOCH MONO_NS" to log, until SIGTERM. Two members' lines
// interleaving in time are a split-brain.
func Write(log string, every time.Duration) error {
	member, epoch := os.Getenv("VIGIL_MEMBER"), os.Getenv("VIGIL_EPOCH")
	if member == "" {
		return errors.New("VIGIL_MEMBER is not set: the writer runs as a vigil service")
	}
	if _, err := strconv.ParseUint(epoch, 10, 64); err != nil {
		epoch = "0"
	}
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := fmt.Fprintf(f, "%s %s %d\n", member, epoch, Mono()); err != nil {
			return err
		}
		select {
		case <-sig:
			return nil
		case <-t.C:
		}
	}
}

// Probe is the client's prober (vigil-lab probe): a new GET every `every`,
// overlapping, each with its own timeout and a fresh connection, one line
// per request on w ("SENT_NS DONE_NS STATUS BODY"), until ctx ends.
func Probe(ctx context.Context, w io.Writer, url string, every, timeout time.Duration) {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: timeout}).DialContext}
	c := &http.Client{Timeout: timeout, Transport: tr}
	var mu sync.Mutex
	bw := bufio.NewWriter(w)
	var wg sync.WaitGroup
	t := time.NewTicker(every)
	defer t.Stop()
	flush := time.NewTicker(50 * time.Millisecond)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			mu.Lock()
			bw.Flush()
			mu.Unlock()
			return
		case <-flush.C:
			mu.Lock()
			bw.Flush()
			mu.Unlock()
			continue
		case <-t.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := Mono()
			status, body := 0, "-"
			resp, err := c.Get(url)
			if err == nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
				resp.Body.Close()
				status = resp.StatusCode
				if f := strings.Fields(string(b)); len(f) > 0 {
					body = f[0]
				}
			}
			done := Mono()
			mu.Lock()
			fmt.Fprintf(bw, "%d %d %d %s\n", sent, done, status, body)
			mu.Unlock()
		}()
	}
}

// FenceAgent is the lab's power switch as a fence agent (vigil-lab
// fence-agent, run by vigil through DIR/fence_lab): it reads Pacemaker's
// key=value lines on stdin (action, nodename, dir) and powers the member off
// (off, reboot) or on (on), or reports its power state (status, monitor).
func FenceAgent(stdin io.Reader, stdout io.Writer) error {
	kv := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(stdin, 64<<10))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("fence-agent: line %q is not KEY=VALUE", line)
		}
		kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	action, node, dir := kv["action"], kv["nodename"], kv["dir"]
	if node == "" {
		node = kv["port"]
	}
	if dir == "" {
		return errors.New("fence-agent: no dir=LABDIR option: add --option dir=LABDIR to the fence device")
	}
	l, err := Open(dir)
	if err != nil {
		return err
	}
	if action == "monitor" || action == "list" {
		fmt.Fprintln(stdout, "lab power switch OK")
		return nil
	}
	m, err := l.Member(node)
	if err != nil {
		return fmt.Errorf("fence-agent: %v", err)
	}
	switch action {
	case "off", "":
		if err := l.Crash(m.Name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is off\n", m.Name)
	case "reboot":
		if err := l.Crash(m.Name); err != nil {
			return err
		}
		if err := l.Boot(m.Name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s was power-cycled\n", m.Name)
	case "on":
		if err := l.Boot(m.Name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is on\n", m.Name)
	case "status":
		if !m.On {
			fmt.Fprintf(stdout, "%s is off\n", m.Name)
			os.Exit(2)
		}
		fmt.Fprintf(stdout, "%s is on\n", m.Name)
	default:
		return fmt.Errorf("fence-agent: action %q: use off, reboot, on, status or monitor", action)
	}
	return nil
}
