#!/usr/bin/env bash
# demo.sh (make demo): the no-Docker quickstart. Starts a throwaway
# PostgreSQL and MariaDB (Debian packages postgresql, mariadb-server) on free
# ports under a temp dir, creates a users table with encrypted columns,
# builds dbproxy, runs `keys init` and `serve` with a generated config, and
# prints the connection strings. Ctrl-C stops everything and removes the dir.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "${PGBIN:-}/initdb" ] || { echo "PostgreSQL server not installed: apt-get install postgresql" >&2; exit 1; }
command -v mariadbd >/dev/null || { echo "MariaDB server not installed: apt-get install mariadb-server" >&2; exit 1; }

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
work=$(mktemp -d /tmp/dbproxy-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$PGBIN/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "building dbproxy (the first build compiles the PostgreSQL parser, pg_query_go: a few minutes) ..."
(cd "$here" && go build -o "$work/dbproxy" ./cmd/dbproxy)

pgport=$(freeport); myport=$(freeport); pgproxy=$(freeport); myproxy=$(freeport); adminport=$(freeport)
mkdir -p "$work/pg" "$work/my"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg"

echo "starting PostgreSQL on 127.0.0.1:$pgport (user app, password app, scram) ..."
as_pg "$PGBIN/initdb" -D "$work/pg" --auth-local=trust --auth-host=scram-sha-256 -U postgres >/dev/null
cat >>"$work/pg/postgresql.conf" <<CONF
port = $pgport
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/pg'
fsync = off
CONF
as_pg "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w start >/dev/null
as_pg psql -q -h "$work/pg" -p "$pgport" -U postgres -c "CREATE ROLE app LOGIN PASSWORD 'app'" -c "CREATE DATABASE app OWNER app"
PGPASSWORD=app psql -q -h 127.0.0.1 -p "$pgport" -U app -d app -f "$here/examples/docker/schema.sql"

echo "starting MariaDB on 127.0.0.1:$myport (user app, password app) ..."
mariadb-install-db --no-defaults --datadir="$work/my" --user="$(id -un)" --auth-root-authentication-method=normal >/dev/null 2>&1
mariadbd --no-defaults --datadir="$work/my" --user="$(id -un)" --port="$myport" --bind-address=127.0.0.1 \
  --socket="$work/my/sock" --skip-log-bin --skip-name-resolve >"$work/my.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do mariadb -uroot -h127.0.0.1 -P"$myport" -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
mariadb -uroot -h127.0.0.1 -P"$myport" -e "CREATE DATABASE app; CREATE USER 'app'@'%' IDENTIFIED BY 'app'; GRANT ALL ON app.* TO 'app'@'%'; DELETE FROM mysql.global_priv WHERE User=''; FLUSH PRIVILEGES;"
mariadb -uapp -papp -h127.0.0.1 -P"$myport" app <"$here/examples/docker/schema-mysql.sql"

# The docker-compose configuration, with this machine's addresses and paths.
sed -e "s|listen: 0.0.0.0:6432|listen: 127.0.0.1:$pgproxy|" \
    -e "s|upstream: postgres:5432|upstream: 127.0.0.1:$pgport|" \
    -e "s|listen: 0.0.0.0:3307|listen: 127.0.0.1:$myproxy|" \
    -e "s|upstream: mysql:3306|upstream: 127.0.0.1:$myport|" \
    -e "s|listen: 0.0.0.0:9187|listen: 127.0.0.1:$adminport|" \
    -e "s|/var/lib/dbproxy/|$work/|" \
    "$here/examples/docker/dbproxy.yaml" >"$work/dbproxy.yaml"
export DBPROXY_PG_CATALOG_PASSWORD=app DBPROXY_MYSQL_CATALOG_PASSWORD=app
"$work/dbproxy" check-config --config "$work/dbproxy.yaml" >/dev/null

echo "creating the master key and data keys (dbproxy keys init) ..."
"$work/dbproxy" keys init --config "$work/dbproxy.yaml"
echo "starting dbproxy serve ..."
"$work/dbproxy" serve --config "$work/dbproxy.yaml" &
pids+=($!)
sleep 1
cat <<MSG

dbproxy is running (config: $work/dbproxy.yaml). Connect through it:
  psql "postgres://app:app@127.0.0.1:$pgproxy/app"
  mariadb -h127.0.0.1 -P$myproxy -uapp -papp app
metrics and health: http://127.0.0.1:$adminport/metrics, /healthz, /readyz
and directly, to see what the database stores:
  psql "postgres://app:app@127.0.0.1:$pgport/app"
  mariadb -h127.0.0.1 -P$myport -uapp -papp app
Ctrl-C stops everything.
MSG
wait "${pids[-1]}"
