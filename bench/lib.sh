# lib.sh, sourced by the bench scripts after they set $here (the repository
# root). Functions that start something add its pid to the array pids, and
# bench_workdir's exit trap stops all of them.

# Every script runs each measurement for DURATION seconds, ROUNDS times,
# and reports the median.
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}

# freeport: a TCP port on 127.0.0.1 that was free a moment ago.
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# as_pg CMD...: CMD as the postgres user when run as root (PostgreSQL
# refuses to run as root), else as is.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# Servers (the databases, every proxy) run in a session of their own
# (setsid), as a service manager would start them and as PgBouncer's -d
# and pg_ctl do: where the kernel groups processes by session for CPU
# fairness (autogroup, /proc/sys/kernel/sched_autogroup_enabled), a server
# started from this shell would share one CPU share with the load
# generator, and get scheduled differently from the reference it is
# compared with (measured: twice the context switches per transaction).

# bench_workdir PREFIX: a fresh temporary directory in $work; at exit every
# process in pids is killed, the PostgreSQL of start_postgres stopped and
# the directory removed.
bench_workdir() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -d "$work/pg" ]; then as_pg "$PGBIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; fi
  wait 2>/dev/null || true
  huge_pages_release
  rm -rf "$work"
}

# PostgreSQL's shared memory in huge pages. A backend maps the buffer pool
# page by page as it first touches it: with 4 KiB pages a new backend
# takes a minor fault for every page it reads, which on some virtual
# machines costs tens of microseconds each. A pooler (PgBouncer) keeps its
# server connections, and so warm backends, from one run to the next, while
# a direct connection, HAProxy and dbproxy (no pooling) get new backends
# for every run: measured here, 1.08 minor faults per pgbench -S
# transaction against 0.02 through PgBouncer, and 0.64 of PgBouncer's tps
# for dbproxy where, with huge pages, it ran at 0.85-1.07. With 2 MiB pages a
# backend faults a few dozen times in all, as on Amazon RDS (huge_pages
# on by default). HUGE_PAGES=0 keeps 4 KiB pages.
#
# huge_pages_reserve MB: sets huge_pages_conf to the postgresql.conf line:
# "huge_pages = on" when the kernel has, or (as root) can be given, enough
# free 2 MiB pages for MB of shared memory; otherwise "huge_pages = off"
# and a note on stderr. What it adds to vm.nr_hugepages, bench_cleanup
# takes back.
huge_pages_added=0
huge_pages_reserve() {
  local need free total
  huge_pages_conf="huge_pages = off"
  [ "${HUGE_PAGES:-}" != 0 ] || return 0
  need=$(( ($1 + 1) / 2 ))
  free=$(huge_pages_free)
  if [ "${free:-0}" -lt "$need" ] && [ -w /proc/sys/vm/nr_hugepages ]; then
    total=$(cat /proc/sys/vm/nr_hugepages)
    if echo $(( total + need - free )) >/proc/sys/vm/nr_hugepages 2>/dev/null; then
      huge_pages_added=$(( $(cat /proc/sys/vm/nr_hugepages) - total ))
    fi
    free=$(huge_pages_free)
  fi
  if [ "${free:-0}" -ge "$need" ]; then
    huge_pages_conf="huge_pages = on"
  else
    echo "note: no $need free huge pages (vm.nr_hugepages; root can reserve them): PostgreSQL runs on 4 KiB pages, and" \
      "targets without a pool pay a page fault per buffer a new backend first touches" >&2
  fi
}
# huge_pages_free: 2 MiB pages neither in use nor promised to a mapping.
huge_pages_free() { awk '/^HugePages_Free/ {f = $2} /^HugePages_Rsvd/ {r = $2} END {print f - r + 0}' /proc/meminfo 2>/dev/null || echo 0; }
huge_pages_release() {
  [ "$huge_pages_added" -gt 0 ] || return 0
  echo $(( $(cat /proc/sys/vm/nr_hugepages) - huge_pages_added )) >/proc/sys/vm/nr_hugepages 2>/dev/null || true
  huge_pages_added=0
}

