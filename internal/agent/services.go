package agent

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/agents"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/director"
	"github.com/vigil-cluster/vigil/internal/lrm"
)

// agentsEnv is what the resource agents get. HA_RSCTMP is per member under
// /run (cleared at boot, as OCF agents expect), so that members sharing a
// host (the demo, the tests) do not see each other's OCF state files.
func (a *Agent) agentsEnv() agents.Env {
	rsc := filepath.Join("/run/vigil", a.cfg.ClusterID+"-"+a.cfg.Name, "rsctmp")
	if err := os.MkdirAll(rsc, 0o700); err != nil {
		rsc = filepath.Join(a.dir, "run", "rsctmp")
	}
	return agents.Env{StateDir: filepath.Join(a.dir, "run"), RscTmp: rsc, Logger: a.log, DADWait: a.prof.DADWait}
}

// lrmLoop runs this member's local resource manager: a probe at start-up,
// then the director's orders on every change, and an abort of everything when
// the lease is about to end without a renewal.
func (a *Agent) lrmLoop(ctx context.Context) {
	a.lrm = lrm.New(ctx, lrm.Options{
		Member: a.cfg.Name, Env: a.agentsEnv(), Log: a.log, Lease: a.leaseState,
		Report: func(ctx context.Context, e director.Event, steps []client.Step) error {
			_, err := a.write(ctx, &cdb.Command{Op: cdb.OpReport, By: "lrm:" + a.cfg.Name, Report: &e, Steps: steps})
			return err
		},
	})
	close(a.lrmReady)
	st := a.store.State() // probe everything this member may have run, preview included
	for n := range lrm.Probe(ctx, st, a.agentsEnv(), a.log) {
		s := st.Services[n].Status
		if s.Owner == a.cfg.Name && (s.State == director.StateOnline || s.State == director.StateStarting) {
			a.log.Info("lrm: adopting a service found running here", "service", n, "epoch", s.Epoch)
			a.lrm.Adopt(n, st.Services[n].Spec, s.Epoch)
			continue
		}
		a.log.Warn("lrm: stopping a service found running here that this member does not own", "service", n, "owner", s.Owner)
		if seq, err := lrm.NewSequence(st.Services[n].Spec, a.agentsEnv()); err == nil {
			seq.Stop(ctx, agents.Call{Service: n}, false)
		}
	}
	// Give the first renewal a lease's time before enforcing aborts.
	grace := time.Now().Add(a.prof.Lease)
	t := time.NewTicker(a.prof.Renew / 2)
	defer t.Stop()
	for {
		if !a.wait(ctx, t.C, a.lrmKick) {
			return
		}
		valid, mustAbort := a.leaseState()
		// Pet the watchdog while this member may run services, or runs
		// none: a hung agent stops petting and the member is reset.
		if a.watchdog != nil && (valid || len(a.lrm.Running()) == 0) {
			a.watchdog.Pet()
		}
		if mustAbort && !valid && time.Now().Before(grace) {
			continue
		}
		if mustAbort && a.freezePolicy() {
			// no-quorum-policy=freeze: keep what runs, start nothing; the
			// others fence this member before they take its services.
			continue
		}
		if mustAbort && len(a.lrm.Running()) > 0 {
			a.log.Warn("lrm: the lease is ending without a renewal: aborting every service here")
			a.lrm.Abort()
			continue
		}
		st := a.store.Applied()
		if !a.caughtUp(st) {
			continue // never act on orders the director may have replaced
		}
		a.lrm.Update(st)
	}
}

// stopServices stops what runs here before the agent exits.
func (a *Agent) stopServices() {
	select {
	case <-a.lrmReady:
	default:
		return
	}
	if len(a.lrm.Running()) == 0 {
		return
	}
	a.log.Info("stopping the services that run here before the agent exits")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.lrm.Stop(ctx)
}

func (a *Agent) freezePolicy() bool {
	freeze := false
	a.store.View(func(s *cdb.State) { freeze = s.Settings["no-quorum-policy"] == "freeze" && len(s.Fencing) > 0 })
	return freeze
}
