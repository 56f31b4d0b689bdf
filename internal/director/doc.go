// Package director owns the placement decisions of the cluster: which member
// runs each service, when a service is started, stopped, restarted, moved,
// frozen or given up as FAILED, when a member must be fenced, and the
// plain-language explanation of each of those choices.
//
// It is one pure function, [Decide]: the state of the cluster database
// (members, services, settings), the events reported since the last call and
// the time, in; decisions, new service statuses and explanations, out. It
// must not do I/O, read a clock, start goroutines, keep state between calls
// or import other vigil packages: a thin loop on the director (the Raft
// leader) translates the cluster database into an [Input] and writes the
// [Output] back. Everything it decides must be safe even if the loop runs it
// again with the same input (it is idempotent) or crashes between calls.
//
// Safety rules it keeps (DESIGN.md, invariant 1: no dual-active):
//   - A service is started on a member only when no other member may still
//     run it: the previous owner confirmed the stop, or it is not UP and was
//     fenced, or its lease has certainly run out (lease × drift margin after
//     the later of its last renewal and the start of this director's term).
//   - Every order to a member (start, restart in place, stop) carries a new,
//     larger epoch; reports with another epoch are stale and ignored.
//   - Without quorum, in maintenance mode, and on a NETPAR member, nothing is
//     started or moved.
package director
