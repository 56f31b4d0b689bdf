// Package cluster distributes vigil's lock manager over the members of a
// view (DESIGN.md "Distributed lock manager", docs/DLM.md
// "Distribution"). It owns, on each member, one [Node]: the dlm.Engine of
// the resources the directory gives the member, the map between its
// engine's lock ids and cluster lock ids, the table of the locks the
// member's own clients hold anywhere, and the recovery barrier that rebuilds
// masters when the view changes. It keeps DESIGN.md invariant 3 across
// members: two incompatible locks are never granted at once, also across a
// change of masters.
//
// It must not do I/O, read a clock or start goroutines: time is an
// argument, messages leave through a [Transport] the caller provides and
// arrive through [Node.Deliver], events for the member's clients are
// returned from every call, and a Node is not safe for concurrent use. It
// does not decide views, quorum or fencing (the director and the CDB do:
// it consumes the view and the quorum it is given), nor run deadlock
// searches (the director gathers [Node.WaitEdges] and calls
// [FindDeadlocks] and [Node.AbortDeadlock]).
//
// # Directory and ids
//
// The hash master of a root resource (lockspace, name) is the view member
// with the highest FNV-1a/murmur hash of (lockspace, name, member)
// ([Master]: rendezvous hashing, so a view change moves only the roots of
// members that left or joined); a sub-resource lives with its root. The
// hash master is the root's directory: when another member's client asks
// for a root that has no lock, the hash master hands the root to that
// member, which masters it until it gives it back (unused for
// [Config.IdleReturn]) or the view changes; the hash master forwards the
// other members' operations on it (see handoff.go for how order is kept).
// Lockspaces that [Config.Fixed] names keep their hash masters. A lock's
// cluster id ([LockID]) is {member of its client, that member's counter}:
// unique, and stable when the lock moves. Each master maps it to its
// engine's id.
//
// # Operations
//
// [Node.Enqueue], [Node.Unlock], [Node.Cancel] and [Node.Disconnect] check
// what the member can check alone (flags, mode, names, that the lock or
// parent is one of its clients') and return those errors at once. Then,
// when the member masters the resource, the engine runs the operation in
// the call (no message); otherwise one MsgRequest goes to the master. The
// master answers every request with one MsgUpdate to the requesting
// member: the Reply (refusals become [EventRefused]), the events of its
// clients, and the new [LockState] of each lock of its clients that the
// operation changed. Other members whose clients got events get an
// MsgUpdate too. From these states every member keeps, for its clients'
// locks, what their master holds: queue, modes, flags, sequence number,
// pending conversion value, and the last token and value block seen. A
// disconnect purges the owner at every master of its locks (one request
// to each; value blocks they held at PW or EX become not valid).
//
// # Recovery barrier
//
// Views come from [Node.SetView], only once the members that left are
// fenced or their leases are over. Every message carries the sender's view
// number. For view N each member:
//
//  1. stops granting: its clients' operations and incoming requests are
//     held; requests of older views that it held or that arrive later are
//     dropped without a reply. It purges the locks of owners on members not
//     in the view (their PW/EX value blocks become not valid), and sends
//     MsgFlush(N) with its token floor to every other member. Since pairs
//     are FIFO, a flush from M means every reply and update M sent in an
//     older view has arrived: a request to M still unanswered was dropped
//     (M is alive) or is lost with M (M left).
//  2. cut, once it has every flush: unanswered requests are kept to send
//     again. It drops from its engine the roots it no longer masters,
//     sending their value blocks and tokens to their new masters. For
//     every lock of its clients whose root is not known to be held by its
//     new master, it sends a [LockRecord] to that master. A lock whose last
//     master may have moved on without telling (it left, or the lock was
//     in transit in an interrupted recovery) is sent at a safe granted
//     mode: a queued conversion or an unanswered conversion is sent at the
//     meet of both modes, an unanswered unlock at NL. MsgLocks(N), empty or
//     not, goes to every member; it also tells members whose clients have
//     locks on the dropped roots.
//  3. import, once it has every MsgLocks: it merges the records of the
//     roots it now masters and does not hold into a new engine with what it
//     keeps (dlm.Engine.Import: queues in the old master's sequence order).
//     A resource takes its old master's value block and token when the old
//     master sent them; otherwise its value block is valid only if a
//     surviving PW or EX holder vouches for it (the value it saw at its
//     grant), and its token starts above N<<40 and above every member's
//     floor. A member that gained names (a member left, or it joined)
//     raises its engine's floor the same way, so tokens never go backwards
//     for a name, also one created again elsewhere. It then sends
//     MsgDone(N) to every member (no coordinator: all to all).
//  4. resume, once it has every MsgDone: the unanswered requests are sent
//     again, then the held operations run, in arrival order.
//
// Recovery messages of another view are dropped, except what they say
// about where locks are (a MsgDone of an older view still confirms the
// import of the locks sent then; an older MsgLocks still says which roots
// its sender dropped). Updates of a master are applied whatever their view,
// unless the master left or joined again since: they reflect its engine. A
// newer view during recovery restarts it: what each engine holds and what
// each member knows of its clients' locks stay consistent at every step,
// so the next round starts from them. Messages for a view not applied yet
// are kept until it is.
//
// Tokens rely on no master granting 2^40 times within one view.
//
// # Quorum
//
// Without quorum ([Node.SetQuorum] false; a Node starts without) a member
// grants nothing: client operations and incoming requests are held, and
// recovery waits. With quorum they resume.
package cluster
