package config

import (
	"net"
	"strconv"
	"strings"
)

// Admin is the operations listener: Prometheus metrics on /metrics,
// liveness on /healthz and readiness on /readyz. It serves no database
// traffic and holds no secret.
type Admin struct {
	// Listen is host:port with a numeric port; an empty host means every
	// interface. It must not share its port with a listener.
	Listen string `yaml:"listen"`
}

// admin checks the admin section: its address, and that it does not take
// the port of a listener (reported at admin.listen, naming the listener).
func (d *decoder) admin(c *Config) {
	if c.Admin == nil {
		return
	}
	const p = "admin.listen"
	host, port, ok := d.hostPort(p, c.Admin.Listen, false)
	if !ok {
		return
	}
	for i, l := range c.Listeners {
		lhost, lport, err := splitListen(l.Listen)
		if err != nil || lport != port {
			continue
		}
		if strings.EqualFold(host, lhost) || isWildcard(host) || isWildcard(lhost) {
			d.errf(p, "address %s conflicts with listeners[%d].listen (same port %d)", clip(c.Admin.Listen), i, port)
			return
		}
	}
}

// splitListen splits a listener address that hostPort already checked;
// an invalid one (reported there) returns an error.
func splitListen(s string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	return host, port, err
}
