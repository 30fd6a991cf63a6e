// Package faultproxy is a small TCP forwarder for reliability tests: it
// sits between dbproxy and a database and injects network faults that can
// be switched at run time: added latency per direction, a stall (nothing
// forwarded either way, sockets kept open), a reset of every current
// connection (RST), half-open connections (the client side kept open while
// the upstream side is dropped without a word to the client), and refusal
// of new connections.
//
// Why not Shopify's toxiproxy: its Go packages are built around its HTTP
// API server and a process of their own, pull in a web framework, metrics
// and logging dependencies, and it has no half-open fault; toxiproxy/v2 is
// also not among the modules this project has vetted. The faults the
// reliability suite needs fit in a few hundred lines with no dependency,
// and a forwarder in the test process can be checked by goleak.
//
// The package owns its listener, the connections it accepts and the
// upstream connections it dials; Close ends all of them. It is imported by
// tests only.
package faultproxy
