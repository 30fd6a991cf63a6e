package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// defaultShutdownTimeout applies when the config leaves it zero (the loader
// normally fills it in).
const defaultShutdownTimeout = 30 * time.Second

// runServe builds every listener of cfg, serves until ctx is cancelled
// (SIGINT/SIGTERM), then shuts down gracefully within cfg.ShutdownTimeout.
// It returns an error if a listener cannot be built or bound, or if one
// stops serving unexpectedly.
func runServe(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	return serveWith(ctx, cfg, logger, nil, nil)
}

// reloader loads the configuration again and builds its encryption layer
// (nil when it has no encryption rules); see reload.go.
type reloader struct {
	signals <-chan struct{}
	load    func(ctx context.Context) (*config.Config, *encryption, error)
	ops     *operations // metrics and the admin listener (admin.go); nil: none
	audit   *auditing   // the audit log (audit.go); nil: none
	loops   int         // proxy.Server.RelayLoops of every listener
}

// relayLoops is proxy.Server.RelayLoops for every listener (the default
// without a reloader).
func (rl *reloader) relayLoops() int {
	if rl == nil {
		return 0
	}
	return rl.loops
}

// serveWith is runServe with the encryption layer (nil: none) and, when rl
// is set, a reload on every value from rl.signals (SIGHUP).
func serveWith(ctx context.Context, cfg *config.Config, logger *slog.Logger, enc *encryption, rl *reloader) error {
	// Build every handler before binding anything, so a bad listener
	// fails the start without opening sockets.
	var sws []*swaps
	defer func() { releaseEncryption(sws, enc) }() // enc: the one current at exit
	ls, err := buildListeners(cfg, logger, enc, rl.operations(), rl.relayLoops(), &sws)
	if err != nil {
		return err
	}
	if err := bindListeners(ls); err != nil {
		return err
	}
	rl.auditing().attach(sws)
	stopping := rl.operations().serve(ls, enc)

	errc := make(chan error, len(ls))
	var wg sync.WaitGroup
	if enc != nil {
		// Log in to each catalog once now, so that wrong or missing
		// credentials show in the log at start, and warn about encrypted
		// columns the database does not guard. Neither stops serving.
		snap := *cfg // a reload replaces cfg.Encryption while these run
		getenv := enc.getenv
		for i, x := range ls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				startupChecks(ctx, &snap, i, x.name, getenv, logger)
			}()
		}
	}
	for _, x := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := x.srv.Serve(x.l); !errors.Is(err, proxy.ErrServerClosed) {
				errc <- fmt.Errorf("listener %q: %w", x.name, err)
			}
		}()
	}

	tctx, stopTrim := context.WithCancel(ctx)
	defer stopTrim()
	go trimMemory(tctx, func() int {
		n := 0
		for _, x := range ls {
			n += x.srv.NumConns()
		}
		return n
	}, trimInterval, trimMinDrop, freeOSMemory)

	var serveErr error
	var signals <-chan struct{}
	if rl != nil {
		signals = rl.signals
	}
loop:
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down")
			break loop
		case serveErr = <-errc:
			logger.Error("listener failed; shutting down", slog.Any("error", serveErr))
			break loop
		case <-signals:
			enc = reload(ctx, logger, cfg, enc, rl, sws)
		}
	}
	stopping()
	shutdownListeners(ls, cfg.ShutdownTimeout, logger)
	wg.Wait()
	return serveErr
}

// servedListener is one configured listener while serve runs.
type servedListener struct {
	name string
	lc   *config.Listener
	log  *slog.Logger
	srv  *proxy.Server
	l    net.Listener
}

