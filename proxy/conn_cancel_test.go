package proxy_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// TestAfterCancel: the function of Conn.AfterCancel runs when the server
// closes the connection hard, whether the server keeps it (the handler's
// own context) or context.AfterFunc does (a cancellable base context, or
// another context); stopped, it does not run when the connection ends.
func TestAfterCancel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		base    bool // a cancellable BaseContext
		derived bool // register on a context derived from the handler's
		stop    bool // stop before the connection ends
	}{
		{name: "own context"},
		{name: "cancellable base", base: true},
		{name: "derived context", derived: true},
		{name: "stopped", stop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := make(chan struct{}, 2)
			registered := make(chan struct{})
			srv := &proxy.Server{Handler: handlerFunc(func(ctx context.Context, c *proxy.Conn) {
				if tc.derived {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					defer cancel()
				}
				stop := c.AfterCancel(ctx, func() { ran <- struct{}{} })
				if tc.stop {
					stop()
				}
				close(registered)
				<-ctx.Done()
			})}
			if tc.base {
				base, cancel := context.WithCancel(context.Background())
				defer cancel()
				srv.BaseContext = func(net.Listener) context.Context { return base }
			}
			addr, _ := serve(t, srv)
			c := dialTest(t, addr)
			defer c.Close()
			<-registered
			_ = srv.Close()
			if !tc.stop {
				<-ran // the test's timeout catches a function that never runs
				return
			}
			// A stopped function is no longer on the connection when the
			// server ends it.
			for srv.NumConns() > 0 {
				time.Sleep(time.Millisecond)
			}
			select {
			case <-ran:
				t.Fatal("a stopped function ran")
			default:
			}
		})
	}
}
