#!/usr/bin/env bash
# pg-select.sh: pgbench -S (select-only) directly, through PgBouncer (session
# pooling, the reference proxy) and through dbproxy, in the same run, at 1 and
# 16 clients; prints median tps and mean latency per target and the ratios.
#
#   bench/pg-select.sh                 # defaults: 10 s per run, 3 rounds
#   DURATION=20 ROUNDS=5 bench/pg-select.sh
#   PERF=1 bench/pg-select.sh          # also proxy syscalls and context
#                                      # switches per transaction (linux-perf)
#   BASE=main bench/pg-select.sh       # also dbproxy built from git revision
#                                      # main (target "base"): before and
#                                      # after in one run
#   BASE=HEAD BASE_ENV=GOMAXPROCS=1 bench/pg-select.sh
#                                      # the same binary with another
#                                      # environment (DBPROXY_ENV sets both)
#   HAPROXY=0 bench/pg-select.sh       # without HAProxy
#
# Per proxy it reports its CPU per transaction (from /proc/PID/stat), its
# context switches per transaction (all its threads, from
# /proc/PID/task/*/status) and the per-core figure: transactions per
# second of proxy CPU, what one core of a dedicated proxy host would
# carry.
#
# Starts its own throwaway PostgreSQL and PgBouncer (Debian packages
# postgresql, pgbouncer) on free ports under a temp dir, and builds dbproxy.
# When HAProxy is installed (apt-get install haproxy) it is run as a further
# reference in plain TCP mode: a relay that does not look at the protocol,
# the upper bound for any proxy on the machine.
# Rounds interleave the targets, each round in another order (bench/lib.sh),
# so machine drift and position effects hit all of them alike.
#
# PgBouncer is measured twice. Target "pgbouncer" keeps its pool between
# runs, so its pgbench runs on PostgreSQL backends warmed by the runs
# before (their caches filled, their page tables mapped). Every other
# target's clients get new backends for each run, and "pgbouncer-new" too
# (its server connections closed first, with the admin console's
# RECONNECT): the same database work per run, so what differs is the
# proxy. PostgreSQL runs with huge pages where it can (bench/lib.sh), or
# a new backend's page faults swamp the difference (see
# docs/performance.md). The last lines give dbproxy's ratios to each
# PgBouncer target round by round.
set -euo pipefail
PERF=${PERF:-}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-"1 16"}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
here=$(cd "$(dirname "$0")/.." && pwd)

command -v pgbouncer >/dev/null || { echo "pgbouncer not installed: apt-get install pgbouncer" >&2; exit 1; }
. "$here/bench/lib.sh"
bench_workdir dbproxy-bench
start_postgres
bport=$(freeport); dport=$(freeport)
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
admin_users = postgres
pool_mode = session
max_client_conn = 200
default_pool_size = 40
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
CONF
echo '"postgres" ""' >"$work/userlist.txt"
[ "$(id -u)" = 0 ] && chown postgres "$work"/pgbouncer.ini "$work"/userlist.txt
as_pg pgbouncer -d "$work/pgbouncer.ini"

dbproxy_config pg postgres "$dport" "$pgport"
start_dbproxy
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$dport" && break; sleep 0.1; done
[ -f "$work/pgbouncer.pid" ] && pids+=("$(cat "$work/pgbouncer.pid")")

targets="direct pgbouncer pgbouncer-new"
hport="" hapid=""
if [ "${HAPROXY:-}" != 0 ] && start_haproxy "$work" "$pgport"; then
  pids+=("$hapid")
  targets+=" haproxy"
fi
targets+=" dbproxy"
bpid=$(cat "$work/pgbouncer.pid" 2>/dev/null || true)
declare -A port=([direct]=$pgport [pgbouncer]=$bport [pgbouncer-new]=$bport [dbproxy]=$dport [haproxy]=$hport)
declare -A ppid=([direct]="" [pgbouncer]="$bpid" [pgbouncer-new]="$bpid" [dbproxy]="$dbproxy_pid" [haproxy]="$hapid")
if [ -n "${BASE:-}" ]; then
  start_base_dbproxy "$dport"
  port[base]=$base_port ppid[base]=$base_pid
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "${port[base]}" && break; sleep 0.1; done
  targets+=" base"
