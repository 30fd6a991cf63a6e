package proxy

import (
	"net"
	"time"
)

// DefaultUpstreamKeepalive is the TCP keepalive idle time of the proxy ->
// database socket when none is configured.
const DefaultUpstreamKeepalive = 15 * time.Second

// keepaliveProbes is how many unanswered keepalive probes declare the
// database dead; they are sent idle/3 apart.
const keepaliveProbes = 3

// UpstreamDialer returns the dialer for the proxy -> database leg with
// dead-peer detection tuned by idle: a connection silent for idle gets a
// keepalive probe every idle/3 (at least 1s), and three unanswered probes
// end it — 30s after the database vanished with the default 15s. On
// Linux, TCP_USER_TIMEOUT is set to the same total, so that data written
// to a vanished database and never acknowledged fails the connection
// then too, instead of after the kernel's retransmission limit (about 15
// minutes). idle < 0 leaves both at the operating system's defaults (Go's
// own 15s keepalive is switched off too); 0 means
// DefaultUpstreamKeepalive.
func UpstreamDialer(idle time.Duration) *net.Dialer {
	if idle == 0 {
		idle = DefaultUpstreamKeepalive
	}
	if idle < 0 {
		return &net.Dialer{KeepAlive: -1}
	}
	interval := max(idle/keepaliveProbes, time.Second)
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
		Enable:   true,
		Idle:     idle,
		Interval: interval,
		Count:    keepaliveProbes,
	}}
	setUserTimeout(d, idle+keepaliveProbes*interval)
	return d
}
