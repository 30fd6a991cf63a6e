package admin

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Check is one readiness check: Probe returns nil when what Name stands
// for is ready. Probe must honour ctx (it is cancelled at the check
// timeout) and be safe for concurrent use with itself across rounds.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Failure is a check that did not pass, with its error.
type Failure struct {
	Name string
	Err  error
}

// readiness runs the checks and remembers the last round's result.
type readiness struct {
	checks  []Check
	timeout time.Duration
	cache   time.Duration
	log     *slog.Logger
	now     func() time.Time

	group singleflight.Group
	mu    sync.Mutex
	at    time.Time // when the last round finished; zero: none yet
	last  []Failure
}

func newReadiness(checks []Check, timeout, cache time.Duration, log *slog.Logger) *readiness {
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	if cache <= 0 {
		cache = DefaultCheckCache
	}
	return &readiness{checks: slices.Clone(checks), timeout: timeout, cache: cache, log: log, now: time.Now}
}

// check returns the failures of a round of checks no older than the cache
// interval, running one if needed (shared by concurrent callers). The
// error is ctx's when the caller stops waiting first.
func (r *readiness) check(ctx context.Context) ([]Failure, error) {
	r.mu.Lock()
	fresh := !r.at.IsZero() && r.now().Sub(r.at) < r.cache
	last := r.last
	r.mu.Unlock()
	if fresh {
		return last, nil
	}
	ch := r.group.DoChan("round", func() (any, error) { return r.round(), nil })
	select {
	case res := <-ch:
		return res.Val.([]Failure), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// round runs every check at once, each within the timeout, and records
// the result. It runs detached from any one request.
func (r *readiness) round() []Failure {
	errs := make([]error, len(r.checks))
	var wg sync.WaitGroup
	for i, c := range r.checks {
		wg.Go(func() { errs[i] = r.probe(c) })
	}
	wg.Wait()
	var failures []Failure
	for i, err := range errs {
		if err != nil {
			failures = append(failures, Failure{Name: r.checks[i].Name, Err: err})
		}
	}
	r.mu.Lock()
	changed := r.at.IsZero() || failureText(failures) != failureText(r.last)
	r.at, r.last = r.now(), failures
	r.mu.Unlock()
	if changed && len(failures) > 0 {
		r.log.Warn("not ready", slog.String("failing", strings.TrimSpace(failureText(failures))))
	} else if changed {
		r.log.Info("ready")
	}
	return failures
}

// probe runs one check within the timeout. A probe that overruns it is
// reported as failed at once, and left to finish in the background.
func (r *readiness) probe(c Check) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- c.Probe(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %s", r.timeout)
	}
}

// failureText is the /readyz body of failures: one "name: error" line
// each, in registration order.
func failureText(failures []Failure) string {
	var b strings.Builder
	for _, f := range failures {
		fmt.Fprintf(&b, "%s: %s\n", f.Name, strings.ReplaceAll(f.Err.Error(), "\n", " "))
	}
	return b.String()
}
