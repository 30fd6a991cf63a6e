#!/usr/bin/env bash
# mysql-encrypted.sh: the cost of encryption on MySQL/MariaDB. sysbench (1.0)
# with a custom Lua workload (bench/mysql-enc-point-select.lua, server-side
# prepared statements) on a table with 3 encrypted columns (email
# deterministic text, ssn randomized text, salary randomized bigint) through
# dbproxy, against the same workload on an identical plaintext table through
# dbproxy and directly, in the same run, interleaved:
#   select: point lookup by email (an equality on the ciphertext the proxy
#           computes), returning the decrypted row
#   insert: a new row with all three columns encrypted (WORKLOADS="select insert")
#
#   bench/mysql-encrypted.sh                       # 10 s per run, 3 rounds, 16 threads, select
#   DURATION=20 ROUNDS=5 THREADS="1 16" WORKLOADS="select insert" bench/mysql-encrypted.sh
#   PERF=1 bench/mysql-encrypted.sh                # also proxy syscalls and context switches per statement
#   MODE=simple bench/mysql-encrypted.sh           # text-protocol queries with literals
#                                                  # (default MODE=prepared)
#   BASE=main bench/mysql-encrypted.sh             # also dbproxy built from git revision
#                                                  # main (targets enc-base, plain-base),
#                                                  # same keys: before and after in one run
#
# Per target it reports the proxy's and the server's CPU per statement (from /proc/PID/stat)
# and the per-core figure, statements per second of proxy CPU; tps/plain is
# the encrypted target against the plaintext table through the same proxy.
#
# Starts its own throwaway MariaDB (Debian package mariadb-server) on a free
# port under a temp dir, builds dbproxy, creates a local master key and the
# data keys (`dbproxy keys init`), and seeds both tables through the proxy
# (so the encrypted table holds real ciphertext). Needs sysbench.
set -euo pipefail
THREADS=${THREADS:-16}
ROWS=${ROWS:-10000}
WORKLOADS=${WORKLOADS:-select}
MODE=${MODE:-prepared}
here=$(cd "$(dirname "$0")/.." && pwd)
lua="$here/bench/mysql-enc-point-select.lua"
command -v sysbench >/dev/null || { echo "sysbench not installed: apt-get install sysbench" >&2; exit 1; }
. "$here/bench/lib.sh"
bench_workdir dbproxy-myenc

start_mariadb
mariadb -uroot -h127.0.0.1 -P"$myport" <<SQL
CREATE TABLE sbtest.users_enc (id bigint AUTO_INCREMENT PRIMARY KEY, name varchar(64),
  email varbinary(512), ssn varbinary(512), salary varbinary(256), KEY (email));
CREATE TABLE sbtest.users_plain (id bigint AUTO_INCREMENT PRIMARY KEY, name varchar(64),
  email varchar(64), ssn varchar(64), salary bigint, KEY (email));
SQL

pport=$(freeport)
dbproxy_config mysql mysql "$pport" "$myport" encrypted
start_dbproxy
for _ in $(seq 50); do mariadb -usb -psb -h127.0.0.1 -P"$pport" sbtest -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

proxied() { mariadb -usb -psb -h127.0.0.1 -P"$pport" sbtest "$@"; }
direct() { mariadb -usb -psb -h127.0.0.1 -P"$myport" sbtest "$@"; }

# Seed both tables through the proxy (the encrypted one can only be written
# through it), 100 rows per INSERT.
for t in users_enc users_plain; do
  awk -v t="$t" -v n="$ROWS" 'BEGIN { for (i = 1; i <= n; i++) {
      if (i % 100 == 1) printf "INSERT INTO %s (name, email, ssn, salary) VALUES ", t; else printf ",";
      printf "(%cuser %d%c, %c%d%c, %c%03d-45-6789%c, %d)", 39, i, 39, 39, i, 39, 39, i % 1000, 39, 1000 * i;
      if (i % 100 == 0 || i == n) print ";" } }' | proxied
done

# Sanity: the encrypted lookup returns the decrypted row through the proxy,
# and the table itself holds no plaintext.
got=$(proxied -N -B -e "SELECT email, ssn, salary FROM users_enc WHERE email = '7'")
[ "$got" = "$(printf '7\t007-45-6789\t7000')" ] || { echo "sanity check failed: '$got'" >&2; exit 1; }
leak=$(direct -N -B -e "SELECT COUNT(*) FROM users_enc WHERE email = '7' OR ssn = '007-45-6789' OR salary = '7000'")
[ "$leak" = 0 ] || { echo "sanity check failed: plaintext in users_enc" >&2; exit 1; }

# targets: name|port|table|pid of the proxy serving it (none for direct)
targets=("enc-proxy|$pport|users_enc|$dbproxy_pid" "plain-proxy|$pport|users_plain|$dbproxy_pid"
  "plain-direct|$myport|users_plain|")
if [ -n "${BASE:-}" ]; then
  start_base_dbproxy "$pport"
  bport=$base_port
  for _ in $(seq 50); do mariadb -usb -psb -h127.0.0.1 -P"$bport" sbtest -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
  targets+=("enc-base|$bport|users_enc|$base_pid" "plain-base|$bport|users_plain|$base_pid")
