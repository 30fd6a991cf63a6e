package main

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/metrics"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// SIGHUP reload (README, "Command line"). Each listener's handler is built
// once with a swappable interceptor. A reload loads the configuration and
// its encryption layer, then, per listener, compares what the listener
// takes from it (encryption.fingerprint: its protocol's rules, the keys:
// section and the access: section). A listener whose fingerprint changed
// gets a new interceptor for new sessions, and the sessions opened before
// are drained (each ends at its next transaction boundary with a "rules
// changed" error, and a pool reconnects under the new rules): a session
// that went on under old rules could write plaintext into a column the new
// rules encrypt, and one under an old access policy could read what it no
// longer may. Listeners whose fingerprint did not change keep their
// interceptor and sessions. Listener changes need a restart; a reload that
// cannot be loaded or built
// changes nothing.
//
// Resources: every interceptor is a generation, counted by its live
// sessions. A reload retires the generation it replaces; a retired
// generation is closed (catalog connections, refresh goroutines, plan and
// catalog caches, and its reference to the keyring) when its last session
// ends, at once if it has none. A keyring (key manager, keystore, master
// key clients, cached data keys) is closed when the last generation and
// encryption using it are gone. A reload that keeps the keys: section
// keeps the keyring.

// generation is one interceptor of a listener with the count of sessions
// that use it.
type generation[I any] struct {
	ic    I
	close func() // releases what ic holds; runs once

	mu       sync.Mutex
	sessions int
	retired  bool
	closed   bool
}

// acquire counts a new session, unless the generation was retired (a newer
// one is installed by then).
func (g *generation[I]) acquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired {
		return false
	}
	g.sessions++
	return true
}

// release ends a session; the last one of a retired generation closes it.
func (g *generation[I]) release() {
	g.mu.Lock()
	g.sessions--
	done := g.retired && g.sessions == 0 && !g.closed
	if done {
		g.closed = true
	}
	g.mu.Unlock()
	if done {
		g.close()
	}
}

// retire marks the generation replaced; it closes now if no session uses
// it.
func (g *generation[I]) retire() {
	g.mu.Lock()
	g.retired = true
	done := g.sessions == 0 && !g.closed
	if done {
		g.closed = true
	}
	g.mu.Unlock()
	if done {
		g.close()
	}
}

// swap holds the interceptor generation that serves new sessions of one
// listener; install replaces it, retiring the old one (closed once its
// last session ends).
type swap[IC any] struct {
	cur atomic.Pointer[generation[IC]]
}

// install makes g (nil: none) serve new sessions and retires the one it
// replaces.
func (s *swap[IC]) install(g *generation[IC]) {
	if old := s.cur.Swap(g); old != nil {
		old.retire()
	}
}

// openSession opens a session with the current generation (nil hooks:
// none installed, sessions are relayed untouched). The generation counts
// the session until the hooks' Close, reached through closeField, runs.
func openSession[IC, H any](s *swap[IC], open func(IC) (*H, error), closeField func(*H) *func()) (*H, error) {
	for {
		g := s.cur.Load()
		if g == nil {
			return nil, nil
		}
		if !g.acquire() {
			continue // retired since the Load: the new one is installed
		}
		hooks, err := open(g.ic)
		if err != nil || hooks == nil {
			g.release()
			return hooks, err
		}
		c := closeField(hooks)
		inner := *c
		*c = sync.OnceFunc(func() {
			if inner != nil {
				inner()
			}
			g.release()
		})
		return hooks, nil
	}
}

// pgSwap is a postgres.Interceptor whose implementation can be replaced.
type pgSwap struct {
	swap[postgres.Interceptor]
	audit *auditing // records logins and follows sessions; nil: none
}

func (s *pgSwap) NewSession(ctx context.Context, info postgres.SessionInfo) (*postgres.SessionHooks, error) {
	closeField := func(h *postgres.SessionHooks) *func() { return &h.Close }
	h, err := openSession(&s.swap,
		func(ic postgres.Interceptor) (*postgres.SessionHooks, error) { return ic.NewSession(ctx, info) }, closeField)
	return auditSession(s.audit, info.Principal, h, closeField, err)
}

// mySwap is the MySQL counterpart of pgSwap.
type mySwap struct {
	swap[mysql.Interceptor]
	audit *auditing
}

func (s *mySwap) NewSession(ctx context.Context, info mysql.SessionInfo) (*mysql.SessionHooks, error) {
	closeField := func(h *mysql.SessionHooks) *func() { return &h.Close }
	h, err := openSession(&s.swap,
		func(ic mysql.Interceptor) (*mysql.SessionHooks, error) { return ic.NewSession(ctx, info) }, closeField)
	return auditSession(s.audit, info.Principal, h, closeField, err)
}

// listenersChanged reports whether the listener section differs (which a
// reload does not apply).
func listenersChanged(old, cur *config.Config) bool {
	return !reflect.DeepEqual(old.Listeners, cur.Listeners)
}

