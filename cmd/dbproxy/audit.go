package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dbproxy/dbproxy/audit"
	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy"
)

// auditing is where a command's audit events go when the configuration
// has an audit: section (docs/audit.md). serve writes them through an
// audit.Log and follows sessions with an audit.Tracker; the keys commands
// collect them (pending) and append them once the command is done. A nil
// *auditing records nothing.
type auditing struct {
	out     audit.Emitter
	log     *audit.Log     // serve
	tracker *audit.Tracker // serve
}

// pending holds events until the audit key is known.
type pending struct {
	mu     sync.Mutex
	events []audit.Event
}

func (p *pending) Emit(e audit.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

func (p *pending) take() []audit.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.events
	p.events = nil
	return out
}

// openAuditing opens serve's audit log (nil without audit:). The audit
// key's unwrap is its first event after the chain's start.
func openAuditing(ctx context.Context, cfg *config.Config, e env, logger *slog.Logger) (*auditing, error) {
	if cfg.Audit == nil {
		return nil, nil
	}
	p := &pending{}
	e.audit = &auditing{out: p}
	mgr, _, closeFn, err := openManager(ctx, cfg, e, logger)
	if err != nil {
		return nil, fmt.Errorf("audit: open keys: %w", err)
	}
	kv, key, err := auditMACKey(ctx, mgr)
	closeFn()
	if err != nil {
		return nil, err
	}
	l, err := audit.Open(audit.Options{Path: cfg.Audit.File, Key: key, KeyVersion: kv,
		Logger: logger.With(slog.String("component", "audit"))})
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for _, ev := range p.take() {
		l.Emit(ev)
	}
	logger.Info("audit log open", slog.String("file", cfg.Audit.File), slog.Uint64("audit_key_version", uint64(kv)))
	return &auditing{out: l, log: l, tracker: audit.NewTracker(l, cfg.Audit.SummaryInterval)}, nil
}

// auditMACKey derives the audit MAC key from the primary version of the
// audit data key.
func auditMACKey(ctx context.Context, mgr *keys.Manager) (uint32, []byte, error) {
	k, err := mgr.Primary(ctx, audit.KeyName)
	if errors.Is(err, keys.ErrNotFound) {
		return 0, nil, fmt.Errorf("audit: data key %s is not in the keystore (dbproxy keys init creates it): %w", audit.KeyName, err)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("audit: %w", err)
	}
	key, err := audit.MACKey(k)
	return k.Version(), key, err
}

// close ends the periodic summaries and writes what is queued (at exit,
// after every session ended).
func (a *auditing) close(logger *slog.Logger) {
	if a == nil || a.log == nil {
		return
	}
	a.tracker.Close()
	if err := a.log.Close(); err != nil {
		logger.Error("audit log", slog.Any("error", err))
	}
}

func (a *auditing) emit(e audit.Event) {
	if a != nil {
		a.out.Emit(e)
	}
}

// unwrapObserver records every master key unwrap call (nil: none).
func (a *auditing) unwrapObserver() keys.UnwrapObserver {
	if a == nil {
		return nil
	}
	return unwrapRecorder{a.out}
}

type unwrapRecorder struct{ out audit.Emitter }

func (u unwrapRecorder) KeyUnwrapped(name string, version uint32, master string, took time.Duration, err error) {
	u.out.Emit(audit.Unwrap(name, version, master, took, err))
}

// monitor is the session tracker as a field cipher Monitor (nil: none).
func (a *auditing) monitor() fieldcrypt.Monitor {
	if a == nil || a.tracker == nil {
		return nil
	}
	return a.tracker
}

// joinMonitors tells every non-nil monitor of each use (nil if none).
func joinMonitors(ms ...fieldcrypt.Monitor) fieldcrypt.Monitor {
	var set []fieldcrypt.Monitor
	for _, m := range ms {
		if m != nil {
			set = append(set, m)
		}
	}
	switch len(set) {
	case 0:
		return nil
	case 1:
		return set[0]
	}
	return fieldcrypt.MonitorFunc(func(ctx context.Context, u fieldcrypt.Use) {
		for _, m := range set {
			m.KeyUsed(ctx, u)
		}
	})
}

// attach makes the listeners' interceptors record logins and follow
// sessions (before they serve).
func (a *auditing) attach(sws []*swaps) {
	if a == nil || a.tracker == nil {
		return
	}
	for _, sw := range sws {
		sw.pg.audit, sw.my.audit = a, a
	}
}

// auditSession records the login of a session as p (err: the encryption
// layer refused it) and, when it has hooks, makes their Close (reached
// through closeField) end its key-use tracking.
func auditSession[H any](a *auditing, p proxy.Principal, h *H, closeField func(*H) *func(), err error) (*H, error) {
	if a == nil {
		return h, err
	}
	end := a.tracker.Login(p, err, h != nil)
	if h != nil {
		c := closeField(h)
		inner := *c
		*c = func() {
			if inner != nil {
				inner()
			}
			end()
		}
	}
	return h, err
}

// warnAuditChanged warns when a reloaded configuration changes the audit:
// section, which only a restart applies.
func warnAuditChanged(logger *slog.Logger, cur, next *config.Config) {
	if cur.Audit == nil && next.Audit == nil || cur.Audit != nil && next.Audit != nil && *cur.Audit == *next.Audit {
		return
	}
	logger.Warn("reload: audit section changes need a restart; the audit log continues as it was", slog.String("config", cur.Path))
}

// auditing returns the audit log of serve (nil: none).
func (rl *reloader) auditing() *auditing {
	if rl == nil {
		return nil
	}
	return rl.audit
}
