#!/usr/bin/env bash
# pg-mixed.sh: what a session streaming a large encrypted result does to the
# short statements of the other sessions. An encrypting session relays on
# one of the server's event loops, and decrypting a read's worth of rows is
# a step of that loop: the loop's other sessions wait for it. This measures
# how much, against the same proxy with every session on goroutines of its
# own (DBPROXY_RELAY_LOOPS=-1), in the same run, interleaved:
#   foreground: pgbench, encrypted point selects by deterministic email,
#               bound parameters (-M prepared), CLIENTS clients;
#   background: STREAMERS psql sessions, each reading the whole encrypted
#               table (ROWS rows, 3 encrypted columns decrypted) over and
#               over through the same proxy, or none (the reference).
#
#   bench/pg-mixed.sh                          # 8 s per run, 3 rounds, 4 clients, 0 and 2 streamers
#   DURATION=10 ROUNDS=5 STREAMERS="0 1 4" bench/pg-mixed.sh
#   METRICS=1 bench/pg-mixed.sh                # the loop target's streams off the loop and handoffs, per run
#   BASE=HEAD bench/pg-mixed.sh                # also the event loops of dbproxy built from git revision BASE (target base)
#
# Per target and number of streamers it prints the foreground's median tps
# and its median, 99th-percentile and maximum latency (pgbench -l, every
# transaction), and the rows per second the streamers got (whole reads of
# the table completed during the run and the second of head start before
# it; medians over the rounds). Starts its own throwaway PostgreSQL, builds dbproxy, creates a
# local master key and the data keys, and seeds the table through the
# proxy.
set -euo pipefail
CLIENTS=${CLIENTS:-4}
ROWS=${ROWS:-50000}
STREAMERS=${STREAMERS:-"0 2"}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
bench_workdir dbproxy-benchmixed
start_postgres
direct="host=127.0.0.1 port=$pgport user=postgres dbname=bench"
psql -q "$direct" <<SQL
CREATE TABLE users_enc (id bigserial PRIMARY KEY, name text, email bytea, ssn bytea, salary bytea);
CREATE INDEX ON users_enc (email);
SQL

# Two proxies, one configuration: the event loops (the default) and
# goroutines.
lport=$(freeport)
dbproxy_config pg postgres "$lport" "$pgport" encrypted
if [ -n "${METRICS:-}" ]; then
  # The loop target with an admin endpoint: each of its runs reports how
  # many streams left the loop (dbproxy_relay_streams_total) and how many
  # hooks handed it off to wait.
  aport=$(freeport)
  cp "$work/dbproxy.yaml" "$work/loop.yaml"
  printf 'admin: { listen: 127.0.0.1:%s }\n' "$aport" >>"$work/loop.yaml"
  start_dbproxy "$work/loop.yaml"
else
  start_dbproxy
fi
relay_counter() { # NAME: the loop target's counter dbproxy_relay_NAME_total, 0 without METRICS
  if [ -n "${METRICS:-}" ]; then
    curl -s "http://127.0.0.1:$aport/metrics" | awk -v m="dbproxy_relay_$1_total" '$1 ~ "^" m {n += $2} END {print n + 0}'
  else echo 0; fi
}
gport=$(freeport)
sed "s/127.0.0.1:$lport/127.0.0.1:$gport/" "$work/dbproxy.yaml" >"$work/goroutines.yaml"
DBPROXY_ENV="${DBPROXY_ENV:-} DBPROXY_RELAY_LOOPS=-1" start_dbproxy "$work/goroutines.yaml"
for p in "$lport" "$gport"; do
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$p" && break; sleep 0.1; done
done
declare -A port=([loop]=$lport [goroutines]=$gport)
targets="loop goroutines"
if [ -n "${BASE:-}" ]; then
  # The event loops of dbproxy built from git revision BASE, same keys.
  start_base_dbproxy "$lport"
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$base_port" && break; sleep 0.1; done
  port[base]=$base_port
  targets="loop goroutines base"
fi

awk -v n="$ROWS" 'BEGIN { print "BEGIN;"; for (i = 1; i <= n; i++)
  printf "INSERT INTO users_enc (name, email, ssn, salary) VALUES (%cuser %d%c, %c%d%c, %c%03d-45-6789%c, %d);\n", 39, i, 39, 39, i, 39, 39, i % 1000, 39, 1000 * i;
  print "COMMIT;" }' | psql -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$lport user=postgres dbname=bench" >/dev/null
