package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/agents"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/director"
	"github.com/vigil-cluster/vigil/internal/spec"
)

// ApplyServices implements api.Backend: parse, validate (OCF meta-data and
// validate-all included, on this member), then write the services that
// change.
func (a *Agent) ApplyServices(ctx context.Context, r client.ApplyRequest, by string) (*client.ApplyResult, error) {
	file := r.File
	if file == "" {
		file = "(request)"
	}
	ss, err := spec.Parse(file, []byte(r.YAML))
	if err != nil {
		return nil, cdb.Refuse(cdb.ErrInvalid, "%v", err)
	}
	env := a.agentsEnv()
	for _, s := range ss {
		for _, res := range s.Resources {
			if err := agents.Validate(s.Name, res, env); err != nil {
				return nil, cdb.Refuse(cdb.ErrInvalid, "%s: service %s: resource %s: %v", file, s.Name, res.Name, err)
			}
		}
	}
	st := a.store.State()
	out := &client.ApplyResult{}
	var changed []spec.Service
	for _, s := range ss {
		cur, ok := st.Services[s.Name]
		switch {
		case !ok:
			out.Changes = append(out.Changes, client.Change{Service: s.Name, Action: "created", Diff: lineDiff("", yamlOf(s))})
			changed = append(changed, s)
		case !cdb.SameSpec(cur.Spec, s):
			out.Changes = append(out.Changes, client.Change{Service: s.Name, Action: "updated", Diff: lineDiff(yamlOf(cur.Spec), yamlOf(s))})
			changed = append(changed, s)
		default:
			out.Changes = append(out.Changes, client.Change{Service: s.Name, Action: "unchanged"})
		}
	}
	if r.DryRun || len(changed) == 0 {
		return out, nil
	}
	res, err := a.write(ctx, &cdb.Command{Op: cdb.OpServicesApply, By: by, Services: changed})
	if err != nil {
		return nil, err
	}
	out.Index = res.Index
	a.log.Info("services applied", "changed", len(changed), "by", by)
	return out, nil
}

func yamlOf(s spec.Service) string {
	b, _ := yaml.Marshal(s)
	return string(b)
}

// lineDiff lists the lines only in a (prefixed "- ") and only in b ("+ "),
// in order.
func lineDiff(a, b string) []string {
	al, bl := strings.Split(strings.TrimSpace(a), "\n"), strings.Split(strings.TrimSpace(b), "\n")
	if a == "" {
		al = nil
	}
	// Longest common subsequence, small inputs.
	n, m := len(al), len(bl)
	dp := make([][]int, n+1)
	for i := range dp {
		dp[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && al[i] == bl[j]:
			i, j = i+1, j+1
		case j < m && (i == n || dp[i][j+1] >= dp[i+1][j]):
			out = append(out, "+ "+bl[j])
			j++
		default:
			out = append(out, "- "+al[i])
			i++
		}
	}
	return out
}

func serviceInfo(n string, sv *cdb.Service) client.ServiceInfo {
	s := sv.Status
	info := client.ServiceInfo{Name: n, State: string(s.State), Owner: s.Owner, Epoch: s.Epoch, Target: string(sv.Target),
		Reason: s.Reason, Resources: len(sv.Spec.Resources), LastRequest: sv.LastRequest}
	if s.State == director.StateFrozen && s.Held != "" {
		info.State = string(s.State) + "(" + string(s.Held) + ")"
	}
	for _, f := range s.Fails {
		info.Fails = append(info.Fails, client.FailInfo{Member: f.Member, Count: f.Count, Last: f.Last, Banned: f.Banned || f.Hard || f.Fatal, What: f.String()})
	}
	return info
}

// Services implements api.Backend.
func (a *Agent) Services(ctx context.Context) []client.ServiceInfo {
	st := a.store.State()
	out := []client.ServiceInfo{}
	for _, n := range st.ServiceNames() {
		out = append(out, serviceInfo(n, st.Services[n]))
	}
	return out
}

