package agents

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/internal/spec"
)

// lazyTimeout bounds the `umount -l` that follows a failed unmount.
const lazyTimeout = 10 * time.Second

// fsResource is a file system of a service: fsck -a at Fsck (when the
// resource asks for it), mount at Mount, umount (then umount -l) at
// Unmount; Check and Probe look in /proc/self/mountinfo.
type fsResource struct {
	base
}

// Run implements Resource.
func (f *fsResource) Run(ctx context.Context, p Phase, c Call) Result {
	t0 := time.Now()
	var r Result
	switch p {
	case Fsck:
		if !f.res.Fsck {
			return f.skipped(p)
		}
		r = f.fsck(ctx, c)
	case Mount:
		r = f.mount(ctx, c)
	case Unmount:
		r = f.unmount(ctx, c)
	case Check, Probe:
		r = f.result(p, "mountinfo")
		switch ok, err := mounted(f.res.Mountpoint); {
		case err != nil:
			r.Status, r.Severity, r.Err = Failed, Soft, err.Error()
		case ok:
			r.Status, r.RC = OK, 0
		default:
			r.Status, r.RC = NotRunning, 0
			r.Err = fmt.Sprintf("%s is not mounted", f.res.Mountpoint)
		}
	default:
		if !known(p) {
			r = f.unknownPhase(p)
		} else {
			return f.skipped(p)
		}
	}
	return f.done(r, t0)
}

func (f *fsResource) fsck(ctx context.Context, c Call) Result {
	r := f.command(ctx, Fsck, c, "fsck", []string{"fsck", "-a", f.res.Device})
	if r.RC < 0 {
		return r // not started, timed out or killed: command said so
	}
	// fsck's exit code is a bit mask (fsck(8)).
	switch rc := r.RC; {
	case rc == 0:
	case rc&^3 == 0:
		r.Status, r.Err = OK, ""
		r.Note = fmt.Sprintf("fsck corrected errors on %s (exit %d)", f.res.Device, rc)
	case rc&4 != 0:
		// The same disk is seen by every member: no member will do better.
		r.Status, r.Severity = Failed, Fatal
		r.Err = fmt.Sprintf("fsck -a left errors uncorrected on %s (exit %d): run fsck on it by hand, then clear the service", f.res.Device, rc)
	default:
		r.Status, r.Severity = Failed, Hard
		r.Err = fmt.Sprintf("fsck -a could not check %s on this member (exit %d: operational error; is the device there?)", f.res.Device, rc)
	}
	return r
}

func (f *fsResource) mount(ctx context.Context, c Call) Result {
	mp := f.res.Mountpoint
	if ok, err := mounted(mp); err == nil && ok {
		r := f.result(Mount, "mount")
		r.Status, r.RC, r.Note = OK, 0, fmt.Sprintf("%s was already mounted", mp)
		return r
	}
	if err := os.MkdirAll(mp, 0o755); err != nil {
		r := f.result(Mount, "mount")
		r.Status, r.Severity, r.Err = Failed, Hard, fmt.Sprintf("cannot create the mountpoint: %v", err)
		return r
	}
	argv := []string{"mount"}
	if f.res.FSType != "" {
		argv = append(argv, "-t", f.res.FSType)
	}
	if f.res.Options != "" {
		argv = append(argv, "-o", f.res.Options)
	}
	argv = append(argv, f.res.Device, mp)
	r := f.command(ctx, Mount, c, "mount", argv)
	if r.Status == OK {
		if ok, err := mounted(mp); err != nil || !ok {
			r.Status, r.Severity = Failed, Soft
			r.Err = fmt.Sprintf("mount exited 0 but %s is not in /proc/self/mountinfo", mp)
		}
	}
	return r
}

func (f *fsResource) unmount(ctx context.Context, c Call) Result {
	mp := f.res.Mountpoint
	if ok, err := mounted(mp); err == nil && !ok {
		r := f.result(Unmount, "umount")
		r.Status, r.RC, r.Note = OK, 0, fmt.Sprintf("%s was not mounted", mp)
		return r
	}
	r := f.command(ctx, Unmount, c, "umount", []string{"umount", mp})
	if r.Status == OK {
		if ok, _ := mounted(mp); !ok {
			return r
		}
		r.Err = fmt.Sprintf("%s is still mounted (mounted twice?)", mp)
	}
	first := r.Err
	lazy := f.command(ctx, Unmount, Call{Timeout: min(lazyTimeout, f.timeout(Unmount, c))}, "umount -l", []string{"umount", "-l", mp})
	lazy.Output = append(r.Output, lazy.Output...)
	if len(lazy.Output) > MaxOutputLines {
		lazy.Output = lazy.Output[len(lazy.Output)-MaxOutputLines:]
	}
	if lazy.Status == OK {
		lazy.Note = fmt.Sprintf("%s; unmounted lazily with umount -l: processes that still use %s keep the file system alive until they exit", first, mp)
		return lazy
	}
	lazy.Severity = Hard
	lazy.Err = fmt.Sprintf("%s; then %s", first, lazy.Err)
	return lazy
}

// mounted reports whether path is a mount point in /proc/self/mountinfo.
func mounted(path string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("cannot read /proc/self/mountinfo: %v", err)
	}
	want := map[string]bool{filepath.Clean(path): true}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		want[real] = true
	}
	for _, mp := range mountPoints(b) {
		if want[mp] {
			return true, nil
		}
	}
	return false, nil
}

// mountPoints returns field 5 of each mountinfo line, unescaped.
func mountPoints(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 {
			out = append(out, unescapeMountinfo(f[4]))
		}
	}
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func validateFS(r spec.Resource) error {
	if !strings.HasPrefix(r.Device, "/") || !filepath.IsAbs(r.Mountpoint) || filepath.Clean(r.Mountpoint) == "/" {
		return fmt.Errorf("an fs needs an absolute device and an absolute mountpoint other than / (have %q on %q)", r.Device, r.Mountpoint)
	}
	tools := []string{"mount", "umount"}
	if r.Fsck {
		tools = append(tools, "fsck")
	}
	for _, t := range tools {
		if err := executable(t); err != nil {
			return err
		}
	}
	return nil
}
