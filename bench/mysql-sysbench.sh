#!/usr/bin/env bash
# mysql-sysbench.sh: sysbench oltp_point_select and oltp_read_write against
# MariaDB directly and through dbproxy, in the same run, interleaved; prints
# median tps per target and the ratio.
#
#   bench/mysql-sysbench.sh                  # 10 s per run, 3 rounds, 16 threads
#   DURATION=20 ROUNDS=5 THREADS="1 16" bench/mysql-sysbench.sh
#   PERF=1 bench/mysql-sysbench.sh           # also proxy syscalls and context switches per query
#
# Starts its own throwaway MariaDB (Debian package mariadb-server) on a free
# port under a temp dir, and builds dbproxy. Needs sysbench (apt-get install
# sysbench). When HAProxy is installed (apt-get install haproxy) it is run
# as a reference too, in plain TCP mode: a C event-loop relay that does not
# look at the protocol at all, the upper bound for any proxy on the machine.
set -euo pipefail
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-16}
TESTS=${TESTS:-"oltp_point_select oltp_read_write"}
here=$(cd "$(dirname "$0")/.." && pwd)
command -v sysbench >/dev/null || { echo "sysbench not installed: apt-get install sysbench" >&2; exit 1; }
command -v mariadbd >/dev/null || { echo "MariaDB not installed: apt-get install mariadb-server" >&2; exit 1; }

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
. "$here/bench/lib.sh"
work=$(mktemp -d /tmp/dbproxy-sysbench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

myport=$(freeport); pport=$(freeport)
mariadb-install-db --no-defaults --datadir="$work/data" --user="$(id -un)" --auth-root-authentication-method=normal >/dev/null 2>&1
mariadbd --no-defaults --datadir="$work/data" --user="$(id -un)" --port="$myport" --bind-address=127.0.0.1 \
  --socket="$work/sock" --skip-log-bin --skip-name-resolve --max-connections=200 \
  --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=0 >"$work/mariadb.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do mariadb -uroot -h127.0.0.1 -P"$myport" -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
mariadb -uroot -h127.0.0.1 -P"$myport" -e "CREATE DATABASE sbtest; CREATE USER 'sb'@'%' IDENTIFIED BY 'sb'; GRANT ALL ON sbtest.* TO 'sb'@'%'; DELETE FROM mysql.global_priv WHERE User=''; FLUSH PRIVILEGES;"

(cd "$here" && go build -o "$work/dbproxy" ./cmd/dbproxy)
cat >"$work/dbproxy.yaml" <<CONF
listeners:
  - name: mysql
    protocol: mysql
    listen: 127.0.0.1:$pport
    upstream: 127.0.0.1:$myport
    upstream_tls: { mode: disable }
log: { level: warn }
CONF
env ${DBPROXY_ENV:-} "$work/dbproxy" serve --config "$work/dbproxy.yaml" 2>"$work/dbproxy.log" &
pids+=($!)
targets="direct"
if start_haproxy "$work" "$myport"; then
  pids+=("$hapid")
  targets+=" haproxy"
fi
targets+=" dbproxy"
sleep 1

sb() { sysbench "$1" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$2" --mysql-user=sb --mysql-password=sb \
  --mysql-db=sbtest --tables=4 --table-size=10000 --threads="$3" --time="$DURATION" --report-interval=0 "$4"; }
sb oltp_read_write "$myport" 4 prepare >/dev/null

declare -A port=([direct]=$myport [dbproxy]=$pport [haproxy]=${hport:-})
declare -A ppid=([dbproxy]=${pids[1]} [haproxy]=${hapid:-})
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
results="$work/results"; : >"$results"
for round in $(seq "$ROUNDS"); do
  for test in $TESTS; do
    for th in $THREADS; do
      for t in $(rotate "$round" $targets); do
        pp=${ppid[$t]:-}
        before=0; after=0; perfpid=""
        [ -n "$pp" ] && before=$(cpu_ticks "$pp")
        if [ -n "${PERF:-}" ] && [ -n "$pp" ]; then
          perf stat -x, -e context-switches,raw_syscalls:sys_enter -o "$work/perf.out" -p "$pp" & perfpid=$!
        fi
        out=$(sb "$test" "${port[$t]}" "$th" run 2>&1)
        [ -n "$pp" ] && after=$(cpu_ticks "$pp")
        tps=$(awk '/transactions:/ {gsub(/\(/,"",$3); print $3; exit}' <<<"$out")
        queries=$(awk '/queries:/ && !/performed/ {print $2; exit}' <<<"$out")
        extra=""
        if [ -n "$pp" ]; then
          extra=$(awk -v b="$before" -v a="$after" -v hz="$hz" -v q="$queries" 'BEGIN {printf "  proxy cpu %.1f us/query", (a-b)/hz*1e6/q}')
        fi
        if [ -n "$perfpid" ]; then
          kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true
          extra+=$(awk -F, -v q="$queries" '$3 ~ /context-switches/ {cs=$1} $3 ~ /sys_enter/ {sc=$1} END {printf "  %.2f syscalls/query  %.2f ctxsw/query", sc/q, cs/q}' "$work/perf.out")
        fi
        echo "$test $th $t $tps" >>"$results"
        printf 'round %d  %-18s %2d threads  %-8s %10.0f tps%s\n' "$round" "$test" "$th" "$t" "$tps" "$extra" >&2
      done
    done
  done
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "sysbench, 4 tables x 10000 rows, ${DURATION}s x $ROUNDS rounds, median ($(nproc) cores, loopback)"
printf '%-18s %8s %-8s %12s %10s\n' test threads target tps ratio
for test in $TESTS; do
  for th in $THREADS; do
    d=$(awk -v a="$test" -v b="$th" '$1==a && $2==b && $3=="direct" {print $4}' "$results" | median)
    for t in $targets; do
      p=$(awk -v a="$test" -v b="$th" -v t="$t" '$1==a && $2==b && $3==t {print $4}' "$results" | median)
      awk -v a="$test" -v b="$th" -v t="$t" -v d="$d" -v p="$p" 'BEGIN {printf "%-18s %8d %-8s %12.0f %10.2f\n", a, b, t, p, p/d}'
    done
  done
done
