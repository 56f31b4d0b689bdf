// Package check owns the pure analysis behind the vigil lab's chaos runs and
// failover benchmark: it parses the logs that the lab's workload writers and
// HTTP prober append, finds split-brain (two members running the same service
// at the same instant), checks the lock manager's workload (incompatible
// holders at once, stale fencing tokens accepted), measures availability and
// failover times, summarizes durations, and generates the seeded chaos
// schedule that replays a run.
//
// Everything here is deterministic: the same input gives the same output, and
// a schedule is a pure function of its seed and arguments, so a failing run is
// replayed from its seed. The package must not do I/O beyond reading the
// io.Reader it is handed, read a clock, sleep, start goroutines, or import
// other vigil packages; the lab command (cmd/vigil-lab) runs the cluster,
// injects the faults and feeds the logs in. Times are CLOCK_MONOTONIC
// nanoseconds ("mono"), which all lab namespaces share.
//
// Log parsers never panic on any input: a malformed line is reported as
// "line N: ..." and skipped, and a malformed final line without a trailing
// newline (its writer was killed mid-write) is skipped silently.
package check
