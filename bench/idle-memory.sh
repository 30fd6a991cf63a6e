#!/usr/bin/env bash
# idle-memory.sh: resident memory of `dbproxy serve` per idle PostgreSQL
# session, for a plaintext listener, TLS on the client leg, TLS on both
# legs (client and database), and an encrypting listener (each session looks a row up in an encrypted table
# once, then stays idle). Prints VmRSS, RssAnon and Pss per session (from
# /proc/PID/status and smaps_rollup) and the runtime's goroutines, heap and
# stacks, as the binary ships (GOGC and GOMEMLIMIT unset).
#
#   bench/idle-memory.sh             # 10,000 sessions, or as many as fit
#   SESSIONS=2000 bench/idle-memory.sh
#
# It runs TestIdleSessionRSS (integration/idle_rss_test.go): behind the
# proxy is a minimal fake PostgreSQL that answers logins and simple
# queries (a real server cannot run 10,000 backends on a small machine, and
# the proxy's own memory per session does not depend on what answers it);
# the encrypting listener's catalog connection goes through it to a
# throwaway real PostgreSQL (Debian package postgresql). The proxy holds two
# sockets per session and the test process two: with a hard RLIMIT_NOFILE
# of 20,000 and no CAP_SYS_RESOURCE to raise it, 9,900 sessions is the
# most that fits, and that is what is measured.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
DBPROXY_IDLE_SESSIONS=${SESSIONS:-10000} go test -count=1 -timeout 30m -v -run '^TestIdleSessionRSS$' ./integration/ |
  grep -E 'idle sessions:|^\s+\||###|^(ok|FAIL|---)'