// buildListeners builds each listener's swaps (its encryption generation)
// and handler, appending the swaps to *sws as it goes (so that the caller
// releases what was built when a later listener fails).
func buildListeners(cfg *config.Config, logger *slog.Logger, enc *encryption, ops *operations, loops int, sws *[]*swaps) ([]servedListener, error) {
	ls := make([]servedListener, 0, len(cfg.Listeners))
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		name := lc.Name
		if name == "" {
			name = string(lc.Protocol)
		}
		log := logger.With(slog.String("listener", name))
		sw := &swaps{index: i, name: name, lc: lc, obs: ops.listenerMetrics(name)}
		b, err := sw.build(logger, enc)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", name, err)
		}
		sw.install(b)
		*sws = append(*sws, sw)
		h, err := newHandler(lc, name, logger, sw) // the handler adds the listener name itself
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", name, err)
		}
		sw.srv = &proxy.Server{Handler: h, Logger: log, Limits: serverLimits(lc.Limits), RelayLoops: loops}
		ls = append(ls, servedListener{name: name, lc: lc, log: log, srv: sw.srv})
	}
	if len(ls) == 0 {
		return nil, errors.New("no listeners configured")
	}
	return ls, nil
}

// bindListeners opens every listener's socket, or none: on a failure the
// sockets opened so far are closed.
func bindListeners(ls []servedListener) error {
	for i := range ls {
		x := &ls[i]
		l, err := net.Listen("tcp", x.lc.Listen)
		if err != nil {
			for _, y := range ls[:i] {
				_ = y.l.Close()
			}
			return fmt.Errorf("listener %q: %w", x.name, err)
		}
		x.l = l
		x.log.Info("listening", slog.String("listen", l.Addr().String()),
			slog.String("protocol", string(x.lc.Protocol)), slog.String("upstream", x.lc.Upstream))
	}
	return nil
}

