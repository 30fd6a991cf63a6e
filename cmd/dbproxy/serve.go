package main

import (
	"context"
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
	return serveWith(ctx, cfg, logger, nil)
}

// serveWith is runServe with the encryption layer (nil: none).
func serveWith(ctx context.Context, cfg *config.Config, logger *slog.Logger, enc *encryption) error {
	type listener struct {
		name string
		lc   *config.Listener
		log  *slog.Logger
		srv  *proxy.Server
		l    net.Listener
	}
	// Build every handler before binding anything, so a bad listener
	// fails the start without opening sockets.
	ls := make([]listener, 0, len(cfg.Listeners))
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		name := lc.Name
		if name == "" {
			name = string(lc.Protocol)
		}
		log := logger.With(slog.String("listener", name))
		h, err := newHandler(lc, name, logger, enc) // the handler adds the listener name itself
		if err != nil {
			return fmt.Errorf("listener %q: %w", name, err)
		}
		ls = append(ls, listener{name: name, lc: lc, log: log, srv: &proxy.Server{Handler: h, Logger: log}})
	}
	if len(ls) == 0 {
		return errors.New("no listeners configured")
	}
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

	errc := make(chan error, len(ls))
	var wg sync.WaitGroup
	for _, x := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := x.srv.Serve(x.l); !errors.Is(err, proxy.ErrServerClosed) {
				errc <- fmt.Errorf("listener %q: %w", x.name, err)
			}
		}()
	}

	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case serveErr = <-errc:
		logger.Error("listener failed; shutting down", slog.Any("error", serveErr))
	}

	timeout := cfg.ShutdownTimeout
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
	wg.Wait()
	return serveErr
}

// newHandler translates one listener's configuration into a protocol
// handler, which logs to log with the listener name attached.
func newHandler(lc *config.Listener, name string, log *slog.Logger, enc *encryption) (proxy.Handler, error) {
	switch lc.Protocol {
	case config.ProtocolPostgres:
		return newPostgresHandler(lc, name, log, enc)
	case config.ProtocolMySQL:
		return newMySQLHandler(lc, name, log, enc)
	default:
		return nil, fmt.Errorf("unknown protocol %q", lc.Protocol)
	}
}

func newPostgresHandler(lc *config.Listener, name string, log *slog.Logger, enc *encryption) (*postgres.Handler, error) {
	opts := postgres.Options{Name: name, Upstream: lc.Upstream, Logger: log}
	if enc != nil {
		ic, err := enc.postgresInterceptor(lc, log.With(slog.String("listener", name)))
		if err != nil {
			return nil, err
		}
		opts.Interceptor = ic
	}
	if lc.TLS != nil {
		tlsCfg, err := proxy.ServerTLSConfig(lc.TLS.CertFile, lc.TLS.KeyFile, postgres.ALPN)
		if err != nil {
			return nil, err
		}
		opts.TLS = tlsCfg
		opts.RequireTLS = lc.TLS.Require
	}
	up, err := upstreamTLS(lc)
	if err != nil {
		return nil, err
	}
	opts.UpstreamTLS = up
	return postgres.NewHandler(opts)
}

func newMySQLHandler(lc *config.Listener, name string, log *slog.Logger, enc *encryption) (*mysql.Handler, error) {
	opts := mysql.Options{Name: name, Upstream: lc.Upstream, Logger: log}
	if enc != nil { // never relay plaintext to a database that should hold ciphertext
		ic, err := enc.mysqlInterceptor(log.With(slog.String("listener", name)))
		if err != nil {
			return nil, err
		}
		opts.Interceptor = ic
	}
	if lc.TLS != nil {
		tlsCfg, err := proxy.ServerTLSConfig(lc.TLS.CertFile, lc.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		opts.TLS = tlsCfg
		opts.RequireTLS = lc.TLS.Require
	}
	up, err := upstreamTLS(lc)
	if err != nil {
		return nil, err
	}
	opts.UpstreamTLS = up
	return mysql.NewHandler(opts)
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
	u := proxy.UpstreamTLS{Mode: m, ServerName: lc.UpstreamTLS.ServerName}
	if u.ServerName == "" {
		host, _, err := net.SplitHostPort(lc.Upstream)
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
