package admin

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Defaults used when Options leaves a field at zero.
const (
	DefaultCheckTimeout = 2 * time.Second
	DefaultCheckCache   = time.Second
)

// Options configures a Server.
type Options struct {
	// Metrics serves /metrics; nil: /metrics answers 404.
	Metrics http.Handler
	// Checks are the readiness checks of /readyz; none: always ready.
	Checks []Check
	// CheckTimeout bounds each check of a round; zero:
	// DefaultCheckTimeout.
	CheckTimeout time.Duration
	// CheckCache is how long a round's result answers probes; zero:
	// DefaultCheckCache.
	CheckCache time.Duration
	// Logger receives server errors (bad requests, failed writes) and
	// readiness changes. Nil discards.
	Logger *slog.Logger
}

// Server is the admin HTTP server. Its lifecycle is that of net/http:
// Serve on a listener, Shutdown to stop.
type Server struct {
	http  *http.Server
	ready *readiness
}

// New returns a Server; it does not listen yet.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{ready: newReadiness(opts.Checks, opts.CheckTimeout, opts.CheckCache, log)}
	mux := http.NewServeMux()
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "dbproxy admin: /metrics /healthz /readyz\n")
	})
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Handler returns the server's routes, for tests.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Serve answers requests on l until Shutdown; it then returns nil (unlike
// net/http, whose ErrServerClosed it hides).
func (s *Server) Serve(l net.Listener) error {
	if err := s.http.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting, waits for requests in flight until ctx is
// done, then closes what remains.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	return err
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	failures, err := s.ready.check(r.Context())
	if err != nil {
		plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
		return
	}
	if len(failures) > 0 {
		plain(w, http.StatusServiceUnavailable, failureText(failures))
		return
	}
	plain(w, http.StatusOK, "ready\n")
}

// plain writes a plain-text answer that no cache keeps.
func plain(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
