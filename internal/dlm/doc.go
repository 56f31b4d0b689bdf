// Package dlm is the deterministic heart of vigil's distributed lock manager
// (DESIGN.md "Distributed lock manager"): the lock engine of ONE resource
// master, with OpenVMS lock manager semantics ($ENQ/$DEQ).
//
// It owns, for every resource it masters: the granted, conversion and waiting
// queues, the six lock modes and their compatibility, the 64-byte value
// block, the fencing-token counter, completion and blocking notifications,
// parent locks (resource trees) in lockspaces, the owner-level wait-for
// graph and its deadlock victims, and Export/Import of all of it for
// recovery. It keeps DESIGN.md invariant 3 for the resources it masters: two
// incompatible locks are never granted at once.
//
// It must not do I/O, read a clock, start goroutines or know about members,
// leases, quorum or the network: time is passed in, notifications are
// returned as [Event] values from each call (no callbacks), and an [Engine]
// is not safe for concurrent use (its owner serializes calls). Deciding which
// master holds which resource, when to purge a departed member (only once its
// lease is over), the recovery barrier and refusing grants without quorum
// belong to the layer above.
//
// # Rules
//
// A new request is granted at once when the conversion and waiting queues
// are empty and its mode is compatible with every granted lock (an Expedite
// NL request: always); otherwise it waits at the end of the waiting queue, or
// with NoQueue completes at once with [EventNotQueued]. A conversion that is
// compatible with every other granted lock is granted in place (unless
// QueCvt is set and conversions are queued); otherwise it waits at the end of
// the conversion queue, or with NoQueue completes with [EventNotQueued] and
// the lock keeps its mode. Whenever the granted set changes, the conversion
// queue is granted in order while its head is compatible, then, only once it
// is empty, the waiting queue the same way.
//
// Every accepted request gets exactly one completion for its lock id:
// [EventGranted], [EventNotQueued], [EventCanceled] or [EventDeadlock],
// at once or from a later call (unless its owner is purged first). A queued request makes every granted lock
// that is not converting, whose mode is incompatible with the waiting mode
// and which did not ask for NoBlock, receive one [EventBlocking] (once per
// blocker per waiting request, also for locks that start blocking later).
//
// # Choices where VMS or the design leave room
//
//   - Owners are [OwnerID] values {Member, Client}; deadlocks are between
//     owners, and an owner waiting for itself counts (a self-deadlock).
//   - The lock's flags are those of its latest accepted request.
//   - The value block is written when a PW or EX holder converts to an equal
//     or lower mode, or unlocks, with ValBlk and a Value. Every grant of a
//     request with ValBlk reports the value block and whether it is valid
//     (after the write, if the grant wrote it). As in VMS, a resource and its
//     value block disappear with its last lock; a new resource starts with a
//     zero, valid value block.
//   - Fencing tokens are per resource. A new resource starts counting from
//     the highest token the engine has issued or imported (its token floor),
//     so the tokens of a name never go backwards, also when it is deleted and
//     created again, or moves to another master through Export/Import.
//     When a master is lost with its snapshot, the layer above must import
//     a floor above anything it can have issued: a Snapshot with only
//     TokenFloor set (for example the recovery epoch in the high bits).
//   - Sequence numbers come from one engine-wide counter, taken when a
//     request enters the conversion or waiting queue and when a lock enters
//     the granted queue (any grant, or the return of a canceled or aborted
//     conversion). So each queue is in increasing sequence order, and the
//     granted queue is in order of the locks' latest grant.
//   - PurgeOwner and PurgeMember send no completions to the purged owners.
//   - The events of a call come in this order: the request's own
//     completion, the grants in the order they were made, then the
//     blocking notifications sorted by (waiting lock, blocking lock).
//     Detect repeats that order for each victim it aborts.
//   - Limits: names of 1 to [MaxNameLen] bytes, trees [MaxDepth] deep,
//     Options.MaxLocks locks.
//   - See [Engine.WaitEdges], [FindDeadlocks], [Engine.Detect] and
//     [Engine.Import] for the wait-for graph, the victim and the merge rules.
package dlm