// Service implements api.Backend.
func (a *Agent) Service(ctx context.Context, name string) (*client.ServiceDetail, error) {
	st := a.store.State()
	sv, ok := st.Services[name]
	if !ok {
		return nil, cdb.Refuse(cdb.ErrNotFound, "service %s does not exist (see `vigil service list`)", name)
	}
	start, renewals := a.term.snapshot()
	now := time.Now()
	if start.IsZero() {
		// Not the director: explain from this member's view, taking the
		// members it sees UP as renewing.
		start = now.Add(-time.Hour)
		renewals = map[string]time.Time{}
		for n, p := range a.ml.Peers() {
			if p.Up() {
				renewals[n] = now
			}
		}
		renewals[a.cfg.Name] = now
	}
	in, _ := a.directorInput(st, now, start, renewals)
	why := director.Explain(in, name)
	if stale, reason := a.staleness(); stale {
		why = "(" + reason + ")\n" + why
	}
	return &client.ServiceDetail{ServiceInfo: serviceInfo(name, sv), Spec: sv.Spec, Why: why}, nil
}

// ServiceAction implements api.Backend.
func (a *Agent) ServiceAction(ctx context.Context, name, action, to, by string) error {
	r := &cdb.ServiceRequest{Service: name}
	switch action {
	case "online":
		r.Target = director.TargetOnline
	case "offline":
		r.Target = director.TargetOffline
	case "clear":
		r.Clear = true
	case "relocate":
		if to == "" {
			return cdb.Refuse(cdb.ErrInvalid, "relocate needs --to MEMBER")
		}
		r.RelocateTo = to
	default:
		return cdb.Refuse(cdb.ErrNotFound, "no service action %q: use online, offline, clear or relocate", action)
	}
	if _, err := a.write(ctx, &cdb.Command{Op: cdb.OpServiceRequest, By: by, Request: r}); err != nil {
		return err
	}
	a.log.Info("service request", "service", name, "action", action, "to", to, "by", by)
	return nil
}

// DeleteService implements api.Backend: take it offline, wait until no
// member owns it, then delete it.
func (a *Agent) DeleteService(ctx context.Context, name, by string) error {
	var exists bool
	a.store.View(func(s *cdb.State) { _, exists = s.Services[name] })
	if !exists {
		return cdb.Refuse(cdb.ErrNotFound, "service %s does not exist (see `vigil service list`)", name)
	}
	if err := a.ServiceAction(ctx, name, "offline", "", by); err != nil {
		return err
	}
	for {
		var owner, state string
		a.store.View(func(s *cdb.State) {
			if sv, ok := s.Services[name]; ok {
				owner, state = sv.Status.Owner, string(sv.Status.State)
			}
		})
		if owner == "" {
			break
		}
		select {
		case <-ctx.Done():
			return cdb.Refuse(cdb.ErrUnreachable, "service %s is still %s on %s; it was set offline, try the delete again once it stopped", name, state, owner)
		case <-time.After(50 * time.Millisecond):
		}
	}
	_, err := a.write(ctx, &cdb.Command{Op: cdb.OpServiceDelete, By: by, Member: name})
	return err
}

// Drain implements api.Backend.
func (a *Agent) Drain(ctx context.Context, member string, on bool, by string) error {
	_, err := a.write(ctx, &cdb.Command{Op: cdb.OpMemberDrain, By: by, Member: member, Flag: on})
	return err
}

// SetMaintenance implements api.Backend.
func (a *Agent) SetMaintenance(ctx context.Context, on bool, by string) error {
	_, err := a.write(ctx, &cdb.Command{Op: cdb.OpMaintenance, By: by, Flag: on})
	if err == nil {
		a.log.Warn(fmt.Sprintf("maintenance mode %v", map[bool]string{true: "on: nothing is started, stopped or moved", false: "off"}[on]), "by", by)
	}
	return err
}
