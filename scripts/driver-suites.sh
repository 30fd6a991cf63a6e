#!/usr/bin/env bash
# driver-suites.sh (make driver-suites): runs the drivers' own test suites
# (pgx v5.13.0: packages ., pgconn, pgtype, stdlib, pgxpool;
# go-sql-driver/mysql v1.10.1) against throwaway PostgreSQL and MariaDB
# servers in three configurations: directly, through a plain listener, and
# through a listener with encryption rules on a table the suites never
# touch. It prints pass/fail/skip counts per suite and configuration and
# exits non-zero if a test that passes directly does not pass through a
# listener. The work is integration/driver_suites_test.go
# (TestDriverSuites, gated by DBPROXY_DRIVER_SUITES=1).
#
#   scripts/driver-suites.sh            both suites
#   scripts/driver-suites.sh pgx        one suite (pgx | mysql)
#
# DBPROXY_DRIVER_SUITES_OUT=DIR keeps each run's `go test -json` output
# (default: a new directory under /tmp, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

run='^TestDriverSuites$'
case "${1:-}" in
  "") ;;
  pgx | mysql) run="^TestDriverSuites\$/^$1\$" ;;
  *) echo "usage: $0 [pgx|mysql]" >&2; exit 2 ;;
esac
out=${DBPROXY_DRIVER_SUITES_OUT:-$(mktemp -d /tmp/dbproxy-driver-suites.XXXXXX)}
mkdir -p "$out"
start=$(date +%s)
set +e
DBPROXY_DRIVER_SUITES=1 DBPROXY_DRIVER_SUITES_OUT="$out" \
  go test -count=1 -timeout 50m -run "$run" -v ./integration/ >"$out/driver-suites.log" 2>&1
rc=$?
set -e
# The proxy's logs of a failed run are in the full log; show the rest.
grep -v -E '^\s+time=' "$out/driver-suites.log" | grep -v -E '^\s+served_proxy_test.go:[0-9]+: proxy logs:$' || true
echo "driver suites: wall time $(( $(date +%s) - start ))s; raw go test -json output and the full log in $out"
exit $rc