// shutdownListeners shuts every server down at once: sessions drain at
// their next transaction boundary until timeout (defaultShutdownTimeout when
// unset), then what remains is closed.
func shutdownListeners(ls []servedListener, timeout time.Duration, logger *slog.Logger) {
	if timeout <= 0 {
		timeout = defaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var swg sync.WaitGroup
	for _, x := range ls {
		swg.Add(1)
		go func() {
			defer swg.Done()
			if err := x.srv.Shutdown(sctx); err != nil {
				logger.Warn("shutdown timed out; closed remaining connections",
					slog.String("listener", x.name), slog.Duration("timeout", timeout))
			}
		}()
	}
	swg.Wait()
}

// newHandler translates one listener's configuration into a protocol
// handler, which logs to log with the listener name attached.
func newHandler(lc *config.Listener, name string, log *slog.Logger, sw *swaps) (proxy.Handler, error) {
	var alpn []string
	if lc.Protocol == config.ProtocolPostgres {
		alpn = []string{postgres.ALPN}
	}
	t, err := listenerTLS(lc, alpn...)
	if err != nil {
		return nil, err
	}
	target, err := proxy.ParseTargetSessionAttrs(lc.TargetSessionAttrs)
	if err != nil {
		return nil, err
	}
	lo := proxy.ListenerOptions{
		Name: name, Upstream: lc.Upstream, TargetSessionAttrs: target, Logger: log,
		HandshakeTimeout: lc.Limits.HandshakeTimeout, UpstreamKeepalive: upstreamKeepalive(lc.Limits),
		TLS: t.client, RequireTLS: t.require, UpstreamTLS: t.upstream,
	}
	observe(&lo, sw.obs)
	switch lc.Protocol {
	case config.ProtocolPostgres:
		return postgres.NewHandler(postgres.Options{Interceptor: &sw.pg, ListenerOptions: lo})
	case config.ProtocolMySQL:
		return mysql.NewHandler(mysql.Options{Interceptor: &sw.my, ListenerOptions: lo})
	default:
		return nil, fmt.Errorf("unknown protocol %q", lc.Protocol)
	}
}

// handlerTLS is the TLS part of a protocol handler's options.
type handlerTLS struct {
	client   *tls.Config // client -> proxy leg; nil without a tls: section
	require  bool        // refuse clients without TLS
	upstream proxy.UpstreamTLS
}

// listenerTLS translates a listener's tls: and upstream_tls: sections;
// alpn is the protocol's ALPN name, if it has one.
func listenerTLS(lc *config.Listener, alpn ...string) (handlerTLS, error) {
	var t handlerTLS
	if lc.TLS != nil {
		cfg, err := proxy.ServerTLSConfig(lc.TLS.CertFile, lc.TLS.KeyFile, lc.TLS.ClientCAFile, alpn...)
		if err != nil {
			return t, err
		}
		t.client, t.require = cfg, lc.TLS.Require
	}
	up, err := upstreamTLS(lc)
	if err != nil {
		return t, err
	}
	t.upstream = up
	return t, nil
}

// serverLimits translates a listener's connection limits for its
// proxy.Server (handshake_timeout and upstream_keepalive go to the
// handler's options).
func serverLimits(l config.Limits) proxy.Limits {
	return proxy.Limits{
		MaxConnections:          l.MaxConnections,
		MaxConnectionsPerSource: l.MaxConnectionsPerSource,
		MaxHandshakes:           l.MaxHandshakes,
		IdleTimeout:             l.IdleTimeout,
	}
}

// upstreamKeepalive translates limits.upstream_keepalive, where 0 means
// the operating system's defaults, to the handlers' option, where that is
// negative.
func upstreamKeepalive(l config.Limits) time.Duration {
	if l.UpstreamKeepalive == 0 {
		return -1
	}
	return l.UpstreamKeepalive
}

// upstreamTLS translates upstream_tls; an unset mode means prefer, as in
// libpq.
func upstreamTLS(lc *config.Listener) (proxy.UpstreamTLS, error) {
	mode := string(lc.UpstreamTLS.Mode)
	if mode == "" {
		mode = string(config.SSLPrefer)
	}
	m, err := proxy.ParseSSLMode(mode)
	if err != nil {
		return proxy.UpstreamTLS{}, fmt.Errorf("upstream_tls.mode: %w", err)
	}
	// With several upstream hosts an empty server name is each host's own
	// (see proxy.Upstream).
	u := proxy.UpstreamTLS{Mode: m, ServerName: lc.UpstreamTLS.ServerName}
	if hosts := lc.UpstreamHosts(); u.ServerName == "" && len(hosts) == 1 {
		host, _, err := net.SplitHostPort(hosts[0])
		if err != nil {
			return proxy.UpstreamTLS{}, fmt.Errorf("upstream %q: %w", lc.Upstream, err)
		}
		u.ServerName = host
	}
	if lc.UpstreamTLS.CAFile != "" {
		pool, err := proxy.LoadCertPool(lc.UpstreamTLS.CAFile)
		if err != nil {
			return proxy.UpstreamTLS{}, fmt.Errorf("upstream_tls.ca_file: %w", err)
		}
		u.RootCAs = pool
	}
	return u, nil
}

// startupChecks probes listener index's catalog login and checks the
// guards of its encrypted columns (logging only).
func startupChecks(ctx context.Context, cfg *config.Config, index int, name string, getenv func(string) string, logger *slog.Logger) {
	lc := &cfg.Listeners[index]
	var dbs []string
	seen := map[string]bool{}
	for _, c := range cfg.Columns() {
		if c.Database != "" && !seen[c.Database] {
			seen[c.Database] = true
			dbs = append(dbs, c.Database)
		}
	}
	if !probeCatalog(ctx, lc, index, name, getenv, logger, dbs) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	checkGuards(ctx, lc, index, getenv, logger.With(slog.String("listener", name)), cfg)
}

// reload loads the configuration again and applies its encryption layer
// (reload.go); it returns the encryption layer current afterwards.
func reload(ctx context.Context, logger *slog.Logger, cfg *config.Config, enc *encryption, rl *reloader, sws []*swaps) *encryption {
	next, nextEnc, err := rl.load(ctx)
	if err != nil {
		logReloadError(logger, cfg.Path, err)
		rl.ops.reloaded(false, enc)
		return enc
	}
	if listenersChanged(cfg, next) {
		logger.Warn("reload: listener changes need a restart; applying the rest", slog.String("config", cfg.Path))
	}
	warnAuditChanged(logger, cfg, next)
	cur := applyReload(logger, cfg, enc, next, nextEnc, sws)
	rl.ops.reloaded(cur == nextEnc, cur) // applyReload returns enc when it fails
	return cur
}

// releaseEncryption runs at exit, when every session has ended: it closes
// the listeners' interceptors and releases the encryption layer.
func releaseEncryption(sws []*swaps, enc *encryption) {
	for _, sw := range sws {
		sw.retire()
	}
	enc.close()
}