// logReloadError logs why a reload was not applied.
func logReloadError(logger *slog.Logger, path string, err error) {
	logger.Error("reload failed; keeping the running configuration", slog.String("config", path), slog.Any("error", err))
}

// swaps is one listener's swappable interceptors (only the one for its
// protocol is used) and what the installed one was built from.
type swaps struct {
	index int // the listener's position in listeners:
	name  string
	lc    *config.Listener
	srv   *proxy.Server     // set once the server exists; drained on a change
	obs   *metrics.Listener // the listener's metrics; nil without admin:
	pg    pgSwap
	my    mySwap
	fp    string // fingerprint of the installed interceptor's encryption
}

// built is an interceptor built for a listener, not installed yet.
type built struct {
	pg *generation[postgres.Interceptor]
	my *generation[mysql.Interceptor]
	fp string
}

// discard closes a built interceptor that will not be installed.
func (b built) discard() {
	if b.pg != nil {
		b.pg.retire()
	}
	if b.my != nil {
		b.my.retire()
	}
}

// build returns the listener's interceptor for enc (none for nil). The
// generation holds a reference to enc's keyring until it is closed.
func (sw *swaps) build(log *slog.Logger, enc *encryption) (built, error) {
	b := built{fp: enc.fingerprint(sw.lc.Protocol)}
	if enc == nil {
		return b, nil
	}
	log = log.With(slog.String("listener", sw.name))
	switch sw.lc.Protocol {
	case config.ProtocolPostgres:
		ic, err := enc.postgresInterceptor(sw.lc, sw.index, log, sw.obs)
		if err != nil {
			return b, err
		}
		b.pg = newGeneration[postgres.Interceptor](enc, ic, ic.Close)
	case config.ProtocolMySQL:
		// Never relay plaintext to a database that should hold ciphertext.
		ic, err := enc.mysqlInterceptor(sw.lc, sw.index, log, sw.obs)
		if err != nil {
			return b, err
		}
		b.my = newGeneration[mysql.Interceptor](enc, ic, ic.Close)
	}
	return b, nil
}

// newGeneration is the generation of interceptor ic, which closeIC
// closes; it holds a reference to enc's keyring until it is closed.
func newGeneration[I any](enc *encryption, ic I, closeIC func()) *generation[I] {
	ring := enc.ring.acquire()
	return &generation[I]{ic: ic, close: func() { closeIC(); ring.release() }}
}

// install makes b serve the listener's new sessions; the interceptor it
// replaces closes when its last session ends.
func (sw *swaps) install(b built) {
	sw.pg.install(b.pg)
	sw.my.install(b.my)
	sw.fp = b.fp
}

// retire retires the installed interceptor (at exit, once every session
// has ended).
func (sw *swaps) retire() {
	sw.install(built{})
}

// applyReload applies a reloaded configuration next and its encryption
// layer nextEnc (nil: none) to the listeners ls, running with cfg and enc.
// It returns the encryption layer now current: nextEnc when applied (enc
// then released), else enc (nextEnc released). Only listeners whose
// fingerprint changed get a new interceptor and are drained.
func applyReload(logger *slog.Logger, cfg *config.Config, enc *encryption, next *config.Config, nextEnc *encryption, ls []*swaps) *encryption {
	if enc != nil && nextEnc != nil && reflect.DeepEqual(enc.keysCfg, nextEnc.keysCfg) {
		nextEnc.shareKeyring(enc)
	}
	var changed []*swaps
	var fresh []built
	for _, sw := range ls {
		if nextEnc.fingerprint(sw.lc.Protocol) == sw.fp {
			continue
		}
		b, err := sw.build(logger, nextEnc)
		if err != nil {
			for _, b := range fresh {
				b.discard()
			}
			nextEnc.close()
			logReloadError(logger, cfg.Path, fmt.Errorf("listener %q: %w", sw.name, err))
			return enc
		}
		changed = append(changed, sw)
		fresh = append(fresh, b)
	}
	for i, sw := range changed {
		sw.install(fresh[i])
		if sw.srv != nil {
			sw.srv.DrainConns(proxy.DrainRulesChanged)
		}
	}
	enc.close()
	cfg.Encryption, cfg.Keys, cfg.Access = next.Encryption, next.Keys, next.Access
	if len(changed) == 0 {
		logger.Info("reload: no listener's encryption rules or keys changed; sessions go on", slog.String("config", cfg.Path))
		return nextEnc
	}
	names := make([]string, len(changed))
	for i, sw := range changed {
		names[i] = sw.name
	}
	logger.Info("reload: new encryption rules apply to new sessions; earlier sessions of the changed listeners end at their next transaction boundary",
		slog.Any("listeners", names), slog.Int("columns", len(next.Columns())))
	return nextEnc
}
