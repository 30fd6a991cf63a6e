// Package admin is dbproxy's operations HTTP server: /metrics (the handler
// it is given, Prometheus in production), /healthz (liveness: 200 while
// the process serves) and /readyz (readiness: 200 when every registered
// [Check] passes, else 503 with the failing checks as plain text).
//
// Readiness checks run concurrently, each bounded by a timeout, and their
// result is reused for a short while, so that a storm of probes turns into
// at most one round of checks per interval: probes cannot hammer a KMS or
// a database. Concurrent probes of a stale result share one round.
//
// # Boundaries
//
// This package owns the admin listener's HTTP routes, timeouts and the
// readiness bookkeeping. It must not touch the database wire protocols,
// keys or configuration: what the checks probe and what the metrics count
// is wired in by the caller (cmd/dbproxy). Its answers carry check names
// and their errors, which must not hold secrets (the probes' errors name
// files, hosts and key names, never key material or passwords).
package admin
