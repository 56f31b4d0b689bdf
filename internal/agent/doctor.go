package agent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/agents"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/config"
	"github.com/vigil-cluster/vigil/internal/pki"
	"github.com/vigil-cluster/vigil/internal/rpc"
)

// Thresholds of `vigil doctor`.
const (
	certWarn      = 30 * 24 * time.Hour
	caWarn        = 90 * 24 * time.Hour
	skewWarn      = 500 * time.Millisecond
	skewFail      = 30 * time.Second
	doctorTimeout = 20 * time.Second
	// doctorMemberTimeout bounds one member's own checks (OCF validate-all
	// included).
	doctorMemberTimeout = 8 * time.Second
)

func finding(check, member, result, format string, args ...any) client.Finding {
	return client.Finding{Check: check, Member: member, Result: result, Message: fmt.Sprintf(format, args...)}
}

// doctorFacts are this member's own checks.
func (a *Agent) doctorFacts(ctx context.Context) *rpc.DoctorFacts {
	f := &rpc.DoctorFacts{Member: a.cfg.Name, ClusterID: a.cfg.ClusterID, Version: Version, Profile: a.cfg.Profile,
		Attrs: a.cfg.Attributes, Now: time.Now()}
	_, leaf := a.id.Current()
	f.CertUntil = leaf.NotAfter
	if a.id.Issuer() != nil && a.id.Issuer().Cert != nil {
		f.CAUntil, f.CAPrint = a.id.Issuer().Cert.NotAfter, pki.Fingerprint(a.id.Issuer().Cert)
	}
	st := a.store.State()
	me := a.cfg.Name
	// The resource agents of every service that may run here.
	env := a.agentsEnv()
	for _, n := range st.ServiceNames() {
		sp := st.Services[n].Spec
		if sp.Placement.Restricted && !slices.Contains(sp.Placement.Favored, me) {
			continue
		}
		bad := 0
		for _, r := range sp.Resources {
			if ctx.Err() != nil {
				break
			}
			if err := agents.Validate(n, r, env); err != nil {
				bad++
				f.Findings = append(f.Findings, finding("service", me, client.CheckFail,
					"%v; fix it here or restrict service %s to the members that can run it (placement.restricted)", err, n))
			}
		}
		if bad == 0 {
			f.Findings = append(f.Findings, finding("service", me, client.CheckOK, "service %s: its %d resources validate here", n, len(sp.Resources)))
		}
	}
	// Any member may become the director, which runs fence and alert agents.
	executable := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
	}
	for _, n := range slices.Sorted(maps.Keys(st.Fencing)) {
		if d := st.Fencing[n]; !executable(d.Agent) {
			f.Findings = append(f.Findings, finding("fencing", me, client.CheckFail,
				"fence device %s: agent %s is not an executable file here; as director this member could not fence: install it", n, d.Agent))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(st.Alerts)) {
		if al := st.Alerts[n]; !executable(al.Path) {
			f.Findings = append(f.Findings, finding("alerts", me, client.CheckWarn,
				"alert %s: %s is not an executable file here; as director this member could not run it: install it", n, al.Path))
		}
	}
	// Secrets must not be readable by others.
	for _, name := range []string{pki.KeyFile, pki.CAKeyFile, ClusterKeyFile, AdminTokenFile} {
		p := filepath.Join(a.dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			f.Findings = append(f.Findings, finding("files", me, client.CheckFail, "%s has mode %v: others can read a secret; chmod 600 %s", p, fi.Mode().Perm(), p))
		}
	}
	f.Took = time.Since(f.Now)
	return f
}

func (n *node) Doctor(ctx context.Context, _ *rpc.Empty) (*rpc.DoctorFacts, error) {
	return n.a.doctorFacts(ctx), nil
}

