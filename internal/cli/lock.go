package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/dlmclient"
	"github.com/vigil-cluster/vigil/internal/dlm/socket"
)

// exitStatus is an exit code a command chose (vigil lock exits with its
// command's), with a message, or none when there is nothing to add.
type exitStatus struct {
	code int
	msg  string
}

func (e *exitStatus) Error() string { return e.msg }

// killGrace is how long a command whose lock was lost has between SIGTERM
// and SIGKILL.
const killGrace = 5 * time.Second

func lockCmd(g *globals) *cobra.Command {
	r := &lockRun{killGrace: killGrace}
	var mode string
	cmd := &cobra.Command{
		Use:   "lock [--mode EX] [--nowait] [--timeout T] [--lockspace L] RESOURCE -- CMD [ARGS...]",
		Short: "run a command while holding a cluster-wide lock (flock(1) for the cluster)",
		Long: `Take the lock manager's lock on RESOURCE (in mode EX unless --mode says
otherwise) through this member's agent, run CMD while holding it, and release
it when CMD ends. vigil lock exits with CMD's exit code (128+N when a signal N
ended it).

CMD finds the lock in its environment: VIGIL_LOCK_TOKEN is the fencing token
of the grant (it grows with every grant of the resource: give it to the store
the lock protects so it can refuse a stale holder), VIGIL_LOCK_RESOURCE,
VIGIL_LOCK_LOCKSPACE and VIGIL_LOCK_MODE name the lock.

SIGINT, SIGTERM and SIGHUP are passed on to CMD. If the lock is lost while
CMD runs (this member's lease ended, or the agent stopped), CMD gets SIGTERM,
then SIGKILL after 5 seconds, and vigil lock exits with 1. Without a terminal
on its standard input, CMD runs in a process group of its own and the signals
go to the whole group (whatever CMD started); on a terminal it stays in the
terminal's foreground group, which receives Ctrl-C itself.

Options go before RESOURCE; everything after it is the command.`,
		Example: `  vigil lock backup -- /usr/local/bin/backup.sh
  vigil lock --mode PR --timeout 30s reports -- make-report
  vigil lock --nowait cron-job -- run-job || echo "another member runs it"`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("vigil lock needs a resource and a command: vigil lock RESOURCE -- CMD [ARGS...]")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			r.resource, r.argv = args[0], args[1:]
			if len(r.argv) > 0 && r.argv[0] == "--" {
				r.argv = r.argv[1:]
			}
			if len(r.argv) == 0 {
				return usagef("vigil lock %s needs a command to run: vigil lock %s -- CMD [ARGS...]", r.resource, r.resource)
			}
			m, err := dlmclient.ParseMode(mode)
			if err != nil {
				return usagef("--mode %s: use one of NL, CR, CW, PR, PW, EX (EX: exclusive, PR: shared read)", mode)
			}
			r.mode = m
			switch {
			case len(r.resource) > dlmclient.MaxNameLen:
				return usagef("the resource name is %d bytes long: give 1 to %d bytes", len(r.resource), dlmclient.MaxNameLen)
			case r.resource == "":
				return usagef("the resource name is empty: give 1 to %d bytes", dlmclient.MaxNameLen)
			case len(r.lockspace) == 0 || len(r.lockspace) > dlmclient.MaxNameLen:
				return usagef("--lockspace is %d bytes long: give 1 to %d bytes", len(r.lockspace), dlmclient.MaxNameLen)
			case r.timeout < 0:
				return usagef("--timeout %v is negative: give how long to wait for the lock (0: as long as it takes)", r.timeout)
			case r.nowait && r.timeout > 0:
				return usagef("give --nowait or --timeout, not both")
			}
			r.stdin, r.stdout, r.stderr = g.in, g.out, g.errOut
			r.holders = g.lockHolders
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			defer signal.Stop(sigs)
			r.signals = sigs

			sock := filepath.Join(g.dataDir, socket.File)
			dctx, cancel := context.WithTimeout(c.Context(), 10*time.Second)
			cl, err := dlmclient.Dial(dctx, sock)
			cancel()
			if err != nil {
				if errors.Is(err, dlmclient.ErrNoAgent) {
					return fmt.Errorf("%v (start the agent with `vigil agent --data-dir %s`, or give this member's data dir with --data-dir)", err, g.dataDir)
				}
				return err
			}
			defer cl.Close()
			return r.run(c.Context(), cl)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.StringVar(&mode, "mode", "EX", "lock mode: NL, CR, CW, PR, PW or EX")
	f.BoolVar(&r.nowait, "nowait", false, "fail at once (exit 1) when the lock is held, instead of waiting")
	f.DurationVar(&r.timeout, "timeout", 0, "give up (exit 1) when the lock is not granted within this time (default: wait as long as it takes)")
	f.StringVar(&r.lockspace, "lockspace", dlmclient.DefaultLockspace, "the lockspace of the resource")
	return cmd
}

// lockRun is one `vigil lock`.
type lockRun struct {
	resource  string
	lockspace string
	mode      dlmclient.Mode
	nowait    bool
	timeout   time.Duration
	argv      []string
	killGrace time.Duration

	stdin          io.Reader
	stdout, stderr io.Writer
	signals        <-chan os.Signal
	// holders describes who holds the resource, for messages ("" when
	// unknown).
	holders func(ctx context.Context, ls, resource string) string
}

func (r *lockRun) heldBy(ctx context.Context) string {
	who := ""
	if r.holders != nil {
		hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		who = r.holders(hctx, r.lockspace, r.resource)
		cancel()
	}
	if who == "" {
		return fmt.Sprintf("another client in an incompatible mode (see `vigil locks --resource %s`)", r.resource)
	}
	return who
}

// run takes the lock, runs the command and releases the lock.
func (r *lockRun) run(ctx context.Context, cl *dlmclient.Client) error {
	opts := []dlmclient.Option{dlmclient.Lockspace(r.lockspace)}
	if r.nowait {
		opts = append(opts, dlmclient.NoQueue())
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.timeout > 0 {
		lctx, cancel = context.WithTimeout(lctx, r.timeout)
		defer cancel()
	}
	p, err := cl.LockAsync(r.resource, r.mode, opts...)
	if err != nil {
		return err
	}
	var l *dlmclient.Lock
	for l == nil {
		select {
		case <-p.Done():
			l, err = p.Result()
			if err != nil {
				return r.lockFailed(ctx, err)
			}
		case sig := <-r.signals:
			cancel()
			p.Wait(lctx) // cancels the request
			return &exitStatus{code: 128 + signum(sig), msg: fmt.Sprintf("%v while waiting for the lock on %s: nothing was run", sig, r.resource)}
		case <-lctx.Done():
			_, err = p.Wait(lctx) // cancels the request
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return err
			}
			return &exitStatus{code: ExitFailed, msg: fmt.Sprintf("gave up after %v waiting for the lock on %s: it is held by %s", r.timeout, r.resource, r.heldBy(ctx))}
		}
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l.Unlock(uctx) // Close releases it anyway
	}()
	return r.runCommand(l)
}

func (r *lockRun) lockFailed(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, dlmclient.ErrNotQueued):
		return &exitStatus{code: ExitFailed, msg: fmt.Sprintf("lock busy: %s is held by %s", r.resource, r.heldBy(ctx))}
	case errors.Is(err, dlmclient.ErrDeadlock):
		return &exitStatus{code: ExitFailed, msg: fmt.Sprintf("the lock on %s was refused to break a deadlock: try again", r.resource)}
	case errors.Is(err, dlmclient.ErrNotMember):
		return &exitStatus{code: ExitNoQuorum, msg: fmt.Sprintf("cannot lock %s: %v", r.resource, err)}
	}
	return err
}

