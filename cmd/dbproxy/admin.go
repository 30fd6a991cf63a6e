package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/admin"
	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/metrics"
	"github.com/dbproxy/dbproxy/proxy"
)

// adminShutdownTimeout bounds the admin server's shutdown, after the
// listeners' own.
const adminShutdownTimeout = 5 * time.Second

// operations is serve's admin side, when the configuration has an admin:
// section: the metrics, the admin HTTP server, and what its readiness
// checks look at. A nil *operations does nothing, so serve without admin:
// pays nothing.
type operations struct {
	metrics *metrics.Metrics
	server  *admin.Server
	served  chan struct{} // closed when the admin server's Serve returned
	log     *slog.Logger

	// serving is set while the listeners serve: not before they are bound,
	// nor from the start of the shutdown.
	serving atomic.Bool
	// enc is the encryption layer in use (nil: none); a reload replaces it.
	enc atomic.Pointer[encryption]
}

// startOperations binds the admin listener of cfg and serves it; it
// returns nil without an admin: section. /readyz fails until serve marks
// the listeners bound.
func startOperations(cfg *config.Config, logger *slog.Logger) (*operations, error) {
	if cfg.Admin == nil {
		return nil, nil
	}
	log := logger.With(slog.String("component", "admin"))
	o := &operations{metrics: metrics.New(metrics.Options{Version: version}), served: make(chan struct{}), log: log}
	o.server = admin.New(admin.Options{Metrics: o.metrics.Handler(), Checks: o.checks(cfg), Logger: log})
	l, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	go func() {
		defer close(o.served)
		if err := o.server.Serve(l); err != nil {
			log.Error("admin listener failed; metrics and health checks are unavailable", slog.Any("error", err))
		}
	}()
	log.Info("admin listening", slog.String("listen", l.Addr().String()))
	return o, nil
}

// keyUseMonitor counts every use of a data key in the metrics (nil
// without admin:, so that sessions pay nothing).
func (o *operations) keyUseMonitor() fieldcrypt.Monitor {
	if o == nil {
		return nil
	}
	m := o.metrics
	return fieldcrypt.MonitorFunc(func(_ context.Context, u fieldcrypt.Use) {
		m.ObserveKeyUse(keyUseOp(u.Op), u.Column.Key, max(u.Bytes, 0), u.Err)
	})
}

// keyUseOp names a field cipher operation as the metrics do.
func keyUseOp(op fieldcrypt.Op) string {
	if op == fieldcrypt.OpMatch {
		return "lookup"
	}
	return op.String()
}

// stop shuts the admin server down (at exit, after the listeners).
func (o *operations) stop() {
	if o == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminShutdownTimeout)
	defer cancel()
	if err := o.server.Shutdown(ctx); err != nil {
		o.log.Warn("admin shutdown timed out", slog.Any("error", err))
	}
	<-o.served
}

// operations returns the admin side of serve (nil: none).
func (rl *reloader) operations() *operations {
	if rl == nil {
		return nil
	}
	return rl.ops
}

// serve counts the connections of the bound listeners ls (it must run
// before they serve: it sets their ConnState hooks) and makes readiness
// depend on them and on enc. The returned func marks them no longer
// serving, at the start of the shutdown.
func (o *operations) serve(ls []servedListener, enc *encryption) (stopping func()) {
	if o == nil {
		return func() {}
	}
	for _, x := range ls {
		countConnections(x.srv, o.metrics.Listener(x.name))
	}
	o.enc.Store(enc)
	o.serving.Store(true)
	return func() { o.serving.Store(false) }
}

// countConnections makes srv report its connections and limit counters
// to l. srv must not serve yet.
func countConnections(srv *proxy.Server, l *metrics.Listener) {
	prev := srv.ConnState
	srv.ConnState = func(c *proxy.Conn, s proxy.ConnState) {
		switch s {
		case proxy.StateNew:
			l.ConnOpened()
		case proxy.StateClosed:
			l.ConnClosed()
		}
		if prev != nil {
			prev(c, s)
		}
	}
	l.CountServer(func() metrics.ServerCounts {
		c := srv.Counters()
		return metrics.ServerCounts{Refused: c.Refused, Evicted: c.Evicted, IdleTimeouts: c.IdleTimeouts,
			Looped: srv.Looped(), Handoffs: uint64(srv.RelayHandoffs()),
			Streams: uint64(srv.RelayStreams())}
	})
}