fi

results="$work/results"; : >"$results"
run() { # port table workload threads: prints "tps statements"
  sysbench "$lua" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$1" --mysql-user=sb --mysql-password=sb \
    --mysql-db=sbtest --table="$2" --rows="$ROWS" --workload="$3" --mode="$MODE" --threads="$4" --time="$DURATION" \
    --report-interval=0 run >"$work/sysbench.out" 2>&1
  awk '/transactions:/ {n=$2; gsub(/\(/,"",$3); print $3, n; exit}' "$work/sysbench.out"
}
for round in $(seq "$ROUNDS"); do
  for th in $THREADS; do
    for w in $WORKLOADS; do
      mapfile -t order < <(rotate "$round" "${targets[@]}")
      for target in "${order[@]}"; do
        IFS='|' read -r name port table pid <<<"$target"
        before=$(cpu_ticks "$pid")
        dbefore=$(cpu_ticks "$mariadb_pid")
        perf_start "$pid"
        read -r tps n < <(run "$port" "$table" "$w" "$th") || true
        after=$(cpu_ticks "$pid")
        dafter=$(cpu_ticks "$mariadb_pid")
        perf_stop "${n:-1}" stmt
        if [ -z "${tps:-}" ]; then
          echo "sysbench failed: $name $w $th; its output, then the proxy's last log lines:" >&2
          tail -n 20 "$work/sysbench.out" >&2; tail -n 20 "$work/dbproxy.log" >&2
          exit 1
        fi
        # proxy CPU per statement, in microseconds (0 for direct)
        cpu=$(cpu_us_per "$before" "$after" "$n")
        # and the server's (mariadbd: all its threads)
        dbcpu=$(cpu_us_per "$dbefore" "$dafter" "$n")
        echo "$w $th $name $tps $cpu $round $dbcpu" >>"$results"
        printf 'round %d  %-6s %2d threads  %-12s %10.0f tps  proxy cpu %5.1f us/stmt  db cpu %5.1f us/stmt%s\n' \
          "$round" "$w" "$th" "$name" "$tps" "$cpu" "$dbcpu" "$perfline" >&2
      done
    done
  done
done
names=$(printf '%s\n' "${targets[@]}" | cut -d'|' -f1 | tr '\n' ' ')
# paired W TH A B COL OP: the median over rounds of A's COL against B's in
# the same round (OP ratio: A/B, diff: A-B): runs of one round are minutes
# apart at most, so machine drift cancels better than between medians.
paired() {
  awk -v w="$1" -v th="$2" -v a="$3" -v b="$4" -v col="$5" -v op="$6" '
    $1 == w && $2 == th && $3 == a {va[$6] = $col}
    $1 == w && $2 == th && $3 == b {vb[$6] = $col}
    END {for (r in va) if (r in vb) print (op == "ratio" ? (vb[r] > 0 ? va[r]/vb[r] : 0) : va[r]-vb[r])}' "$results" |
    if [ "${7:-}" = range ]; then sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2f-%.2f", lo, hi}'; else median; fi
}
echo
echo "MySQL encrypted (3 columns) vs plaintext, sysbench $MODE statements, ${DURATION}s x $ROUNDS rounds ($(nproc) cores, loopback)"
echo "medians per target; tps/plain (range: lowest-highest), tps/direct and added_cpu are medians of same-round pairs against the"
echo "plaintext table through the same proxy (and directly); added_cpu = its proxy CPU minus the plaintext run's;"
echo "db_cpu = the server's CPU per statement (the encrypted rows are larger, their index keys longer)"
printf '%-7s %8s %-13s %8s %10s %10s %11s %16s %14s %16s %13s\n' workload threads target tps tps/plain range tps/direct proxy_cpu_us/st added_cpu_us stmt/proxy_cpu_s db_cpu_us/st
for w in $WORKLOADS; do
  for th in $THREADS; do
    for t in $names; do
      # the plaintext reference of a target: the same proxy on users_plain
      ref=${t/enc-/plain-}
      tt=$(median_of "$results" 4 "$w" "$th" "$t")
      tc=$(median_of "$results" 5 "$w" "$th" "$t")
      td=$(median_of "$results" 7 "$w" "$th" "$t")
      rp=$(paired "$w" "$th" "$t" "$ref" 4 ratio)
      rr=$(paired "$w" "$th" "$t" "$ref" 4 ratio range)
      rd=$(paired "$w" "$th" "$t" plain-direct 4 ratio)
      added=-
      [ "$t" = "$ref" ] || added=$(printf '%.1f' "$(paired "$w" "$th" "$t" "$ref" 5 diff)")
      # per core: statements per second of proxy CPU ("-" for direct)
      awk -v w="$w" -v c="$th" -v t="$t" -v tt="$tt" -v rp="$rp" -v rr="$rr" -v rd="$rd" -v tc="$tc" -v ad="$added" -v td="$td" \
        'BEGIN {pc = tc > 0 ? sprintf("%.0f", 1e6/tc) : "-"
          printf "%-7s %8d %-13s %8.0f %10.2f %10s %11.2f %16.1f %14s %16s %13.1f\n", w, c, t, tt, rp, rr, rd, tc, ad, pc, td}'
    done
  done
done
