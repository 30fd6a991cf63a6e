#!/usr/bin/env bash
# pg-encrypted.sh: the cost of encryption. pgbench custom scripts on a table
# with 3 encrypted columns (email deterministic, ssn randomized, salary
# randomized bigint) through dbproxy, against the same workload on a
# plaintext table through dbproxy and directly, in the same run, interleaved:
#   select: point lookup by email (deterministic, so it is an equality on
#           ciphertext the proxy computes), returning the decrypted row
#   insert: a new row with all three columns encrypted
#
#   bench/pg-encrypted.sh                      # 10 s per run, 3 rounds, 16 clients
#   DURATION=20 ROUNDS=5 CLIENTS="1 16" bench/pg-encrypted.sh
#   MODE=prepared bench/pg-encrypted.sh        # pgbench -M prepared: values as bound parameters
#   PERF=1 bench/pg-encrypted.sh               # also proxy syscalls and context switches per transaction
#   METRICS=1 WORKLOADS=select bench/pg-encrypted.sh  # the cost of metrics: the encrypted target
#                                              # through a second dbproxy with an admin: section
#   PLAIN_LISTENER=1 bench/pg-encrypted.sh     # also the plaintext table through a second dbproxy
#                                              # without encryption rules (target plain-nolayer):
#                                              # what the encrypting listener costs a statement
#                                              # that never touches an encrypted column
#   BASE=main bench/pg-encrypted.sh            # also the encrypted table through dbproxy built
#                                              # from git revision main (target enc-base):
#                                              # before and after in one run
#
# The summary gives, per workload and clients, the median tps of each
# target, the ratios, the proxy's CPU per transaction (encrypted / plain),
# the per-core figure (transactions per second of proxy CPU: what one core
# of a dedicated proxy host would carry) and the CPU encryption adds per
# statement (encrypted minus plain; each transaction is one statement),
# and the database's CPU per transaction (encrypted / plain: the
# postmaster, its backends, live and exited); then, per workload and clients, the lowest and highest of those two
# comparisons over the rounds, to show how noisy the machine was.
#
# METRICS=1 runs a second dbproxy, the same configuration plus admin: (so
# every listener, key and statement metric is counted), and measures the
# encrypted table through each of the two in rotated order; the summary is
# then metrics-on / metrics-off.
#
# MODE=simple (default) sends literals (every INSERT is a new SQL text, so it
# always misses the proxy's plan cache and pays a full parse); MODE=prepared
# binds parameters, the way drivers and ORMs do.
set -euo pipefail
CLIENTS=${CLIENTS:-16}
ROWS=${ROWS:-1000}
MODE=${MODE:-simple}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
bench_workdir dbproxy-benchenc
start_postgres
dport=$(freeport)
direct="host=127.0.0.1 port=$pgport user=postgres dbname=bench"
proxied="host=127.0.0.1 port=$dport user=postgres dbname=bench"
psql -q "$direct" <<SQL
CREATE TABLE users_enc   (id bigserial PRIMARY KEY, name text, email bytea, ssn bytea, salary bytea);
CREATE INDEX ON users_enc (email);
CREATE TABLE users_plain (id bigserial PRIMARY KEY, name text, email text, ssn text, salary bigint);
CREATE INDEX ON users_plain (email);
-- The insert runs only add rows (nothing for vacuum to reclaim); an
-- autovacuum or analyze they trigger would run during whichever run
-- follows, and be counted as that run's database CPU (more for the
-- encrypted table, whose rows are 2.5 times larger).
ALTER TABLE users_enc SET (autovacuum_enabled = off);
ALTER TABLE users_plain SET (autovacuum_enabled = off);
SQL

dbproxy_config pg postgres "$dport" "$pgport" encrypted
start_dbproxy
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$dport" && break; sleep 0.1; done
if [ -n "${METRICS:-}" ]; then
  mport=$(freeport); aport=$(freeport)
  sed "s/127.0.0.1:$dport/127.0.0.1:$mport/" "$work/dbproxy.yaml" >"$work/dbproxy-admin.yaml"
  printf 'admin: { listen: 127.0.0.1:%s }\n' "$aport" >>"$work/dbproxy-admin.yaml"
  off_pid=$dbproxy_pid
  start_dbproxy "$work/dbproxy-admin.yaml"
  on_pid=$dbproxy_pid
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$mport" && break; sleep 0.1; done
  measured="host=127.0.0.1 port=$mport user=postgres dbname=bench"
fi

if [ -n "${PLAIN_LISTENER:-}" ]; then
  # The same listener without keys: or encryption: sections. Such a
  # listener relays on the server's event loop (no hooks that may wait);
  # an encrypting one on two goroutines per session.
  nport=$(freeport)
  sed -e "s/127.0.0.1:$dport/127.0.0.1:$nport/" -e '/^keys:/,$d' "$work/dbproxy.yaml" >"$work/dbproxy-nolayer.yaml"
  enc_pid=$dbproxy_pid
  start_dbproxy "$work/dbproxy-nolayer.yaml"
  nolayer_pid=$dbproxy_pid dbproxy_pid=$enc_pid
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$nport" && break; sleep 0.1; done
  nolayer="host=127.0.0.1 port=$nport user=postgres dbname=bench"