# start_postgres [CONF_LINE...]: a throwaway PostgreSQL (from $PGBIN) in
# $work/pg on a free port, set in pgport, with an empty database bench,
# 128 MB of shared buffers in huge pages where it can have them
# (huge_pages_reserve); each CONF_LINE is one more line of its
# postgresql.conf.
start_postgres() {
  [ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server not installed: apt-get install postgresql" >&2; exit 1; }
  huge_pages_reserve 192 # shared_buffers and PostgreSQL's other shared memory
  chmod 755 "$work"
  if [ "$(id -u)" = 0 ]; then chown postgres "$work"; fi
  pgport=$(freeport)
  as_pg "$PGBIN/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
  cat >>"$work/pg/postgresql.conf" <<CONF
port = $pgport
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
fsync = off
synchronous_commit = off
max_connections = 100
shared_buffers = 128MB
$huge_pages_conf
CONF
  if [ $# -gt 0 ]; then printf '%s\n' "$@" >>"$work/pg/postgresql.conf"; fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null; then
    [ "$huge_pages_conf" = "huge_pages = on" ] || exit 1
    # Huge pages there, but not for PostgreSQL (a container's limits, say).
    echo "note: PostgreSQL did not start with huge pages; running it on 4 KiB pages" >&2
    huge_pages_conf="huge_pages = off"
    sed -i 's/^huge_pages = on$/huge_pages = off/' "$work/pg/postgresql.conf"
    as_pg "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
  fi
  as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$pgport" -U postgres bench
}

# start_mariadb: a throwaway MariaDB (Debian package mariadb-server) in
# $work/data on a free port, set in myport (its process in mariadb_pid),
# with an empty database sbtest and a user sb (password sb) for it.
start_mariadb() {
  command -v mariadbd >/dev/null || { echo "MariaDB not installed: apt-get install mariadb-server" >&2; exit 1; }
  myport=$(freeport)
  mariadb-install-db --no-defaults --datadir="$work/data" --user="$(id -un)" --auth-root-authentication-method=normal >/dev/null 2>&1
  setsid mariadbd --no-defaults --datadir="$work/data" --user="$(id -un)" --port="$myport" --bind-address=127.0.0.1 \
    --socket="$work/sock" --skip-log-bin --skip-name-resolve --max-connections=200 \
    --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=0 >"$work/mariadb.log" 2>&1 &
  mariadb_pid=$!
  pids+=($!)
  for _ in $(seq 100); do mariadb -uroot -h127.0.0.1 -P"$myport" -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
  mariadb -uroot -h127.0.0.1 -P"$myport" -e "CREATE DATABASE sbtest; CREATE USER 'sb'@'%' IDENTIFIED BY 'sb'; GRANT ALL ON sbtest.* TO 'sb'@'%'; DELETE FROM mysql.global_priv WHERE User=''; FLUSH PRIVILEGES;"
}

# dbproxy_config NAME PROTOCOL PORT UPSTREAM_PORT [encrypted]: writes
# $work/dbproxy.yaml, one listener on PORT in front of UPSTREAM_PORT
# (both on 127.0.0.1, no TLS), logging warnings only; with encrypted, also
# a local master key, a file keystore and 3 encrypted columns of table
# users_enc (email deterministic text, ssn randomized text, salary
# randomized bigint).
dbproxy_config() {
  cat >"$work/dbproxy.yaml" <<CONF
listeners:
  - name: $1
    protocol: $2
    listen: 127.0.0.1:$3
    upstream: 127.0.0.1:$4
    upstream_tls: { mode: disable }
log: { level: warn }
CONF
  if [ "${5:-}" = encrypted ]; then
    cat >>"$work/dbproxy.yaml" <<CONF
keys:
  master_key: { provider: local, file: master.key }
  store: { type: file, path: keys.json }
encryption:
  - table: users_enc
    columns:
      - { name: email, mode: deterministic, type: text }
      - { name: ssn, type: text }
      - { name: salary, type: bigint }
CONF
  fi
}

# start_dbproxy [CONFIG]: builds dbproxy, creates the keys of CONFIG
# (default $work/dbproxy.yaml; `dbproxy keys init`, when it has a keys
# section and $work/keys.json does not exist yet) and serves it in the
# background, with $DBPROXY_ENV in its environment; sets dbproxy_pid.
# Its logs go to CONFIG's name with .log for .yaml.
start_dbproxy() {
  local cfg=${1:-$work/dbproxy.yaml}
  (cd "$here" && go build -o "$work/dbproxy" ./cmd/dbproxy)
  if grep -q '^keys:' "$cfg" && [ ! -e "$work/keys.json" ]; then
    "$work/dbproxy" keys init --config "$cfg" >/dev/null
  fi
  setsid env ${DBPROXY_ENV:-} "$work/dbproxy" serve --config "$cfg" 2>"${cfg%.yaml}.log" &
  dbproxy_pid=$!
  pids+=($!)
}

# start_base_dbproxy PORT: builds dbproxy from git revision $BASE and
# serves $work/dbproxy.yaml with its listener on PORT moved to a free port
# (the same keys), with $DBPROXY_ENV and $BASE_ENV in its environment; sets
# base_port and base_pid. Before and after in one run.
start_base_dbproxy() {
  mkdir "$work/base"
  git -C "$here" archive "$BASE" | tar -x -C "$work/base"
  (cd "$work/base" && go build -o "$work/dbproxy-base" ./cmd/dbproxy)
  base_port=$(freeport)
  sed "s/listen: 127.0.0.1:$1/listen: 127.0.0.1:$base_port/" "$work/dbproxy.yaml" >"$work/base.yaml"
  setsid env ${DBPROXY_ENV:-} ${BASE_ENV:-} "$work/dbproxy-base" serve --config "$work/base.yaml" 2>"$work/base.log" &
  base_pid=$!
  pids+=($!)
}

# rotate ROUND WORD...: the words, starting from the ROUND-th (cyclically),
# so that each round runs the targets in another order: the target run
# right after another one in a round measurably gains or loses (caches,
# CPU frequency, the database's state), and rotating spreads that over all.
rotate() {
  local r=$1; shift
  local n=$# i
  local words=("$@")
  for ((i = 0; i < n; i++)); do printf '%s\n' "${words[(i + r - 1) % n]}"; done
}

# start_haproxy WORKDIR UPSTREAM_PORT: HAProxy in plain TCP mode as a
# reference relay (it does not look at the protocol at all); sets hport
# and hapid; returns 1 without haproxy.
start_haproxy() {
  command -v haproxy >/dev/null || return 1
  hport=$(freeport)
  cat >"$1/haproxy.cfg" <<CONF
global
  maxconn 400
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen db
  bind 127.0.0.1:$hport
  server db 127.0.0.1:$2
CONF
  setsid haproxy -f "$1/haproxy.cfg" -db >"$1/haproxy.log" 2>&1 &
  hapid=$!
}

# cpu_ticks PID: user+system clock ticks the process has used so far; 0
# without a PID.
cpu_ticks() { if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then awk '{print $14+$15}' "/proc/$1/stat"; else echo 0; fi; }
hz=$(getconf CLK_TCK)

# pg_cpu_ticks: user+system clock ticks the PostgreSQL of start_postgres
# has used so far: the postmaster, the backends it has reaped (its
# children's times) and those still running. Take it around a run and
# after its backends have exited (sleep a moment) to have the database's
# CPU for the run; 0 without that PostgreSQL.
pg_cpu_ticks() {
  local pm
  pm=$(head -1 "$work/pg/postmaster.pid" 2>/dev/null) || { echo 0; return; }
  { awk '{print $14+$15+$16+$17}' "/proc/$pm/stat"
    for c in $(pgrep -P "$pm"); do awk '{print $14+$15}' "/proc/$c/stat" 2>/dev/null; done
  } | awk '{n += $1} END {print n + 0}'
}

# ctx_switches PID: the context switches (voluntary and not) of all the
# process's threads so far; 0 without a PID. Threads that ended are not
# counted: take it around a run of a long-lived server.
ctx_switches() {
  if [ -n "$1" ] && [ -d "/proc/$1/task" ]; then
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n + 0}'
  else echo 0; fi
}

# per_unit BEFORE AFTER N: (AFTER-BEFORE)/N with two decimals.
per_unit() { awk -v b="$1" -v a="$2" -v n="$3" 'BEGIN {printf "%.2f", (n > 0 ? (a-b)/n : 0)}'; }

# cpu_us_per BEFORE AFTER N: microseconds of CPU per unit of work, the
# process having used AFTER-BEFORE ticks for N units.
cpu_us_per() { awk -v b="$1" -v a="$2" -v hz="$hz" -v n="$3" 'BEGIN {printf "%.1f", (a-b)/hz*1e6/n}'; }

# perf_start PID: with PERF set and a PID, counts the syscalls and context
# switches of the process until perf_stop.
perf_start() {
  perfpid=""
  if [ -n "${PERF:-}" ] && [ -n "$1" ]; then
    perf stat -x, -e context-switches,raw_syscalls:sys_enter -o "$work/perf.out" -p "$1" &
    perfpid=$!
  fi
}

# perf_stop N UNIT: stops perf_start's counting (in the shell that started
# it: perf must have exited before its counts are read) and sets perfline
# to the syscalls and context switches per UNIT, N units having run; to ""
# if it counted nothing.
perf_stop() {
  perfline=""
  [ -n "$perfpid" ] || return 0
  kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true
  perfline=$(awk -F, -v n="$1" -v u="$2" '$3 ~ /context-switches/ {cs=$1} $3 ~ /sys_enter/ {sc=$1}
    END {printf "  %.2f syscalls/%s  %.2f ctxsw/%s", sc/n, u, cs/n, u}' "$work/perf.out")
}

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# median_of FILE COLUMN KEY...: the median of COLUMN over the lines of FILE
# whose first fields are KEY... in that order.
median_of() {
  local file=$1 col=$2; shift 2
  awk -v col="$col" -v keys="$*" 'BEGIN {n = split(keys, k, " ")}
    {for (i = 1; i <= n; i++) if ($i != k[i]) next; print $col}' "$file" | median
}
