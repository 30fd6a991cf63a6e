// Package metrics owns dbproxy's Prometheus metrics: their names, types,
// labels and help texts (docs/metrics.md lists them), the registry that
// holds them, and the handler that exposes them.
//
// A [Metrics] owns its own registry (never the Prometheus default one) and
// holds no global state, so tests and several proxies in one process do
// not share counts. Hot paths observe through handles made once: a
// [Listener] per configured listener, and for data key uses a per-(key,
// operation) entry found in a copy-on-write map. An observation is then an
// atomic add: no lock, no allocation. Every method is safe for concurrent
// use and does nothing on a nil receiver, so that wiring without an admin
// listener passes nil and pays one branch.
//
// The methods are shaped for small consumer-side interfaces: the key cache
// of package crypto/keys (KeyCacheHit, KeyCacheMiss, KeyCacheEviction),
// master key providers of package crypto/kms (ObserveMasterKeyCall) and
// per-field encryption (ObserveKeyUse), and a listener's wire protocol
// handlers and encryption layer ([Listener] is a proxy.Observer: logins,
// bytes, statements by outcome and refusal reason). This package imports
// none of them.
//
// # Boundaries
//
// This package counts and times; it must not touch the wire protocols,
// read or hold key material or plaintext, or serve HTTP itself beyond the
// handler it returns (package admin serves it). Label values are listener
// names, data key names, provider names and fixed words, never values
// from queries or results.
package metrics