fi

if [ -n "${BASE:-}" ]; then
  start_base_dbproxy "$dport"
  bport=$base_port
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$bport" && break; sleep 0.1; done
  based="host=127.0.0.1 port=$bport user=postgres dbname=bench"
fi

# Seed both tables through the proxy (the encrypted one can only be written
# through it).
for t in users_enc users_plain; do
  awk -v t="$t" -v n="$ROWS" 'BEGIN { print "BEGIN;"; for (i = 1; i <= n; i++)
    printf "INSERT INTO %s (name, email, ssn, salary) VALUES (%cuser %d%c, %c%d%c, %c%03d-45-6789%c, %d);\n", t, 39, i, 39, 39, i, 39, 39, i % 1000, 39, 1000 * i;
    print "COMMIT;" }' | psql -q -v ON_ERROR_STOP=1 "$proxied" >/dev/null
done

# email holds the row number as text, so that the same script works with
# literals (':id' is substituted inside the quotes) and with parameters.
q="'"; [ "$MODE" = prepared ] && q=""
for t in users_enc users_plain; do
  cat >"$work/select_$t.sql" <<SQL
\\set id random(1, $ROWS)
SELECT id, name, email, ssn, salary FROM $t WHERE email = $q:id$q;
SQL
  cat >"$work/insert_$t.sql" <<SQL
\\set id random($ROWS + 1, 100000000)
INSERT INTO $t (name, email, ssn, salary) VALUES ('new user', $q:id$q, '999-45-6789', :id);
SQL
done

# Sanity: the encrypted lookup returns the decrypted row through the proxy.
got=$(psql -tA "$proxied" -c "SELECT email, ssn, salary FROM users_enc WHERE email = '7'")
[ "$got" = "7|007-45-6789|7000" ] || { echo "sanity check failed: '$got'" >&2; exit 1; }

results="$work/results"; : >"$results"
run() { # name conn table workload clients -> "tps proxy_cpu_us_per_tx db_cpu_us_per_tx[  perf counts]"
  local before after dbefore dafter out tps n pp="$dbproxy_pid"
  [ "$1" = plain-direct ] && pp=""
  [ "$1" = enc-metrics-off ] && pp="$off_pid"
  [ "$1" = enc-metrics-on ] && pp="$on_pid"
  [ "$1" = enc-base ] && pp="$base_pid"
  [ "$1" = plain-nolayer ] && pp="$nolayer_pid"
  # Each run starts with no dirty buffers of the runs before it.
  psql -q "$direct" -c CHECKPOINT
  before=$(cpu_ticks "$pp")
  dbefore=$(pg_cpu_ticks)
  perf_start "$pp"
  out=$(pgbench -n -M "$MODE" -c "$5" -j $(( $5 < 2 ? 1 : 2 )) -T "$DURATION" -f "$work/$4_$3.sql" "$2" 2>&1)
  after=$(cpu_ticks "$pp")
  sleep 0.3 # the run's backends exit and are reaped
  dafter=$(pg_cpu_ticks)
  tps=$(awk '/^tps/ {print $3; exit}' <<<"$out")
  n=$(awk '/^number of transactions actually processed/ {print $NF}' <<<"$out" | cut -d/ -f1)
  if [ -z "$pp" ]; then printf '%s 0' "$tps"; else printf '%s %s' "$tps" "$(cpu_us_per "$before" "$after" "$n")"; fi
  printf ' %s' "$(cpu_us_per "$dbefore" "$dafter" "$n")"
  perf_stop "$n" tx
  echo "$perfline"
}
for round in $(seq "$ROUNDS"); do
  for c in $CLIENTS; do
    for w in ${WORKLOADS:-select insert}; do
      if [ -n "${METRICS:-}" ]; then
        mapfile -t order < <(rotate "$round" "enc-metrics-off|$proxied|users_enc" "enc-metrics-on|$measured|users_enc")
      else
        mapfile -t order < <(rotate "$round" "enc-proxy|$proxied|users_enc" "plain-proxy|$proxied|users_plain" "plain-direct|$direct|users_plain" \
          ${BASE:+"enc-base|$based|users_enc"} ${PLAIN_LISTENER:+"plain-nolayer|$nolayer|users_plain"})
      fi
      for target in "${order[@]}"; do
        IFS='|' read -r name conn table <<<"$target"
        read -r tps cpu dbcpu perfline <<<"$(run "$name" "$conn" "$table" "$w" "$c")"
        echo "$w $c $name $tps $cpu $round $dbcpu" >>"$results"
        printf 'round %d  %-6s %2d clients  %-12s %10.0f tps  proxy cpu %5.1f us/tx  db cpu %5.1f us/tx%s\n' "$round" "$w" "$c" "$name" "$tps" "$cpu" "$dbcpu" \
          "${perfline:+  $perfline}" >&2
      done
    done
  done