// Doctor implements api.Backend: TruCluster's clu_ivp and OpenVMS's "a
// member fails to join" checklist, from this member, over every member.
func (a *Agent) Doctor(ctx context.Context) *client.DoctorReport {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	st := a.store.State()
	var out []client.Finding
	add := func(fs ...client.Finding) { out = append(out, fs...) }

	// Quorum and director.
	status := a.Status(ctx)
	if status.Quorum {
		add(finding("quorum", "", client.CheckOK, "%s", quorumWords(status)))
	} else {
		add(finding("quorum", "", client.CheckFail, "%s: bring members back, or see `vigil members`", quorumWords(status)))
	}
	if status.Director == "" {
		add(finding("director", "", client.CheckFail, "no director: no member leads the cluster database; check that a majority of voters run and reach each other"))
	} else {
		add(finding("director", "", client.CheckOK, "%s is the director", status.Director))
	}
	add(a.votesFindings(st)...)

	// Each member's own checks, its clock and its identity.
	names := st.MemberNames()
	facts := make([]*rpc.DoctorFacts, len(names))
	rtts, skews := make([]time.Duration, len(names)), make([]time.Duration, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, m := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			if m == a.cfg.Name {
				facts[i] = a.doctorFacts(ctx)
			} else {
				var f rpc.DoctorFacts
				// A member just powered off can hold a dial for long: bound
				// each member, so the later checks keep their time.
				cctx, cancel := context.WithTimeout(ctx, doctorMemberTimeout)
				defer cancel()
				if err := a.callOnce(cctx, m, "Doctor", &rpc.Empty{}, &f); err != nil {
					errs[i] = err
					return
				}
				facts[i] = &f
				// The member's clock when the call arrived, against the
				// middle of the call's round trip (without its checks).
				rtts[i] = max(time.Since(t0)-f.Took, 0)
				skews[i] = f.Now.Sub(t0.Add(rtts[i] / 2))
			}
		}()
	}
	wg.Wait()
	// A member that does not answer is one finding: its links and ports
	// are not checked while it is away.
	away := map[string]bool{}
	for i, m := range names {
		if errs[i] != nil {
			away[m] = true
			add(finding("reachable", m, client.CheckFail, "%s did not answer: %v; is it powered on and its agent running (systemctl status vigil), and its cluster port open? (its links and ports are not checked until it answers)", m, errs[i]))
			continue
		}
		add(a.memberFindings(st, facts[i], rtts[i], skews[i])...)
	}
	add(a.linkFindings(ctx, st, away)...)
	add(a.portFindings(ctx, st, away)...)
	add(fencingFindings(st)...)

	r := &client.DoctorReport{Findings: out}
	for _, f := range out {
		switch f.Result {
		case client.CheckOK:
			r.OK++
		case client.CheckWarn:
			r.Warnings++
		default:
			r.Failures++
		}
	}
	return r
}

func quorumWords(st *client.Status) string {
	with := "with"
	if !st.Quorum {
		with = "without"
	}
	return fmt.Sprintf("%s quorum: %d of %d expected votes present, %d needed", with, st.VotesPresent, st.ExpectedVotes, st.QuorumNeeded)
}

// votesFindings checks the vote arithmetic: a two-member cluster without a
// witness, or an even number of votes.
func (a *Agent) votesFindings(st *cdb.State) []client.Finding {
	votes, witness := 0, false
	for _, m := range st.Members {
		votes += m.Votes
		witness = witness || (m.Witness && m.Votes > 0)
	}
	switch {
	case len(st.Members) == 1:
		return []client.Finding{finding("votes", "", client.CheckWarn, "a one-member cluster: nothing can fail over; add members with `vigil member add`")}
	case votes == 2 && !witness:
		return []client.Finding{finding("votes", "", client.CheckWarn, "two voting members and no witness: the failure of either loses quorum and stops every service; add a witness member (`vigil member add W --witness`) or a third member")}
	case votes%2 == 0:
		return []client.Finding{finding("votes", "", client.CheckWarn, "%d votes: an even split leaves no side with quorum; add a witness or give one member 0 votes", votes)}
	}
	return []client.Finding{finding("votes", "", client.CheckOK, "%d votes, %d needed for quorum", votes, cdb.QuorumNeeded(votes))}
}