psql -q "$direct" -c "VACUUM ANALYZE users_enc"
cat >"$work/select.sql" <<SQL
\\set id random(1, $ROWS)
SELECT id, name, email, ssn, salary FROM users_enc WHERE email = :id;
SQL
# Sanity: every row comes back decrypted.
n=$(psql -tA "host=127.0.0.1 port=$gport user=postgres dbname=bench" -c "SELECT ssn FROM users_enc" | grep -c -- '-45-6789$')
[ "$n" = "$ROWS" ] || { echo "sanity check failed: $n of $ROWS rows decrypted" >&2; exit 1; }

# stream CONN FILE: reads the whole table through CONN, over and over, in a
# session (process group) of its own, appending the rows of each complete
# read to FILE; sets spid. Stopped with kill -- -$spid.
stream() {
  setsid bash -c 'while :; do psql -tA "$1" -c "SELECT id, name, email, ssn, salary FROM users_enc" | wc -l >>"$2"; done' \
    stream "$1" "$2" &
  spid=$!
}

results="$work/results"; : >"$results"
for round in $(seq "$ROUNDS"); do
  for s in $STREAMERS; do
    for t in $(rotate "$round" $targets); do
      conn="host=127.0.0.1 port=${port[$t]} user=postgres dbname=bench"
      spids=()
      for k in $(seq "$s"); do
        : >"$work/stream.$k"
        stream "$conn" "$work/stream.$k"
        spids+=("$spid")
      done
      streams0=$(relay_counter streams); handoffs0=$(relay_counter handoffs)
      [ "$s" -eq 0 ] || sleep 1 # the streams under way
      rm -f "$work"/fg.*
      out=$(cd "$work" && pgbench -n -M prepared -c "$CLIENTS" -j $(( CLIENTS < 2 ? 1 : 2 )) -T "$DURATION" \
        -l --log-prefix=fg -f "$work/select.sql" "$conn" 2>&1)
      rows=0
      for p in "${spids[@]}"; do
        kill -- "-$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
      done
      for k in $(seq "$s"); do
        rows=$(( rows + $(awk '{n += $1} END {print n + 0}' "$work/stream.$k") ))
      done
      tps=$(awk '/^tps/ {print $3; exit}' <<<"$out")
      # latencies in microseconds, column 3 of pgbench's per-transaction log
      read -r p50 p99 pmax < <(cat "$work"/fg.* | awk '{print $3}' | sort -n |
        awk '{a[NR] = $1} END {printf "%d %d %d\n", a[int(NR*0.5)+1], a[int(NR*0.99)+1], a[NR]}')
      rps=$(awk -v r="$rows" -v d="$DURATION" 'BEGIN {printf "%.0f", r/(d+1)}')
      echo "$t $s $tps $p50 $p99 $pmax $rps $round" >>"$results"
      extra=""
      if [ -n "${METRICS:-}" ] && [ "$t" = loop ]; then
        extra="  streams off the loop $(( $(relay_counter streams) - streams0 )), handoffs $(( $(relay_counter handoffs) - handoffs0 ))"
      fi
      printf 'round %d  %-10s %d streamers  %8.0f tps  latency p50 %6d us  p99 %6d us  max %7d us  streamed %8d rows/s%s\n' \
        "$round" "$t" "$s" "$tps" "$p50" "$p99" "$pmax" "$rps" "$extra" >&2
    done
  done
done

echo
echo "encrypted point selects ($CLIENTS clients, prepared) while STREAMERS sessions read all $ROWS encrypted rows over and over,"
echo "through the same proxy: event loops against goroutines, ${DURATION}s x $ROUNDS rounds, medians ($(nproc) cores, loopback)"
printf '%-10s %9s %9s %12s %12s %12s %14s\n' target streamers tps p50_us p99_us max_us streamed_rows/s
for s in $STREAMERS; do
  for t in $targets; do
    printf '%-10s %9d %9.0f %12.0f %12.0f %12.0f %14.0f\n' "$t" "$s" \
      "$(median_of "$results" 3 "$t" "$s")" "$(median_of "$results" 4 "$t" "$s")" \
      "$(median_of "$results" 5 "$t" "$s")" "$(median_of "$results" 6 "$t" "$s")" \
      "$(median_of "$results" 7 "$t" "$s")"
  done
done
