package agent

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-cluster/vigil/client"
)

// metrics are the agent's Prometheus metrics (docs/METRICS.md). Gauges of
// state are read from the agent at each scrape; counters of what this
// member does are counted where it happens; counters of what the cluster
// did are counted from the event log, so every member counts the same.
type metrics struct {
	reg *prometheus.Registry

	renewals, renewalMisses prometheus.Counter
	applySeconds            *prometheus.HistogramVec
	applyRefused            *prometheus.CounterVec

	events          *prometheus.CounterVec
	directorChanges prometheus.Counter
	transitions     *prometheus.CounterVec
	failovers       *prometheus.CounterVec
	failoverSeconds prometheus.Histogram
	methodSeconds   *prometheus.HistogramVec
	fences          *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.renewals = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_lease_renewals_total", Help: "Lease renewals this member asked for and got."})
	m.renewalMisses = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_lease_renewal_misses_total", Help: "Lease renewals this member asked for and did not get."})
	m.applySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_cdb_apply_seconds",
		Help:    "Time to commit and apply a cluster database command, on the director, by command.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"op"})
	m.applyRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_cdb_apply_refused_total", Help: "Commands the cluster database refused or could not commit, on the director."}, []string{"op"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_events_total", Help: "Events in the cluster's event log, by kind (counted from the log kept here)."}, []string{"kind"})
	m.directorChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_director_changes_total", Help: "Members taking office as director."})
	m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_service_transitions_total", Help: "Service state changes, by service and new state."}, []string{"service", "state"})
	m.failovers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_service_moves_total", Help: "Services ONLINE on another member than before (failovers and relocations)."}, []string{"service"})
	m.failoverSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vigil_service_move_seconds",
		Help:    "From a service leaving ONLINE on one member to ONLINE on another.",
		Buckets: []float64{0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300}})
	m.methodSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_method_seconds",
		Help:    "Duration of the methods orders ran, by method and result.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}, []string{"method", "result"})
	m.fences = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_fence_events_total", Help: "Fencing events, by member."}, []string{"member"})
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.renewals, m.renewalMisses, m.applySeconds, m.applyRefused, m.events, m.directorChanges, m.transitions,
		m.failovers, m.failoverSeconds, m.methodSeconds, m.fences)
	return m
}

func (m *metrics) renewed(ok bool) {
	if ok {
		m.renewals.Inc()
	} else {
		m.renewalMisses.Inc()
	}
}

func (m *metrics) applied(op string, d time.Duration, err error) {
	if err != nil {
		m.applyRefused.WithLabelValues(op).Inc()
		return
	}
	m.applySeconds.WithLabelValues(op).Observe(d.Seconds())
}

// serviceTrack is what the event counter remembers of a service.
type serviceTrack struct {
	state, owner string
	onlineOn     string    // the member it was last ONLINE on
	leftOnline   time.Time // when it last left ONLINE
}