// reloaded counts a reload (ok: applied) and makes readiness look at the
// encryption layer now in use.
func (o *operations) reloaded(ok bool, enc *encryption) {
	if o == nil {
		return
	}
	o.metrics.Reloaded(ok)
	o.enc.Store(enc)
}

// cacheObserver is what the key cache reports to (nil: nothing).
func (o *operations) cacheObserver() keys.CacheObserver {
	if o == nil {
		return nil
	}
	return o.metrics
}

// observeMaster times the calls of master key mk of the given provider.
func (o *operations) observeMaster(mk kms.MasterKey, provider string) kms.MasterKey {
	if o == nil {
		return mk
	}
	return kms.Observe(mk, provider, o.metrics)
}

// checks are the readiness checks: the listeners serve; with encryption
// rules, the keystore is readable and the master key reachable; and each
// listener with a catalog: section can log in to its catalog.
func (o *operations) checks(cfg *config.Config) []admin.Check {
	checks := []admin.Check{
		{Name: "listeners", Probe: o.probeListeners},
		{Name: "keystore", Probe: func(ctx context.Context) error { return o.withKeys(ctx, probeKeystore) }},
		{Name: "master_key", Probe: func(ctx context.Context) error {
			return o.withKeys(ctx, func(ctx context.Context, enc *encryption) error { return enc.ring.mgr.CheckMaster(ctx) })
		}},
	}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i] // listeners: do not change on reload
		if lc.Catalog == nil {
			continue
		}
		checks = append(checks, admin.Check{Name: "catalog:" + lc.Name, Probe: func(ctx context.Context) error {
			return o.probeCatalog(ctx, lc, i)
		}})
	}
	return checks
}

func (o *operations) probeListeners(context.Context) error {
	if !o.serving.Load() {
		return errors.New("not serving (starting or shutting down)")
	}
	return nil
}

// withKeys runs probe on the encryption layer in use; without encryption
// rules there is nothing to probe. A key manager closed by a reload
// meanwhile is probed again under its successor.
func (o *operations) withKeys(ctx context.Context, probe func(context.Context, *encryption) error) error {
	for {
		enc := o.enc.Load()
		if enc == nil {
			return nil
		}
		err := probe(ctx, enc)
		if !errors.Is(err, keys.ErrClosed) || o.enc.Load() == enc {
			return err
		}
	}
}

// probeKeystore checks that the keystore can be read: its file exists
// and is readable (a missing one reads as empty), and it lists its keys.
func probeKeystore(ctx context.Context, enc *encryption) error {
	if s := enc.keysCfg.Store; s.Type == config.StoreFile {
		if err := readable(s.Path); err != nil {
			return fmt.Errorf("keystore file %q: %w", s.Path, err)
		}
	}
	return enc.ring.mgr.CheckStore(ctx)
}

// probeCatalog logs in to listener index's catalog as its sessions'
// catalog connections will (quietly: the start-up probe logs why a login
// fails).
func (o *operations) probeCatalog(ctx context.Context, lc *config.Listener, index int) error {
	enc := o.enc.Load()
	if enc == nil {
		return nil // no encryption rules: no catalog is read
	}
	var dbs []string
	for _, s := range enc.specs {
		if s.Database != "" && !slices.Contains(dbs, s.Database) {
			dbs = append(dbs, s.Database)
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	if !probeCatalog(ctx, lc, index, lc.Name, enc.getenv, quiet, dbs) {
		return fmt.Errorf("login as %s to %s failed (dbproxy schema check shows why)", lc.Catalog.User, lc.Upstream)
	}
	return nil
}
