package keys

import (
	"context"
	"log/slog"
	"time"

	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// pollWarnEvery is how often a keystore that keeps failing polls is logged
// again after the first failure.
const pollWarnEvery = time.Minute

// pollLoop re-reads the keystore every m.poll until ctx ends (Close). A
// failed poll keeps the lists last read and is retried at the next tick.
func (m *Manager) pollLoop(ctx context.Context) {
	defer close(m.pollDone)
	t := time.NewTicker(m.poll)
	defer t.Stop()
	var (
		failures int
		warned   time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := m.pollOnce(ctx)
		switch {
		case ctx.Err() != nil, m.closed.Load():
			return
		case err != nil:
			failures++
			if failures == 1 || time.Since(warned) >= pollWarnEvery {
				warned = time.Now()
				m.log.LogAttrs(ctx, slog.LevelWarn, "keystore poll failed; keeping the data key versions read before, retrying every poll",
					slog.Int("failures", failures), slog.Duration("poll", m.poll), slog.String("error", err.Error()))
			}
		case failures > 0:
			m.log.LogAttrs(ctx, slog.LevelInfo, "keystore poll works again", slog.Int("failures", failures))
			failures = 0
		}
	}
}

// pollOnce reads every record of the store once and publishes the version
// lists of the names this Manager has cached; names not cached are read
// when first needed. With no name cached it reads nothing.
func (m *Manager) pollOnce(ctx context.Context) error {
	cached := *m.metas.Load()
	names := make([]string, 0, len(cached))
	for name := range cached {
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil
	}
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, flightTimeout)
	recs, err := m.store.List(rctx)
	cancel()
	if err != nil {
		return err
	}
	byName := make(map[string][]keystore.Record, len(names))
	for _, r := range recs {
		byName[r.Name] = append(byName[r.Name], r)
	}
	for _, name := range names {
		if _, err := m.publish(ctx, name, byName[name], start, false, true); err != nil {
			return err
		}
	}
	return nil
}
