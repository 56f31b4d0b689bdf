package director

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

// TestScenarios runs every testdata/*.txt file. The format:
//
//	# comment (kept)
//	cluster lease=2s drift=1.1 term=-1h quorum=yes policy=stop maintenance=off fencing=off
//	member m1 [UP|DOWN|DISCONNECTED|NETPAR] id=1 domain=0 witness draining removing
//	       renewed=T down-since=T up-since=T fenced fence-pending   (flags take =no to unset)
//	service web favored=m1,m2 restricted=m1,m2 balanced domain=0 failback failback-delay=D
//	       restarts=3 window=10m failure-timeout=10m target=online|offline
//	       relocate=M clear state=ONLINE owner=m1 epoch=3 held=S
//	fail web m1 count=2 last=T kind=monitor-failed sev=soft banned hard fatal
//	event start-succeeded|start-failed|stop-succeeded|stop-failed|monitor-failed
//	       web m1 [epoch=N] [soft|hard|fatal] [detail="what the agent said"]
//	drop m1                                  (the member leaves the input)
//	decide now=T [why=all|none|web,db]
//	----
//	expected output, up to the next blank line
//
// Times T are offsets from the scenario's start (0s, 1.5s, -1h). Commands
// between two decides happen at the time of the first: a member set DOWN
// there went DOWN then, and last renewed its lease then. An event's epoch
// defaults to the service's current epoch. After each decide, the test
// does what the director's loop would: it writes the new statuses, clears
// the requests that were answered, marks fenced members as fence pending,
// and lets every member that is not DOWN renew its lease at that time.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			runScenarioFile(t, f)
		})
	}
}

var scenarioStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type scenario struct {
	in  Input
	now time.Time
}

func newScenario() *scenario {
	return &scenario{
		in: Input{
			Now:            scenarioStart,
			TermStart:      scenarioStart.Add(-time.Hour),
			Lease:          2 * time.Second,
			Drift:          1.1,
			Quorum:         true,
			NoQuorumPolicy: NoQuorumStop,
		},
		now: scenarioStart,
	}
}