// memberFindings checks what one member reported of itself.
func (a *Agent) memberFindings(st *cdb.State, f *rpc.DoctorFacts, rtt, skew time.Duration) []client.Finding {
	m := f.Member
	var out []client.Finding
	add := func(fs ...client.Finding) { out = append(out, fs...) }
	switch {
	case f.ClusterID != st.Cluster.ID:
		add(finding("identity", m, client.CheckFail, "%s belongs to cluster id %s, this cluster is %s: it was set up for another cluster; reset it and join again", m, f.ClusterID, st.Cluster.ID))
	case st.CARotation != nil && f.CAPrint != st.Cluster.CAFingerprint && f.CAPrint != st.CARotation.ID:
		add(finding("identity", m, client.CheckFail, "%s issues with a CA that is neither the cluster's nor the one a CA rotation brings in: its data dir holds another cluster's files", m))
	case st.CARotation != nil:
		add(finding("identity", m, client.CheckWarn, "a CA rotation is under way (phase %s, waiting for %s): run vigil ca rotate to finish it", st.CARotation.Phase, strings.Join(st.CARotation.Waiting(st), ", ")))
	case st.Cluster.CAFingerprint != "" && f.CAPrint != "" && f.CAPrint != st.Cluster.CAFingerprint:
		add(finding("identity", m, client.CheckFail, "%s has a CA certificate other than the cluster's: its data dir holds another cluster's files", m))
	default:
		add(finding("identity", m, client.CheckOK, "name %s, id %d, cluster %s", m, st.Members[m].ID, st.Cluster.Name))
	}
	now := time.Now()
	switch left := f.CertUntil.Sub(now); {
	case left <= 0:
		add(finding("certificate", m, client.CheckFail, "%s's certificate expired at %s: the others refuse it; renew it", m, f.CertUntil.UTC().Format(time.RFC3339)))
	case left < certWarn:
		add(finding("certificate", m, client.CheckWarn, "%s's certificate expires in %s (%s): renew it before then", m, left.Round(time.Hour), f.CertUntil.UTC().Format(time.RFC3339)))
	default:
		add(finding("certificate", m, client.CheckOK, "certificate valid until %s", f.CertUntil.UTC().Format("2006-01-02")))
	}
	if left := f.CAUntil.Sub(now); !f.CAUntil.IsZero() && left < caWarn {
		add(finding("certificate", m, client.CheckWarn, "the cluster CA expires in %s (%s): rotate it", left.Round(time.Hour), f.CAUntil.UTC().Format(time.RFC3339)))
	}
	if m != a.cfg.Name {
		abs := max(skew, -skew)
		switch {
		case abs > skewFail:
			add(finding("clock", m, client.CheckFail, "%s's clock is %s off this member's: join tokens and event times go wrong; run NTP (chrony) on every member", m, skew.Round(time.Millisecond)))
		case abs > skewWarn:
			add(finding("clock", m, client.CheckWarn, "%s's clock is %s off this member's (leases do not use clocks, but event times do): run NTP (chrony) on every member", m, skew.Round(time.Millisecond)))
		default:
			add(finding("clock", m, client.CheckOK, "clock within %s of this member's (measured over a %s round trip)", abs.Round(time.Millisecond), rtt.Round(time.Microsecond)))
		}
	}
	if f.Version != Version {
		add(finding("version", m, client.CheckWarn, "%s runs vigil %s, this member %s: upgrade every member to the same version", m, f.Version, Version))
	}
	if f.Profile != "" && st.Cluster.Profile != "" && f.Profile != st.Cluster.Profile {
		add(finding("profile", m, client.CheckFail, "%s uses timing profile %s, the cluster %s: set profile: %s in its vigil.yaml and restart it", m, f.Profile, st.Cluster.Profile, st.Cluster.Profile))
	}
	for _, k := range slices.Sorted(maps.Keys(st.Cluster.Attributes)) {
		if v, ok := f.Attrs[k]; !ok || v != st.Cluster.Attributes[k] {
			add(finding("attributes", m, client.CheckFail, "cluster-wide attribute %s is %q on %s, %q for the cluster: set it in its vigil.yaml and restart it", k, f.Attrs[k], m, st.Cluster.Attributes[k]))
		}
	}
	add(f.Findings...)
	return out
}

