package agent

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/cdb"
	"github.com/vigil-cluster/vigil/internal/rpc"
)

// linkStats is this member's measure of its links to every other member.
func (a *Agent) linkStats() []client.LinkStat {
	out := []client.LinkStat{}
	for _, s := range a.ml.LinkStats() {
		out = append(out, client.LinkStat{From: a.cfg.Name, To: s.Peer, Link: s.Link, Addr: s.Addr, Up: s.Up,
			Sent: s.Sent, Lost: s.Lost, RTTMicros: s.RTT.Microseconds(), MaxMicros: s.Max.Microseconds(), LastAck: s.LastAck})
	}
	return out
}

func (n *node) Links(ctx context.Context, _ *rpc.Empty) (*rpc.LinksResponse, error) {
	return &rpc.LinksResponse{Links: n.a.linkStats()}, nil
}

// Links implements api.Backend: every member's measure of its links, asked
// in parallel; a member that does not answer says why.
func (a *Agent) Links(ctx context.Context) []client.LinkReport {
	names := a.store.State().MemberNames()
	out := make([]client.LinkReport, len(names))
	var wg sync.WaitGroup
	for i, m := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m == a.cfg.Name {
				out[i] = client.LinkReport{Member: m, Links: a.linkStats()}
				return
			}
			var r rpc.LinksResponse
			if err := a.callMemberWithin(ctx, m, "Links", &rpc.Empty{}, &r, 2*time.Second); err != nil {
				out[i] = client.LinkReport{Member: m, Links: []client.LinkStat{}, Error: err.Error()}
				return
			}
			if r.Links == nil {
				r.Links = []client.LinkStat{}
			}
			out[i] = client.LinkReport{Member: m, Links: r.Links}
		}()
	}
	wg.Wait()
	return out
}

// callMemberWithin calls a read-only method on member m over its links in
// turn, giving each link up to per: on a lossy link a call takes several
// TCP retransmissions.
func (a *Agent) callMemberWithin(ctx context.Context, m, method string, req, resp any, per time.Duration) error {
	addrs := a.dlmAddrs(m)
	if len(addrs) == 0 {
		return cdb.Refuse(cdb.ErrNotFound, "%s is not a member", m)
	}
	var err error
	for _, addr := range addrs {
		cctx, cancel := context.WithTimeout(ctx, per)
		err = a.pool.Call(cctx, addr, method, req, resp)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}