// runCommand runs the command while l is held.
func (r *lockRun) runCommand(l *dlmclient.Lock) error {
	cmd := exec.Command(r.argv[0], r.argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r.stdin, r.stdout, r.stderr
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("VIGIL_LOCK_TOKEN=%d", l.Token()),
		"VIGIL_LOCK_RESOURCE="+r.resource,
		"VIGIL_LOCK_LOCKSPACE="+r.lockspace,
		"VIGIL_LOCK_MODE="+l.Mode().String(),
	)
	// Without a terminal the command gets its own process group, so that
	// signals (and the kill when the lock is lost) reach whatever it
	// started. With one it stays in vigil's group, the terminal's
	// foreground, where it can use the terminal and gets the terminal's
	// SIGINT itself.
	group := !isTerminal(r.stdin)
	if group {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	signal := func(sig os.Signal) {
		if n, ok := sig.(syscall.Signal); ok && group {
			syscall.Kill(-cmd.Process.Pid, n)
			return
		}
		cmd.Process.Signal(sig)
	}
	if err := cmd.Start(); err != nil {
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		return &exitStatus{code: code, msg: fmt.Sprintf("cannot run %s: %v (the lock on %s is released)", r.argv[0], err, r.resource)}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var (
		lost   error
		lostCh = l.Lost()
		kill   <-chan time.Time
	)
	for {
		select {
		case err := <-done:
			if lost != nil {
				return &exitStatus{code: ExitFailed, msg: fmt.Sprintf("the lock on %s was lost while %s ran, so it was stopped: %v", r.resource, r.argv[0], lost)}
			}
			return exitOf(err)
		case sig := <-r.signals:
			if sig == syscall.SIGINT && !group {
				continue // the terminal sent it to the command too
			}
			signal(sig)
		case <-lostCh:
			lostCh = nil
			lost = l.Err()
			if lost == nil {
				lost = dlmclient.ErrLost
			}
			fmt.Fprintf(r.stderr, "vigil: the lock on %s was lost: stopping %s (SIGTERM, SIGKILL in %v): %v\n", r.resource, r.argv[0], r.killGrace, lost)
			signal(syscall.SIGTERM)
			kill = time.After(r.killGrace)
		case <-kill:
			signal(syscall.SIGKILL)
		}
	}
}

// exitOf turns the command's end into vigil lock's exit status.
func exitOf(err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &exitStatus{code: 128 + int(ws.Signal())}
		}
		return &exitStatus{code: ee.ExitCode()}
	}
	return err
}

