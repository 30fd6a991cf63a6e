# lib.sh, sourced by the bench scripts.

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
  haproxy -f "$1/haproxy.cfg" -db >"$1/haproxy.log" 2>&1 &
  hapid=$!
}