// linkFindings checks every link both ways against the timing profile.
func (a *Agent) linkFindings(ctx context.Context, st *cdb.State, away map[string]bool) []client.Finding {
	prof, ok := config.Profiles[st.Cluster.Profile]
	if !ok {
		prof = a.prof
	}
	var out []client.Finding
	clean := 0
	for _, r := range a.Links(ctx) {
		if away[r.Member] {
			continue
		}
		for _, l := range r.Links {
			if away[l.To] {
				continue
			}
			where := fmt.Sprintf("%s → %s on link %d (%s)", l.From, l.To, l.Link, l.Addr)
			rtt, mx := time.Duration(l.RTTMicros)*time.Microsecond, time.Duration(l.MaxMicros)*time.Microsecond
			switch {
			case !l.Up:
				out = append(out, finding("links", l.From, client.CheckFail, "%s: down (%d of the last %d probes lost); check the cable, the switch and the firewall (UDP and TCP on the member's port)", where, l.Lost, l.Sent))
			case l.Sent > 0 && l.Lost*5 >= l.Sent:
				out = append(out, finding("links", l.From, client.CheckFail, "%s: %d of the last %d probes lost: a bad cable, port or duplex setting", where, l.Lost, l.Sent))
			case l.Lost > 0:
				out = append(out, finding("links", l.From, client.CheckWarn, "%s: %d of the last %d probes lost", where, l.Lost, l.Sent))
			case mx >= prof.ProbeTimeout:
				out = append(out, finding("links", l.From, client.CheckFail, "%s: round trips up to %s reach the %s profile's probe timeout %s: members will be declared DOWN falsely; use a slower profile (campus or wan)", where, mx, prof.Name, prof.ProbeTimeout))
			case rtt*5 > prof.ProbeTimeout || mx*2 > prof.ProbeTimeout:
				out = append(out, finding("links", l.From, client.CheckWarn, "%s: round trip %s (max %s) is close to the %s profile's probe timeout %s: consider a slower profile", where, rtt, mx, prof.Name, prof.ProbeTimeout))
			default:
				clean++
			}
		}
		if r.Error != "" {
			out = append(out, finding("links", r.Member, client.CheckWarn, "%s did not report its links: %s", r.Member, r.Error))
		}
	}
	if clean > 0 {
		out = append(out, finding("links", "", client.CheckOK, "%d link directions clean: no loss, round trips fit the %s profile (probe timeout %s)", clean, prof.Name, prof.ProbeTimeout))
	}
	return out
}

// portFindings checks from here that every member's cluster and API ports
// accept connections.
func (a *Agent) portFindings(ctx context.Context, st *cdb.State, away map[string]bool) []client.Finding {
	type target struct{ member, what, addr string }
	var ts []target
	for _, n := range st.MemberNames() {
		if away[n] {
			continue
		}
		m := st.Members[n]
		for i, l := range m.Links {
			ts = append(ts, target{n, fmt.Sprintf("cluster port on link %d", i), config.RPCAddress(l)})
		}
		if m.API != "" {
			ts = append(ts, target{n, "API port", m.API})
		}
	}
	res := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 2 * time.Second}
			c, err := d.DialContext(ctx, "tcp", t.addr)
			if err == nil {
				c.Close()
			}
			res[i] = err
		}()
	}
	wg.Wait()
	var out []client.Finding
	open := 0
	for i, t := range ts {
		if res[i] != nil {
			out = append(out, finding("ports", t.member, client.CheckFail, "%s's %s %s does not accept connections from %s: %v; open it in the firewall", t.member, t.what, t.addr, a.cfg.Name, res[i]))
			continue
		}
		open++
	}
	if open > 0 {
		out = append(out, finding("ports", "", client.CheckOK, "%d cluster and API ports accept connections from %s", open, a.cfg.Name))
	}
	return out
}

// fencingFindings warns, as `pcs status` does, when fencing is not set up.
func fencingFindings(st *cdb.State) []client.Finding {
	if len(st.Fencing) == 0 {
		return []client.Finding{finding("fencing", "", client.CheckWarn,
			"no fence devices: a member that hangs (rather than dies) keeps its services until its lease runs out, and no-quorum-policy=freeze is not possible; add one with `vigil fence add`")}
	}
	var out []client.Finding
	for _, n := range st.MemberNames() {
		if len(st.FenceDevicesFor(n)) == 0 && !st.Members[n].Witness {
			out = append(out, finding("fencing", n, client.CheckWarn, "no fence device covers %s: its services wait for its lease when it is lost; add it to a device with `vigil fence add`", n))
		}
	}
	if len(out) == 0 {
		out = append(out, finding("fencing", "", client.CheckOK, "every member is covered by a fence device"))
	}
	return out
}
