package proxy_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dbproxy/dbproxy/proxy"
)

// TestUpstreamDialerSocketOptions reads back what UpstreamDialer sets on
// the socket: keepalive after 15s idle, probes 5s apart, 3 of them, and
// TCP_USER_TIMEOUT at the same 30s; negative leaves keepalive off.
func TestUpstreamDialerSocketOptions(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	opts := func(d *net.Dialer) (keep, idle, intvl, cnt, user int) {
		t.Helper()
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		get := func(fd int, level, opt int) int {
			v, err := unix.GetsockoptInt(fd, level, opt)
			if err != nil && serr == nil {
				serr = err
			}
			return v
		}
		if err := rc.Control(func(fd uintptr) {
			keep = get(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
			idle = get(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
			intvl = get(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
			cnt = get(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
			user = get(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		}); err != nil {
			t.Fatal(err)
		}
		if serr != nil {
			t.Fatal(serr)
		}
		return
	}
	keep, idle, intvl, cnt, user := opts(proxy.UpstreamDialer(0))
	if keep == 0 || idle != 15 || intvl != 5 || cnt != 3 || user != 30000 {
		t.Fatalf("default: keepalive %d idle %ds interval %ds count %d user timeout %dms; want on, 15, 5, 3, 30000",
			keep, idle, intvl, cnt, user)
	}
	keep, idle, intvl, cnt, user = opts(proxy.UpstreamDialer(60 * time.Second))
	if keep == 0 || idle != 60 || intvl != 20 || cnt != 3 || user != 120000 {
		t.Fatalf("60s: keepalive %d idle %ds interval %ds count %d user timeout %dms", keep, idle, intvl, cnt, user)
	}
	keep, _, _, _, user = opts(proxy.UpstreamDialer(-1))
	if keep != 0 || user != 0 {
		t.Fatalf("off: keepalive %d user timeout %dms, want both off", keep, user)
	}
}
