package config

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"
)

// Profile sets the memberlist and Raft timings together. The figures behind
// them are in docs/TIMING.md.
type Profile struct {
	Name string
	// Memberlist.
	ProbeInterval    time.Duration
	ProbeTimeout     time.Duration
	SuspicionMult    int
	SuspicionMaxMult int
	GossipInterval   time.Duration
	PushPullInterval time.Duration
	TCPTimeout       time.Duration
	// Raft.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// ApplyTimeout bounds a CDB write.
	ApplyTimeout time.Duration
	// Lease is how long a renewal lets a member keep running its services;
	// Renew is how often members renew; DirectorTick is how often the
	// director decides when nothing wakes it.
	Lease        time.Duration
	Renew        time.Duration
	DirectorTick time.Duration
	// DADWait is how long a floating address's duplicate check listens
	// before the address is added.
	DADWait time.Duration
}

// Profiles are the known timing profiles.
var Profiles = map[string]Profile{
	"fast": {Name: "fast",
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond,
		SuspicionMult: 2, SuspicionMaxMult: 2, GossipInterval: 50 * time.Millisecond,
		PushPullInterval: 10 * time.Second, TCPTimeout: 500 * time.Millisecond,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		ApplyTimeout: 2 * time.Second,
		Lease:        300 * time.Millisecond, Renew: 60 * time.Millisecond, DirectorTick: 20 * time.Millisecond,
		DADWait: 50 * time.Millisecond},
	"lan": {Name: "lan",
		ProbeInterval: 400 * time.Millisecond, ProbeTimeout: 200 * time.Millisecond,
		SuspicionMult: 2, SuspicionMaxMult: 2, GossipInterval: 100 * time.Millisecond,
		PushPullInterval: 15 * time.Second, TCPTimeout: 2 * time.Second,
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond, CommitTimeout: 10 * time.Millisecond,
		ApplyTimeout: 5 * time.Second,
		Lease:        time.Second, Renew: 200 * time.Millisecond, DirectorTick: 50 * time.Millisecond,
		DADWait: 150 * time.Millisecond},
	"campus": {Name: "campus",
		ProbeInterval: 1 * time.Second, ProbeTimeout: 500 * time.Millisecond,
		SuspicionMult: 3, SuspicionMaxMult: 3, GossipInterval: 200 * time.Millisecond,
		PushPullInterval: 30 * time.Second, TCPTimeout: 5 * time.Second,
		HeartbeatTimeout: 1 * time.Second, ElectionTimeout: 1 * time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond, CommitTimeout: 20 * time.Millisecond,
		ApplyTimeout: 10 * time.Second,
		Lease:        3 * time.Second, Renew: 600 * time.Millisecond, DirectorTick: 100 * time.Millisecond,
		DADWait: 300 * time.Millisecond},
	"wan": {Name: "wan",
		ProbeInterval: 3 * time.Second, ProbeTimeout: 2 * time.Second,
		SuspicionMult: 4, SuspicionMaxMult: 4, GossipInterval: 500 * time.Millisecond,
		PushPullInterval: 60 * time.Second, TCPTimeout: 10 * time.Second,
		HeartbeatTimeout: 3 * time.Second, ElectionTimeout: 3 * time.Second,
		LeaderLeaseTimeout: 1500 * time.Millisecond, CommitTimeout: 50 * time.Millisecond,
		ApplyTimeout: 20 * time.Second,
		Lease:        10 * time.Second, Renew: 2 * time.Second, DirectorTick: 250 * time.Millisecond,
		DADWait: time.Second},
}

// ProfileNames lists the profiles in order of speed.
func ProfileNames() []string {
	ns := make([]string, 0, len(Profiles))
	for n := range Profiles {
		ns = append(ns, n)
	}
	sort.Slice(ns, func(i, j int) bool { return Profiles[ns[i]].ProbeInterval < Profiles[ns[j]].ProbeInterval })
	return ns
}

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q is not known: use debug, info, warn or error", s)
}
