#!/usr/bin/env bash
# pg-select.sh: pgbench -S (select-only) directly, through PgBouncer (session
# pooling, the reference proxy) and through dbproxy, in the same run, at 1 and
# 16 clients; prints median tps and mean latency per target and the ratios.
#
#   bench/pg-select.sh                 # defaults: 10 s per run, 3 rounds
#   DURATION=20 ROUNDS=5 bench/pg-select.sh
#   PERF=1 bench/pg-select.sh          # also proxy syscalls and context
#                                      # switches per transaction (linux-perf)
#
# Starts its own throwaway PostgreSQL and PgBouncer (Debian packages
# postgresql, pgbouncer) on free ports under a temp dir, and builds dbproxy.
# When HAProxy is installed (apt-get install haproxy) it is run as a further
# reference in plain TCP mode: a relay that does not look at the protocol,
# the upper bound for any proxy on the machine.
# Rounds interleave the targets, each round in another order (bench/lib.sh),
# so machine drift and position effects hit all of them alike.
set -euo pipefail
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
PERF=${PERF:-}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-"1 16"}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
here=$(cd "$(dirname "$0")/.." && pwd)

command -v pgbouncer >/dev/null || { echo "pgbouncer not installed: apt-get install pgbouncer" >&2; exit 1; }
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server not installed: apt-get install postgresql" >&2; exit 1; }

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
. "$here/bench/lib.sh"
work=$(mktemp -d /tmp/dbproxy-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$work"

pgport=$(freeport); bport=$(freeport); dport=$(freeport)
as_pg "$PGBIN/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
cat >>"$work/pg/postgresql.conf" <<CONF
port = $pgport
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
fsync = off
synchronous_commit = off
max_connections = 100
shared_buffers = 128MB
CONF
as_pg "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$pgport" -U postgres bench
pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$pgport" -U postgres bench >/dev/null 2>&1

cat >"$work/pgbouncer.ini" <<CONF
[databases]
bench = host=127.0.0.1 port=$pgport dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 40
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
CONF
echo '"postgres" ""' >"$work/userlist.txt"
[ "$(id -u)" = 0 ] && chown postgres "$work"/pgbouncer.ini "$work"/userlist.txt
as_pg pgbouncer -d "$work/pgbouncer.ini"

(cd "$here" && go build -o "$work/dbproxy" ./cmd/dbproxy)
cat >"$work/dbproxy.yaml" <<CONF
listeners:
  - name: pg
    protocol: postgres
    listen: 127.0.0.1:$dport
    upstream: 127.0.0.1:$pgport
    upstream_tls:
      mode: disable
log:
  level: warn
CONF
env ${DBPROXY_ENV:-} "$work/dbproxy" serve --config "$work/dbproxy.yaml" 2>"$work/dbproxy.log" &
pids+=($!)
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$dport" && break; sleep 0.1; done
[ -f "$work/pgbouncer.pid" ] && pids+=("$(cat "$work/pgbouncer.pid")")

targets="direct pgbouncer"
hport="" hapid=""
if start_haproxy "$work" "$pgport"; then
  pids+=("$hapid")
  targets+=" haproxy"
fi
targets+=" dbproxy"
declare -A port=([direct]=$pgport [pgbouncer]=$bport [dbproxy]=$dport [haproxy]=$hport)
declare -A ppid=([direct]="" [pgbouncer]="$(cat "$work/pgbouncer.pid" 2>/dev/null || true)" [dbproxy]="${pids[0]}" [haproxy]="$hapid")
# cpu_ticks PID: user+system clock ticks the process has used so far.
cpu_ticks() { if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then awk '{print $14+$15}' "/proc/$1/stat"; else echo 0; fi; }
hz=$(getconf CLK_TCK)
results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
  for c in $CLIENTS; do
    j=$(( c < 2 ? 1 : 2 ))
    for t in $(rotate "$round" $targets); do
      before=$(cpu_ticks "${ppid[$t]}")
      if [ -n "$PERF" ] && [ -n "${ppid[$t]}" ]; then
        perf stat -x, -e context-switches,raw_syscalls:sys_enter -o "$work/perf.$t" -p "${ppid[$t]}" &
        perfpid=$!
      fi
      out=$(pgbench -S -n -c "$c" -j "$j" -T "$DURATION" -h 127.0.0.1 -p "${port[$t]}" -U postgres bench 2>&1)
      after=$(cpu_ticks "${ppid[$t]}")
      perfline=""
      if [ -n "$PERF" ] && [ -n "${ppid[$t]}" ]; then
        kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true
        perfline=$(awk -F, -v n="$(awk '/^number of transactions actually processed/ {print $NF}' <<<"$out" | cut -d/ -f1)" \
          '$3 ~ /context-switches/ {cs=$1} $3 ~ /sys_enter/ {sc=$1} END {printf "  %.2f syscalls/tx  %.2f ctxsw/tx", sc/n, cs/n}' "$work/perf.$t")
      fi
      tps=$(awk '/^tps/ {print $3; exit}' <<<"$out")
      lat=$(awk '/^latency average/ {print $4; exit}' <<<"$out")
      # proxy CPU per transaction, in microseconds
      cpu=$(awk -v b="$before" -v a="$after" -v hz="$hz" -v tps="$tps" -v d="$DURATION" 'BEGIN {printf "%.1f", (a-b)/hz*1e6/(tps*d)}')
      echo "$t $c $tps $lat $cpu" >>"$results"
      printf 'round %d  %-9s %2d clients  %10.0f tps  %7.3f ms  proxy cpu %5.1f us/tx%s\n' "$round" "$t" "$c" "$tps" "$lat" "$cpu" "$perfline" >&2
    done
  done
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "pgbench -S, scale $SCALE, ${DURATION}s x $ROUNDS rounds, median per target ($(nproc) cores, loopback)"
printf '%-10s %8s %12s %12s %14s %18s %16s\n' target clients tps latency_ms tps/direct added_latency_us proxy_cpu_us/tx
for c in $CLIENTS; do
  dt=$(awk -v c="$c" '$1=="direct" && $2==c {print $3}' "$results" | median)
  dl=$(awk -v c="$c" '$1=="direct" && $2==c {print $4}' "$results" | median)
  for t in $targets; do
    tt=$(awk -v t="$t" -v c="$c" '$1==t && $2==c {print $3}' "$results" | median)
    tl=$(awk -v t="$t" -v c="$c" '$1==t && $2==c {print $4}' "$results" | median)
    tc=$(awk -v t="$t" -v c="$c" '$1==t && $2==c {print $5}' "$results" | median)
    awk -v t="$t" -v c="$c" -v tt="$tt" -v tl="$tl" -v dt="$dt" -v dl="$dl" -v tc="$tc" \
      'BEGIN {printf "%-10s %8d %12.0f %12.3f %14.2f %18.0f %16.1f\n", t, c, tt, tl, tt/dt, (tl-dl)*1000, tc}'
  done
done
