#!/usr/bin/env bash
# mysql-sysbench.sh: sysbench oltp_point_select and oltp_read_write against
# MariaDB directly and through dbproxy, in the same run, interleaved; prints
# median tps per target and the ratio.
#
#   bench/mysql-sysbench.sh                  # 10 s per run, 3 rounds, 16 threads
#   DURATION=20 ROUNDS=5 THREADS="1 16" bench/mysql-sysbench.sh
#   PERF=1 bench/mysql-sysbench.sh           # also proxy syscalls and context switches per query
#   BASE=main bench/mysql-sysbench.sh        # also dbproxy built from git revision main
#                                            # (target "base"): before and after in one run
#
# Starts its own throwaway MariaDB (Debian package mariadb-server) on a free
# port under a temp dir, and builds dbproxy. Needs sysbench (apt-get install
# sysbench). When HAProxy is installed (apt-get install haproxy) it is run
# as a reference too, in plain TCP mode: a C event-loop relay that does not
# look at the protocol at all, the upper bound for any proxy on the machine.
set -euo pipefail
THREADS=${THREADS:-16}
TESTS=${TESTS:-"oltp_point_select oltp_read_write"}
here=$(cd "$(dirname "$0")/.." && pwd)
command -v sysbench >/dev/null || { echo "sysbench not installed: apt-get install sysbench" >&2; exit 1; }
. "$here/bench/lib.sh"
bench_workdir dbproxy-sysbench
start_mariadb
pport=$(freeport)
dbproxy_config mysql mysql "$pport" "$myport"
start_dbproxy
targets="direct"
if start_haproxy "$work" "$myport"; then
  pids+=("$hapid")
  targets+=" haproxy"
fi
targets+=" dbproxy"
declare -A port=([direct]=$myport [dbproxy]=$pport [haproxy]=${hport:-})
declare -A ppid=([dbproxy]=$dbproxy_pid [haproxy]=${hapid:-})
if [ -n "${BASE:-}" ]; then
  start_base_dbproxy "$pport"
  port[base]=$base_port ppid[base]=$base_pid
  targets+=" base"
fi
sleep 1

sb() { sysbench "$1" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$2" --mysql-user=sb --mysql-password=sb \
  --mysql-db=sbtest --tables=4 --table-size=10000 --threads="$3" --time="$DURATION" --report-interval=0 "$4"; }
sb oltp_read_write "$myport" 4 prepare >/dev/null

results="$work/results"; : >"$results"
for round in $(seq "$ROUNDS"); do
  for test in $TESTS; do
    for th in $THREADS; do
      for t in $(rotate "$round" $targets); do
        pp=${ppid[$t]:-}
        before=$(cpu_ticks "$pp")
        perf_start "$pp"
        out=$(sb "$test" "${port[$t]}" "$th" run 2>&1)
        after=$(cpu_ticks "$pp")
        tps=$(awk '/transactions:/ {gsub(/\(/,"",$3); print $3; exit}' <<<"$out")
        queries=$(awk '/queries:/ && !/performed/ {print $2; exit}' <<<"$out")
        extra=""
        if [ -n "$pp" ]; then
          extra="  proxy cpu $(cpu_us_per "$before" "$after" "$queries") us/query"
        fi
        perf_stop "$queries" query
        extra+=$perfline
        echo "$test $th $t $tps" >>"$results"
        printf 'round %d  %-18s %2d threads  %-8s %10.0f tps%s\n' "$round" "$test" "$th" "$t" "$tps" "$extra" >&2
      done
    done
  done
done
echo
echo "sysbench, 4 tables x 10000 rows, ${DURATION}s x $ROUNDS rounds, median ($(nproc) cores, loopback)"
printf '%-18s %8s %-8s %12s %10s %11s\n' test threads target tps tps/direct tps/haproxy
for test in $TESTS; do
  for th in $THREADS; do
    d=$(median_of "$results" 4 "$test" "$th" direct)
    h=$d
    [ -n "${hport:-}" ] && h=$(median_of "$results" 4 "$test" "$th" haproxy)
    for t in $targets; do
      p=$(median_of "$results" 4 "$test" "$th" "$t")
      awk -v a="$test" -v b="$th" -v t="$t" -v d="$d" -v h="$h" -v p="$p" 'BEGIN {printf "%-18s %8d %-8s %12.0f %10.2f %11.2f\n", a, b, t, p, p/d, p/h}'
    done
  done
done