// countEvents counts the cluster's events from the event log, from its
// start, until ctx ends.
func (a *Agent) countEvents(ctx context.Context) {
	m := a.metrics
	svcs := map[string]*serviceTrack{}
	var after uint64
	for {
		evs, more := a.store.Events(client.EventFilter{After: after})
		for i := range evs {
			e := &evs[i]
			after = e.Seq
			m.events.WithLabelValues(e.Kind).Inc()
			switch e.Kind {
			case client.EventDirector:
				m.directorChanges.Inc()
			case client.EventFence:
				m.fences.WithLabelValues(e.Member).Inc()
			case client.EventMethod:
				for _, st := range e.Steps {
					res := "ok"
					if st.Error != "" {
						res = "failed"
					}
					m.methodSeconds.WithLabelValues(st.Method, res).Observe(float64(st.DurationMS) / 1000)
				}
			case client.EventService:
				if e.State == "" {
					continue
				}
				t := svcs[e.Service]
				if t == nil {
					t = &serviceTrack{}
					svcs[e.Service] = t
				}
				m.transitions.WithLabelValues(e.Service, e.State).Inc()
				if t.state == "ONLINE" && e.State != "ONLINE" {
					t.leftOnline = e.At
				}
				if e.State == "ONLINE" {
					if t.onlineOn != "" && t.onlineOn != e.Member {
						m.failovers.WithLabelValues(e.Service).Inc()
						if !t.leftOnline.IsZero() {
							m.failoverSeconds.Observe(e.At.Sub(t.leftOnline).Seconds())
						}
					}
					t.onlineOn = e.Member
				}
				t.state, t.owner = e.State, e.Member
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.removed:
			return
		case <-more:
		}
	}
}

// stateCollector reads the agent's state at each scrape.
type stateCollector struct{ a *Agent }

var (
	descMemberUp   = prometheus.NewDesc("vigil_member_up", "1 when the member is UP as this member sees it.", []string{"member", "state"}, nil)
	descLinkUp     = prometheus.NewDesc("vigil_link_up", "1 when the member is heard on the link (this member's view).", []string{"member", "link"}, nil)
	descQuorum     = prometheus.NewDesc("vigil_quorum", "1 when this member's partition has quorum.", nil, nil)
	descVotes      = prometheus.NewDesc("vigil_votes", "Votes: present, expected and needed for quorum.", []string{"kind"}, nil)
	descDirector   = prometheus.NewDesc("vigil_director", "1 for the member this member knows as director.", []string{"member"}, nil)
	descIsDirector = prometheus.NewDesc("vigil_is_director", "1 when this member is the director.", nil, nil)
	descService    = prometheus.NewDesc("vigil_service_state", "1 for each service's state and owner.", []string{"service", "state", "owner"}, nil)
	descEpoch      = prometheus.NewDesc("vigil_service_epoch", "Epoch of the last order for the service.", []string{"service"}, nil)
	descFails      = prometheus.NewDesc("vigil_service_failures", "Failures of a service on a member in its fail record.", []string{"service", "member"}, nil)
	descLeaseValid = prometheus.NewDesc("vigil_lease_valid", "1 when this member holds a valid lease.", nil, nil)
	descCDBIndex   = prometheus.NewDesc("vigil_cdb_applied_index", "Index of the last command applied here.", nil, nil)
	descDLM        = prometheus.NewDesc("vigil_dlm_counter", "Lock manager counters of this member (batches and messages between members, events routed to sessions, views applied, sessions lost).", []string{"counter"}, nil)
	descDLMSess    = prometheus.NewDesc("vigil_dlm_sessions", "Open lock manager sessions on this member.", nil, nil)
	descDLMRoots   = prometheus.NewDesc("vigil_dlm_handoff_roots", "Root resources handed to another member by this one (their hash master), or to this one (owned): resources are mastered where they are used.", []string{"kind"}, nil)
	descDLMReady   = prometheus.NewDesc("vigil_dlm_ready", "1 when this member's lock manager grants (in the view, recovered, quorum).", nil, nil)
	descLinkRTT    = prometheus.NewDesc("vigil_link_rtt_seconds", "Median round trip of this member's latest probes of a member on a link.", []string{"member", "link"}, nil)
	descLinkLoss   = prometheus.NewDesc("vigil_link_loss_ratio", "Share of this member's latest probes of a member on a link that were lost.", []string{"member", "link"}, nil)
	descGossipRej  = prometheus.NewDesc("vigil_gossip_rejected_total", "Gossip packets and streams dropped because the cluster key did not open them.", nil, nil)
	descDLMOps     = prometheus.NewDesc("vigil_dlm_operations_total", "Lock manager requests of this member's clients, by operation.", []string{"op"}, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMemberUp, descLinkUp, descQuorum, descVotes, descDirector, descIsDirector,
		descService, descEpoch, descFails, descLeaseValid, descCDBIndex, descDLM, descDLMSess, descDLMRoots, descDLMReady, descDLMOps, descLinkRTT, descLinkLoss, descGossipRej} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	st := a.Status(context.Background())
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, mb := range st.Members {
		ch <- prometheus.MustNewConstMetric(descMemberUp, prometheus.GaugeValue, b2f(mb.State == client.MemberUp), mb.Name, mb.State)
		for _, l := range mb.Links {
			ch <- prometheus.MustNewConstMetric(descLinkUp, prometheus.GaugeValue, b2f(l.Up), mb.Name, l.Addr)
		}
	}
	ch <- prometheus.MustNewConstMetric(descGossipRej, prometheus.CounterValue, float64(a.ml.Rejected()))
	for _, l := range a.ml.LinkStats() {
		if l.Sent == 0 {
			continue
		}
		link := strconv.Itoa(l.Link)
		ch <- prometheus.MustNewConstMetric(descLinkLoss, prometheus.GaugeValue, float64(l.Lost)/float64(l.Sent), l.Peer, link)
		if l.Sent > l.Lost {
			ch <- prometheus.MustNewConstMetric(descLinkRTT, prometheus.GaugeValue, l.RTT.Seconds(), l.Peer, link)
		}
	}
	ch <- prometheus.MustNewConstMetric(descQuorum, prometheus.GaugeValue, b2f(st.Quorum))
	ch <- prometheus.MustNewConstMetric(descVotes, prometheus.GaugeValue, float64(st.VotesPresent), "present")
	ch <- prometheus.MustNewConstMetric(descVotes, prometheus.GaugeValue, float64(st.ExpectedVotes), "expected")
	ch <- prometheus.MustNewConstMetric(descVotes, prometheus.GaugeValue, float64(st.QuorumNeeded), "needed")
	if st.Director != "" {
		ch <- prometheus.MustNewConstMetric(descDirector, prometheus.GaugeValue, 1, st.Director)
	}
	ch <- prometheus.MustNewConstMetric(descIsDirector, prometheus.GaugeValue, b2f(a.store.IsLeader()))
	state := a.store.State()
	for _, n := range state.ServiceNames() {
		sv := state.Services[n]
		ch <- prometheus.MustNewConstMetric(descService, prometheus.GaugeValue, 1, n, string(sv.Status.State), sv.Status.Owner)
		ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(sv.Status.Epoch), n)
		for _, f := range sv.Status.Fails {
			ch <- prometheus.MustNewConstMetric(descFails, prometheus.GaugeValue, float64(f.Count), n, f.Member)
		}
	}
	valid, _ := a.leaseState()
	ch <- prometheus.MustNewConstMetric(descLeaseValid, prometheus.GaugeValue, b2f(valid))
	ch <- prometheus.MustNewConstMetric(descCDBIndex, prometheus.GaugeValue, float64(a.store.FSMIndex()))
	if a.dlm != nil {
		ds := a.dlm.Stats()
		for name, v := range map[string]uint64{"batches_sent": ds.BatchesSent, "messages_sent": ds.MessagesSent, "retries": ds.Retries,
			"batches_in": ds.BatchesIn, "messages_in": ds.MessagesIn, "refused": ds.Refused, "dropped": ds.Dropped,
			"events_routed": ds.EventsRouted, "views_applied": ds.ViewsApplied, "lost_sessions": ds.LostSessions} {
			ch <- prometheus.MustNewConstMetric(descDLM, prometheus.CounterValue, float64(v), name)
		}
		ch <- prometheus.MustNewConstMetric(descDLMOps, prometheus.CounterValue, float64(ds.Enqueues), "enqueue")
		ch <- prometheus.MustNewConstMetric(descDLMOps, prometheus.CounterValue, float64(ds.Unlocks), "unlock")
		ch <- prometheus.MustNewConstMetric(descDLMOps, prometheus.CounterValue, float64(ds.Cancels), "cancel")
		ch <- prometheus.MustNewConstMetric(descDLMSess, prometheus.GaugeValue, float64(ds.Sessions))
		ch <- prometheus.MustNewConstMetric(descDLMRoots, prometheus.GaugeValue, float64(ds.Handed), "handed")
		ch <- prometheus.MustNewConstMetric(descDLMRoots, prometheus.GaugeValue, float64(ds.Owned), "owned")
		ch <- prometheus.MustNewConstMetric(descDLMReady, prometheus.GaugeValue, b2f(a.dlm.Ready()))
	}
}

// MetricsHandler serves /metrics.
func (a *Agent) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