done
# two_targets A B: per workload and clients, the median tps of targets A
# and B, A/B, and their proxy CPU per transaction.
two_targets() {
  printf '%-7s %8s %16s %16s %8s %28s\n' workload clients "$1" "$2" "A/B" "proxy_cpu_us/tx(A/B)"
  local w c a b ac bc
  for w in ${WORKLOADS:-select insert}; do
    for c in $CLIENTS; do
      a=$(median_of "$results" 4 "$w" "$c" "$1")
      b=$(median_of "$results" 4 "$w" "$c" "$2")
      ac=$(median_of "$results" 5 "$w" "$c" "$1")
      bc=$(median_of "$results" 5 "$w" "$c" "$2")
      awk -v w="$w" -v c="$c" -v a="$a" -v b="$b" -v ac="$ac" -v bc="$bc" 'BEGIN {
        printf "%-7s %8d %16.0f %16.0f %8.3f %21.1f / %4.1f\n", w, c, a, b, (b > 0 ? a/b : 0), ac, bc}'
    done
  done
}
echo
if [ -n "${METRICS:-}" ]; then
  echo "metrics on (admin:) vs off, encrypted table, pgbench -M $MODE, ${DURATION}s x $ROUNDS rounds, median tps ($(nproc) cores, loopback, PostgreSQL $huge_pages_conf)"
  two_targets enc-metrics-on enc-metrics-off
  curl -s "http://127.0.0.1:$aport/metrics" | grep -E '^dbproxy_(statements_total|handshakes_total|bytes_total|relay_)' || true
  exit 0
fi
echo "encrypted (3 columns) vs plaintext, pgbench -M $MODE, ${DURATION}s x $ROUNDS rounds, median tps ($(nproc) cores, loopback, PostgreSQL $huge_pages_conf)"
printf '%-7s %8s %12s %12s %13s %15s %16s %20s %22s %16s %20s\n' workload clients enc-proxy plain-proxy plain-direct enc/plain-proxy enc/plain-direct "proxy_cpu_us/tx(e/p)" "tps/proxy_cpu_s(e/p)" enc_added_cpu_us "db_cpu_us/tx(e/p)"
for w in ${WORKLOADS:-select insert}; do
  for c in $CLIENTS; do
    e=$(median_of "$results" 4 "$w" "$c" enc-proxy)
    p=$(median_of "$results" 4 "$w" "$c" plain-proxy)
    d=$(median_of "$results" 4 "$w" "$c" plain-direct)
    ec=$(median_of "$results" 5 "$w" "$c" enc-proxy)
    pc=$(median_of "$results" 5 "$w" "$c" plain-proxy)
    edb=$(median_of "$results" 7 "$w" "$c" enc-proxy)
    pdb=$(median_of "$results" 7 "$w" "$c" plain-proxy)
    # per core: transactions per second of proxy CPU, what one core of a
    # dedicated proxy host would carry; and the CPU encryption adds per
    # statement (one statement per transaction)
    awk -v w="$w" -v c="$c" -v e="$e" -v p="$p" -v d="$d" -v ec="$ec" -v pc="$pc" -v edb="$edb" -v pdb="$pdb" 'BEGIN {
      printf "%-7s %8d %12.0f %12.0f %13.0f %15.2f %16.2f %13.1f / %4.1f %13.0f / %6.0f %16.1f %11.1f / %4.1f\n", w, c, e, p, d, e/p, e/d, ec, pc,
        (ec > 0 ? 1e6/ec : 0), (pc > 0 ? 1e6/pc : 0), ec-pc, edb, pdb}'
  done
done
# Per round, the encrypted run against the plaintext run through the same
# proxy: how far apart the rounds were (a noisy machine shows here first).
echo
echo "per round (median of same-round pairs, lowest-highest): enc/plain-proxy tps, and proxy CPU encryption added"
echo "(us per statement); rounds are minutes apart at most, so machine drift cancels better than between medians"
for w in ${WORKLOADS:-select insert}; do
  for c in $CLIENTS; do
    awk -v w="$w" -v c="$c" '$1 == w && $2 == c && $3 == "enc-proxy" {t[$6] = $4; u[$6] = $5}
      $1 == w && $2 == c && $3 == "plain-proxy" {pt[$6] = $4; pu[$6] = $5}
      function med(a, n,   i, j, x) { # median of a[1..n], sorted in place
        for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
        return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
      END {n = 0; for (r in t) if (r in pt && pt[r] > 0) {n++; xs[n] = t[r]/pt[r]; ds[n] = u[r]-pu[r]}
           if (n > 0) {mx = med(xs, n); md = med(ds, n)
             printf "%-7s %8d  tps %.2f (%.2f-%.2f)  added cpu %.1f (%.1f to %.1f)  (%d rounds)\n", w, c, mx, xs[1], xs[n], md, ds[1], ds[n], n}}' "$results"
  done
done
if [ -n "${PLAIN_LISTENER:-}" ]; then
  echo
  echo "plaintext table through the encrypting listener vs through a listener without encryption rules (plain-nolayer), same run"
  two_targets plain-proxy plain-nolayer
fi
[ -n "${BASE:-}" ] || exit 0
echo
echo "encrypted table through dbproxy of this tree vs of $BASE (enc-base), same run"
two_targets enc-proxy enc-base
