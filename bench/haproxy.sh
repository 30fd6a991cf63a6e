# haproxy.sh, sourced by the bench scripts: HAProxy in plain TCP mode as a
# reference relay (it does not look at the protocol at all).
#
#   start_haproxy WORKDIR UPSTREAM_PORT   # sets hport and hapid; returns 1 without haproxy
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
