// Package evloop runs event loops, each on an epoll instance of its own,
// for sockets that no goroutine waits on: a relayed session whose bytes
// the loop moves itself, from the readiness callback, without waking a
// goroutine per message.
//
// Go's netpoller cannot do this: it has no callback API, and a socket
// registered with it (every net.Conn's is) wakes a runtime thread for
// every readiness change even when no goroutine waits on it. So the
// sockets a loop serves are descriptors of their own, never registered
// with the runtime (see rawio's Lend), and each loop waits in epoll_wait
// as an ordinary blocking system call, whose P the runtime hands to other
// goroutines while it waits.
//
// Each loop runs on a thread of its own (locked), in the SCHED_BATCH
// policy: relaying for many sessions, it should not preempt the processes
// it wakes (a database backend, a client) but run once they yield and
// find several events ready. It lets the scheduler run it every few
// milliseconds, or the runtime's monitor, seeing a goroutine that never
// yields, takes its P away and polls in a tight loop for a while.
//
// Registration, modification and removal happen on the loop's goroutine
// only (from a [Handler] or a function given to [Loop.Do]), so they never
// race with the events being delivered. Each registration has a token
// that is never reused: an event still in the batch of a descriptor
// removed meanwhile, or closed and reused by another socket, finds no
// handler and is dropped.
//
// A handler that finds it must wait after all (a cache miss that needs
// I/O) calls [Loop.Handoff]: a new goroutine takes the loop over, and the
// handler goes on, and waits, on the old one, which leaves the loop when
// the handler returns.
//
// Outside Linux [New] returns an error and callers relay on goroutines.
//
// It owns only the loop; it must not import any dbproxy package.
package evloop