// isTerminal reports whether in is a terminal.
func isTerminal(in io.Reader) bool {
	f, ok := in.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func signum(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return int(n)
	}
	return 1
}

// lockHolders asks the agent's API who holds a resource, best effort.
func (g *globals) lockHolders(ctx context.Context, ls, resource string) string {
	cl, err := g.client()
	if err != nil {
		return ""
	}
	defer cl.Close()
	tables, err := cl.Locks(ctx)
	if err != nil {
		return ""
	}
	return holders(tables, ls, resource)
}

// holders describes the granted locks on the root resource (ls, name).
func holders(tables []client.LockTable, ls, name string) string {
	var out []string
	seen := map[string]bool{}
	for _, t := range tables {
		for _, li := range t.Mastered {
			if li.Lockspace != ls || len(li.Resource) != 1 || li.Resource[0] != name || li.Granted == "" || seen[li.Lock] {
				continue
			}
			if li.Queue != "granted" && li.Queue != "converting" {
				continue
			}
			seen[li.Lock] = true
			out = append(out, fmt.Sprintf("%s in %s (lock %s)", li.Owner, li.Granted, li.Lock))
		}
	}
	return strings.Join(out, ", ")
}

func locksCmd(g *globals) *cobra.Command {
	var resource string
	cmd := &cobra.Command{
		Use:   "locks [--resource R] [--json]",
		Short: "list the lock manager's locks cluster-wide: holders, waiters and masters",
		Long: `List the lock manager's locks as every member knows them: for each resource,
its master and its queues in order (granted, converting, waiting), with each
lock's owner (member/session), modes and fencing token. Requests no master has
confirmed yet show as pending. Members that are recovering, without quorum,
out of the lock manager's view or that could not be asked are listed below.

A RESOURCE of another lockspace than "default" shows as LOCKSPACE:PATH.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			tables, err := cl.Locks(ctx)
			if err != nil {
				return err
			}
			if resource != "" {
				tables = filterLocks(tables, resource)
			}
			if g.json {
				if tables == nil {
					tables = []client.LockTable{}
				}
				return g.printJSON(tables)
			}
			printLocks(g.out, tables)
			return nil
		},
	}
	cmd.Flags().StringVar(&resource, "resource", "", "show only the locks of this resource: a root name (with its sub-resources) or a full path joined with /")
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
	cmd.AddCommand(locksProbeCmd(g))
	return cmd
}

func locksProbeCmd(g *globals) *cobra.Command {
	var masters []string
	var n, workers int
	var handoff bool
	cmd := &cobra.Command{
		Use:   "probe [--master M]... [--n N] [--workers W] [--handoff] [--json]",
		Short: "time the lock manager from the member that answers: lock latency to each master",
		Long: `Time the lock manager from the member that answers (the one this command talks
to): W sessions in the agent's own process each take and release N EX locks,
one at a time, on resources of lockspace "fixed.vigil-probe" that each master
owns, one master after the other. It prints the latency of a lock until its
grant (a remote master costs one round trip on the interconnect) and the
lock+unlock pairs per second of all sessions together.

Resources are mastered where they are used: a resource nobody holds moves
to the member whose client asks for it. The probe's lockspace is fixed
(its name starts with "fixed."), so each resource stays on the master it
is timed for. With --handoff the probe uses lockspace "vigil-probe"
instead: the resources of each master move to the probing member at their
first lock, as an application's own names do.

The locks are real: they wait behind nothing (the lockspace is the probe's
own), but they cost the masters work while the probe runs.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, ctx, cancel, err := g.open(c)
			if err != nil {
				return err
			}
			defer cancel()
			out, err := cl.ProbeLocks(ctx, client.LockProbeRequest{Masters: masters, N: n, Workers: workers, Handoff: handoff})
			if err != nil {
				return err
			}
			failed := 0
			for _, p := range out {
				if p.Error != "" {
					failed++
				}
			}
			if g.json {
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "FROM\tMASTER\tWORKERS\tLOCKS\tP50\tP90\tP99\tPAIRS/S")
				for _, p := range out {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%.0f\n", p.From, p.Master, p.Workers, p.Locks,
						usString(p.P50US), usString(p.P90US), usString(p.P99US), p.PairsPerSec)
				}
				tw.Flush()
				for _, p := range out {
					if p.Error != "" {
						fmt.Fprintf(g.out, "%s: %s\n", p.Master, p.Error)
					}
				}
			}
			if failed > 0 {
				return fmt.Errorf("the probe failed on %d of %d masters", failed, len(out))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&masters, "master", nil, "time only the resources of this member (repeat or comma-separate; default every member of the view)")
	cmd.Flags().IntVar(&n, "n", 0, fmt.Sprintf("locks per session and master (default 2000, at most %d)", client.MaxProbeLocks))
	cmd.Flags().IntVar(&workers, "workers", 0, fmt.Sprintf("sessions taking locks at once (default 1, at most %d)", client.MaxProbeWorkers))
	cmd.Flags().BoolVar(&handoff, "handoff", false, `use resources that move to this member at their first lock (lockspace "vigil-probe")`)
	cmd.Flags().BoolVar(&g.json, "json", false, "print JSON")
	return cmd
}