func runScenarioFile(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	sc := newScenario()
	var out []string
	decides := 0
	for n := 0; n < len(lines); n++ {
		l := lines[n]
		out = append(out, l)
		trim := strings.TrimSpace(l)
		if trim == "" || strings.HasPrefix(trim, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, n+1)
		if !strings.HasPrefix(trim, "decide") {
			if trim == "----" {
				t.Fatalf("%s: ---- without a decide before it", where)
			}
			if err := sc.command(trim); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			continue
		}
		decides++
		got, err := sc.decide(trim)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		// The expected block.
		var want []string
		if n+1 < len(lines) && lines[n+1] == "----" {
			n++
			for n+1 < len(lines) && lines[n+1] != "" {
				n++
				want = append(want, lines[n])
			}
		}
		if *update {
			out = append(out, "----")
			out = append(out, got...)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s\n(run with -update to rewrite, then review the diff)",
				where, trim, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if decides == 0 {
		t.Fatalf("%s: no decide", path)
	}
	if *update {
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fields splits a line at spaces, except inside double quotes, which it
// removes: detail="exit 1" is one field, detail=exit 1.
func fields(line string) []string {
	var out []string
	var cur strings.Builder
	quoted, any := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted = !quoted
			any = true
		case r == ' ' && !quoted:
			if any {
				out = append(out, cur.String())
				cur.Reset()
				any = false
			}
		default:
			cur.WriteRune(r)
			any = true
		}
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// args splits "k=v" and bare words.
func args(fields []string) (kv map[string]string, words []string) {
	kv = map[string]string{}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		} else {
			words = append(words, f)
		}
	}
	return kv, words
}

func parseOffset(s string) (time.Time, error) {
	if s == "0" {
		return scenarioStart, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, err
	}
	return scenarioStart.Add(d), nil
}

func parseBool(v string) (bool, error) {
	switch v {
	case "", "yes", "on", "true":
		return true, nil
	case "no", "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not yes/no", v)
}

func list(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func (sc *scenario) memberIndex(name string) int {
	return slices.IndexFunc(sc.in.Members, func(m Member) bool { return m.Name == name })
}

func (sc *scenario) serviceIndex(name string) int {
	return slices.IndexFunc(sc.in.Services, func(s Service) bool { return s.Name == name })
}

func (sc *scenario) command(line string) error {
	f := fields(line)
	cmd, rest := f[0], f[1:]
	switch cmd {
	case "cluster":
		return sc.cluster(rest)
	case "member":
		return sc.member(rest)
	case "drop":
		for _, name := range rest {
			i := sc.memberIndex(name)
			if i < 0 {
				return fmt.Errorf("no member %s", name)
			}
			sc.in.Members = slices.Delete(sc.in.Members, i, i+1)
		}
		return nil
	case "service":
		return sc.service(rest)
	case "fail":
		return sc.fail(rest)
	case "event":
		return sc.event(rest)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func (sc *scenario) cluster(rest []string) error {
	kv, words := args(rest)
	if len(words) > 0 {
		return fmt.Errorf("cluster: unexpected %v", words)
	}
	var err error
	for k, v := range kv {
		switch k {
		case "lease":
			sc.in.Lease, err = time.ParseDuration(v)
		case "drift":
			sc.in.Drift, err = strconv.ParseFloat(v, 64)
		case "term":
			sc.in.TermStart, err = parseOffset(v)
		case "quorum":
			sc.in.Quorum, err = parseBool(v)
		case "policy":
			sc.in.NoQuorumPolicy = NoQuorumPolicy(v)
		case "maintenance":
			sc.in.Maintenance, err = parseBool(v)
		case "fencing":
			sc.in.Fencing, err = parseBool(v)
		case "director":
			sc.in.Director = v
		default:
			return fmt.Errorf("cluster: unknown %s", k)
		}
		if err != nil {
			return fmt.Errorf("cluster %s: %v", k, err)
		}
	}
	return nil
}

func (sc *scenario) member(rest []string) error {
	if len(rest) == 0 {
		return fmt.Errorf("member: no name")
	}
	name := rest[0]
	i := sc.memberIndex(name)
	if i < 0 {
		sc.in.Members = append(sc.in.Members, Member{Name: name, ID: len(sc.in.Members) + 1, State: MemberUp, LastRenewal: sc.now})
		i = len(sc.in.Members) - 1
	}
	m := &sc.in.Members[i]
	kv, words := args(rest[1:])
	for _, w := range words {
		kv[w] = ""
	}
	var err error
	for k, v := range kv {
		switch k {
		case "UP", "DOWN", "DISCONNECTED", "NETPAR":
			if MemberState(k) == MemberDown && m.State != MemberDown {
				m.DownSince = sc.now
			}
			if MemberState(k) != MemberDown {
				m.Fenced = false
				m.FencePending = false
			}
			if MemberState(k) == MemberUp && m.State == MemberDown {
				m.UpSince = sc.now
			}
			m.State = MemberState(k)
		case "id":
			m.ID, err = strconv.Atoi(v)
		case "domain":
			m.Domain, err = strconv.Atoi(v)
		case "witness":
			m.Witness, err = parseBool(v)
		case "draining":
			m.Draining, err = parseBool(v)
		case "removing":
			m.Removing, err = parseBool(v)
		case "fenced":
			m.Fenced, err = parseBool(v)
			if m.Fenced {
				m.FencePending = false
			}
		case "fence-pending":
			m.FencePending, err = parseBool(v)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("member %s: %v", k, err)
		}
	}
	// Times last, so that they win over the defaults set above.
	for k, v := range kv {
		switch k {
		case "renewed":
			m.LastRenewal, err = parseOffset(v)
		case "down-since":
			m.DownSince, err = parseOffset(v)
		case "up-since":
			m.UpSince, err = parseOffset(v)
		case "UP", "DOWN", "DISCONNECTED", "NETPAR", "id", "domain", "witness", "draining", "removing", "fenced", "fence-pending":
		default:
			return fmt.Errorf("member: unknown %s", k)
		}
		if err != nil {
			return fmt.Errorf("member %s: %v", k, err)
		}
	}
	return nil
}

func (sc *scenario) service(rest []string) error {
	if len(rest) == 0 {
		return fmt.Errorf("service: no name")
	}
	name := rest[0]
	i := sc.serviceIndex(name)
	if i < 0 {
		sc.in.Services = append(sc.in.Services, Service{Name: name})
		i = len(sc.in.Services) - 1
	}
	s := &sc.in.Services[i]
	kv, words := args(rest[1:])
	for _, w := range words {
		kv[w] = ""
	}
	var err error
	for k, v := range kv {
		sp, st := &s.Spec, &s.Status
		switch k {
		case "favored":
			sp.Favored = list(v)
		case "restricted":
			sp.Restricted = list(v)
		case "balanced":
			sp.Balanced, err = parseBool(v)
		case "domain":
			sp.Domain, err = strconv.Atoi(v)
		case "failback":
			sp.Failback, err = parseBool(v)
		case "failback-delay":
			sp.FailbackDelay, err = time.ParseDuration(v)
		case "restarts":
			sp.MaxRestarts, err = strconv.Atoi(v)
		case "window":
			sp.RestartWindow, err = time.ParseDuration(v)
		case "failure-timeout":
			sp.FailureTimeout, err = time.ParseDuration(v)
		case "target":
			sp.Target = Target(v)
		case "relocate":
			sp.RelocateTo = v
		case "clear":
			sp.Clear, err = parseBool(v)
		case "state":
			st.State = ServiceState(v)
		case "held":
			st.Held = ServiceState(v)
		case "owner":
			st.Owner = v
		case "epoch":
			st.Epoch, err = strconv.ParseUint(v, 10, 64)
		default:
			return fmt.Errorf("service: unknown %s", k)
		}
		if err != nil {
			return fmt.Errorf("service %s: %v", k, err)
		}
	}
	return nil
}

func (sc *scenario) fail(rest []string) error {
	if len(rest) < 2 {
		return fmt.Errorf("fail SERVICE MEMBER ...")
	}
	i := sc.serviceIndex(rest[0])
	if i < 0 {
		return fmt.Errorf("no service %s", rest[0])
	}
	r := FailRecord{Member: rest[1], Count: 1, Last: sc.now, Kind: MonitorFailed, Severity: Soft}
	kv, words := args(rest[2:])
	for _, w := range words {
		kv[w] = ""
	}
	var err error
	for k, v := range kv {
		switch k {
		case "count":
			r.Count, err = strconv.Atoi(v)
		case "last":
			r.Last, err = parseOffset(v)
		case "kind":
			r.Kind = EventKind(v)
		case "sev":
			r.Severity = Severity(v)
		case "detail":
			r.Detail = v
		case "banned":
			r.Banned, err = parseBool(v)
		case "hard":
			r.Hard, err = parseBool(v)
		case "fatal":
			r.Fatal, err = parseBool(v)
		default:
			return fmt.Errorf("fail: unknown %s", k)
		}
		if err != nil {
			return fmt.Errorf("fail %s: %v", k, err)
		}
	}
	st := &sc.in.Services[i].Status
	st.Fails = slices.DeleteFunc(st.Fails, func(x FailRecord) bool { return x.Member == r.Member })
	st.Fails = append(st.Fails, r)
	slices.SortFunc(st.Fails, func(a, b FailRecord) int { return strings.Compare(a.Member, b.Member) })
	return nil
}

func (sc *scenario) event(rest []string) error {
	if len(rest) < 3 {
		return fmt.Errorf("event KIND SERVICE MEMBER ...")
	}
	e := Event{Kind: EventKind(rest[0]), Service: rest[1], Member: rest[2]}
	if i := sc.serviceIndex(e.Service); i >= 0 {
		e.Epoch = sc.in.Services[i].Status.Epoch
	}
	kv, words := args(rest[3:])
	for _, w := range words {
		switch Severity(w) {
		case Soft, Hard, Fatal:
			e.Severity = Severity(w)
		default:
			return fmt.Errorf("event: unknown %s", w)
		}
	}
	var err error
	for k, v := range kv {
		switch k {
		case "epoch":
			e.Epoch, err = strconv.ParseUint(v, 10, 64)
		case "detail":
			e.Detail = v
		default:
			return fmt.Errorf("event: unknown %s", k)
		}
		if err != nil {
			return fmt.Errorf("event %s: %v", k, err)
		}
	}
	sc.in.Events = append(sc.in.Events, e)
	return nil
}

// decide runs Decide, formats its output and applies it as the loop would.
func (sc *scenario) decide(line string) ([]string, error) {
	kv, words := args(fields(line)[1:])
	if len(words) > 0 {
		return nil, fmt.Errorf("decide: unexpected %v", words)
	}
	if v, ok := kv["now"]; ok {
		now, err := parseOffset(v)
		if err != nil {
			return nil, fmt.Errorf("decide now: %v", err)
		}
		if now.Before(sc.now) {
			return nil, fmt.Errorf("decide now: time goes backwards")
		}
		sc.now = now
	}
	sc.in.Now = sc.now
	// Members that are not DOWN renew their leases.
	for i := range sc.in.Members {
		if sc.in.Members[i].State != MemberDown {
			sc.in.Members[i].LastRenewal = sc.now
		}
	}
	// Validate all but the lease, which a scenario may leave unset on
	// purpose, to show what Decide does with it.
	v := sc.in
	if v.Lease <= 0 {
		v.Lease = time.Second
	}
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("the scenario's input is not valid: %v", err)
	}
	before := cloneInput(sc.in)
	out := Decide(sc.in)
	if err := checkOutput(&before, &out); err != nil {
		return nil, fmt.Errorf("unsafe decision: %v", err)
	}
	var got []string
	for _, d := range out.Decisions {
		got = append(got, d.String())
	}
	if len(out.Decisions) == 0 {
		got = append(got, "no decisions")
	}
	for _, ig := range out.Ignored {
		got = append(got, "ignored "+ig)
	}
	why := kv["why"]
	for _, s := range sc.in.Services {
		if why == "none" || (why != "" && why != "all" && !slices.Contains(list(why), s.Name)) {
			continue
		}
		got = append(got, strings.Split("why "+out.Why(s.Name), "\n")...)
	}
	sc.apply(&out)
	return got, nil
}

// apply does what the director's loop does with an Output.
func (sc *scenario) apply(out *Output) {
	for _, u := range out.Updates {
		i := sc.serviceIndex(u.Service)
		sc.in.Services[i].Status = u.Status
	}
	for _, d := range out.Decisions {
		switch d.Kind {
		case RelocateDone, RelocateRefused:
			sc.in.Services[sc.serviceIndex(d.Service)].Spec.RelocateTo = ""
		case Cleared:
			sc.in.Services[sc.serviceIndex(d.Service)].Spec.Clear = false
		case Fence:
			sc.in.Members[sc.memberIndex(d.Member)].FencePending = true
		}
	}
	sc.in.Events = nil
}
