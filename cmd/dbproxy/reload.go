package main

import (
	"context"
	"log/slog"
	"reflect"
	"sync/atomic"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// SIGHUP reload (README, "Command line"). Each listener's handler is built once with a
// swappable interceptor; a reload with changed encryption: or keys: sections
// builds the new encryption layer, swaps it in for new sessions, and drains
// the sessions opened before (each ends at its next transaction boundary,
// and a pool reconnects under the new rules). Draining is deliberate: a
// session that went on under old rules could write plaintext into a column
// the new rules encrypt. Listener changes need a restart; a reload that
// cannot be loaded or built changes nothing.

// pgSwap is a postgres.Interceptor whose implementation can be replaced.
// With none, sessions are relayed untouched.
type pgSwap struct {
	cur atomic.Pointer[postgres.Interceptor]
}

func (s *pgSwap) NewSession(ctx context.Context, info postgres.SessionInfo) (*postgres.SessionHooks, error) {
	if ic := s.cur.Load(); ic != nil {
		return (*ic).NewSession(ctx, info)
	}
	return nil, nil
}

func (s *pgSwap) set(ic postgres.Interceptor) {
	if ic == nil {
		s.cur.Store(nil)
		return
	}
	s.cur.Store(&ic)
}

// mySwap is the MySQL counterpart of pgSwap.
type mySwap struct {
	cur atomic.Pointer[mysql.Interceptor]
}

func (s *mySwap) NewSession(ctx context.Context, info mysql.SessionInfo) (*mysql.SessionHooks, error) {
	if ic := s.cur.Load(); ic != nil {
		return (*ic).NewSession(ctx, info)
	}
	return nil, nil
}

func (s *mySwap) set(ic mysql.Interceptor) {
	if ic == nil {
		s.cur.Store(nil)
		return
	}
	s.cur.Store(&ic)
}

// encryptionChanged reports whether a reload must rebuild the encryption
// layer.
func encryptionChanged(old, cur *config.Config) bool {
	return !reflect.DeepEqual(old.Encryption, cur.Encryption) || !reflect.DeepEqual(old.Keys, cur.Keys)
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

// swaps holds one listener's swappable interceptors (only the one for its
// protocol is used).
type swaps struct {
	index int // the listener's position in listeners:
	pg    pgSwap
	my    mySwap
}

// build returns the listener's encryption interceptor for enc (nil: none).
func (sw *swaps) build(lc *config.Listener, name string, log *slog.Logger, enc *encryption) (pg postgres.Interceptor, my mysql.Interceptor, err error) {
	if enc == nil {
		return nil, nil, nil
	}
	log = log.With(slog.String("listener", name))
	switch lc.Protocol {
	case config.ProtocolPostgres:
		ic, err := enc.postgresInterceptor(lc, sw.index, log)
		if err != nil {
			return nil, nil, err
		}
		return ic, nil, nil
	case config.ProtocolMySQL:
		// Never relay plaintext to a database that should hold ciphertext.
		ic, err := enc.mysqlInterceptor(lc, sw.index, log)
		if err != nil {
			return nil, nil, err
		}
		return nil, ic, nil
	}
	return nil, nil, nil
}

// check builds the interceptor for enc without installing it.
func (sw *swaps) check(lc *config.Listener, name string, log *slog.Logger, enc *encryption) error {
	_, _, err := sw.build(lc, name, log, enc)
	return err
}

// apply builds and installs the interceptor for enc.
func (sw *swaps) apply(lc *config.Listener, name string, log *slog.Logger, enc *encryption) error {
	pg, my, err := sw.build(lc, name, log, enc)
	if err != nil {
		return err
	}
	sw.pg.set(pg)
	sw.my.set(my)
	return nil
}