fi
results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
  for c in $CLIENTS; do
    j=$(( c < 2 ? 1 : 2 ))
    for t in $(rotate "$round" $targets); do
      if [ "$t" = pgbouncer-new ]; then
        # PgBouncer's server connections closed: new backends, as the
        # targets without a pool get for every run
        psql -q -h 127.0.0.1 -p "$bport" -U postgres -c "RECONNECT bench" pgbouncer >/dev/null ||
          echo "note: PgBouncer's RECONNECT failed (it needs PgBouncer 1.15 or later): pgbouncer-new kept its pool" >&2
      fi
      before=$(cpu_ticks "${ppid[$t]}")
      csb=$(ctx_switches "${ppid[$t]}")
      perf_start "${ppid[$t]}"
      out=$(pgbench -S -n -c "$c" -j "$j" -T "$DURATION" -h 127.0.0.1 -p "${port[$t]}" -U postgres bench 2>&1)
      after=$(cpu_ticks "${ppid[$t]}")
      csa=$(ctx_switches "${ppid[$t]}")
      perf_stop "$(awk '/^number of transactions actually processed/ {print $NF}' <<<"$out" | cut -d/ -f1)" tx
      tps=$(awk '/^tps/ {print $3; exit}' <<<"$out")
      lat=$(awk '/^latency average/ {print $4; exit}' <<<"$out")
      # proxy CPU per transaction, in microseconds
      ntx=$(awk -v tps="$tps" -v d="$DURATION" 'BEGIN {print tps*d}')
      cpu=$(cpu_us_per "$before" "$after" "$ntx")
      cs=$(per_unit "$csb" "$csa" "$ntx")
      echo "$t $c $tps $lat $cpu $cs $round" >>"$results"
      printf 'round %d  %-13s %2d clients  %10.0f tps  %7.3f ms  proxy cpu %5.1f us/tx  %5.2f ctxsw/tx%s\n' \
        "$round" "$t" "$c" "$tps" "$lat" "$cpu" "$cs" "$perfline" >&2
    done
  done
done

echo
echo "pgbench -S, scale $SCALE, ${DURATION}s x $ROUNDS rounds, median per target ($(nproc) cores, loopback, PostgreSQL $huge_pages_conf)"
printf '%-13s %8s %10s %11s %11s %17s %16s %10s %16s\n' target clients tps latency_ms tps/direct added_latency_us proxy_cpu_us/tx ctxsw/tx tps/proxy_cpu_s
for c in $CLIENTS; do
  dt=$(median_of "$results" 3 direct "$c")
  dl=$(median_of "$results" 4 direct "$c")
  for t in $targets; do
    tt=$(median_of "$results" 3 "$t" "$c")
    tl=$(median_of "$results" 4 "$t" "$c")
    tc=$(median_of "$results" 5 "$t" "$c")
    ts=$(median_of "$results" 6 "$t" "$c")
    # per core: transactions per second of proxy CPU ("-" for direct)
    awk -v t="$t" -v c="$c" -v tt="$tt" -v tl="$tl" -v dt="$dt" -v dl="$dl" -v tc="$tc" -v ts="$ts" \
      'BEGIN {pc = tc > 0 ? sprintf("%.0f", 1e6/tc) : "-"
        printf "%-13s %8d %10.0f %11.3f %11.2f %17.1f %16.1f %10.2f %16s\n", t, c, tt, tl, tt/dt, (tl-dl)*1000, tc, ts, pc}'
  done
done
# dbproxy against each PgBouncer target round by round (the same round ran
# them minutes apart at most): tps ratio, CPU per transaction ratio.
echo
echo "dbproxy / PgBouncer per round: tps, proxy CPU per transaction"
for c in $CLIENTS; do
  for ref in pgbouncer pgbouncer-new; do
    awk -v c="$c" -v ref="$ref" '$2 == c && $1 == "dbproxy" {t[$7] = $3; u[$7] = $5}
      $2 == c && $1 == ref {rt[$7] = $3; ru[$7] = $5}
      END {printf "%2d clients, vs %-13s tps", c, ref; for (r = 1; r in t; r++) printf " %.2f", (rt[r] > 0 ? t[r]/rt[r] : 0)
        printf "   cpu"; for (r = 1; r in t; r++) printf " %.2f", (ru[r] > 0 ? u[r]/ru[r] : 0); print ""}' "$results"
  done
done