// usString prints a duration in microseconds as an operator reads it.
func usString(us float64) string {
	if us >= 10000 {
		return fmt.Sprintf("%.1fms", us/1000)
	}
	return fmt.Sprintf("%.0fµs", us)
}

// filterLocks keeps the locks on resource: its root name, or its full
// path joined with "/".
func filterLocks(tables []client.LockTable, resource string) []client.LockTable {
	keep := func(ls []client.LockInfo) []client.LockInfo {
		var out []client.LockInfo
		for _, li := range ls {
			if len(li.Resource) > 0 && (li.Resource[0] == resource || strings.Join(li.Resource, "/") == resource) {
				out = append(out, li)
			}
		}
		return out
	}
	out := make([]client.LockTable, len(tables))
	for i, t := range tables {
		t.Mastered, t.Held = keep(t.Mastered), keep(t.Held)
		out[i] = t
	}
	return out
}

func resourceName(li client.LockInfo) string {
	p := strings.Join(li.Resource, "/")
	if li.Lockspace != "" && li.Lockspace != dlmclient.DefaultLockspace {
		return li.Lockspace + ":" + p
	}
	return p
}

// printLocks prints one table of resources from the masters' side, then a
// line per member in a state worth knowing.
func printLocks(w io.Writer, tables []client.LockTable) {
	type row struct {
		client.LockInfo
		name string
	}
	var rows []row
	seen := map[string]bool{}
	held := map[string]client.LockInfo{}
	for _, t := range tables {
		for _, li := range t.Held {
			held[li.Lock] = li
		}
	}
	for _, t := range tables {
		for _, li := range t.Mastered {
			if seen[li.Lock] {
				continue
			}
			seen[li.Lock] = true
			if li.Master == "" {
				li.Master = t.Member
			}
			rows = append(rows, row{li, resourceName(li)})
		}
	}
	// Locks that no master reported: not confirmed yet, or their master
	// could not be asked.
	for _, t := range tables {
		for _, li := range t.Held {
			if seen[li.Lock] {
				continue
			}
			seen[li.Lock] = true
			if li.Queue == "" {
				li.Queue = "pending"
			}
			rows = append(rows, row{li, resourceName(li)})
		}
	}
	// Grouped by resource; each resource's queues stay in the masters'
	// order.
	slices.SortStableFunc(rows, func(a, b row) int { return strings.Compare(a.name, b.name) })
	if len(rows) == 0 {
		fmt.Fprintln(w, "no locks")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RESOURCE\tMASTER\tLOCK\tOWNER\tQUEUE\tGRANTED\tREQUESTED\tTOKEN")
		last := ""
		for i, r := range rows {
			name := r.name
			if i > 0 && name == last {
				name = ""
			}
			last = r.name
			token := ""
			if r.Queue == "granted" || r.Queue == "converting" {
				t := r.Token
				if h, ok := held[r.Lock]; ok && h.Token != 0 {
					t = h.Token
				}
				if t != 0 {
					token = fmt.Sprint(t)
				}
			}
			req := r.Requested
			if r.Queue == "granted" {
				req = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, dash(r.Master), r.Lock, r.Owner, r.Queue, dash(r.Granted), dash(req), dash(token))
		}
		tw.Flush()
	}
	for _, t := range tables {
		switch {
		case t.Error != "":
			fmt.Fprintf(w, "%s: could not be asked: %s (its locks show as its masters and clients report them)\n", t.Member, t.Error)
		case t.Out:
			fmt.Fprintf(w, "%s: out of the lock manager's view %d: its clients' locks were released\n", t.Member, t.View)
		default:
			if t.Recovering {
				fmt.Fprintf(w, "%s: recovering view %d: it grants again once every member has rebuilt its locks\n", t.Member, t.View)
			}
			if !t.Quorum {
				fmt.Fprintf(w, "%s: without quorum: it grants nothing until its lease is renewed\n", t.Member)
			}
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
