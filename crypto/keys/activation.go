package keys

import (
	"context"
	"log/slog"
	"time"

	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// ActivationDelay is the activation delay that goes with a keystore poll
// interval: twice the interval. A version added at T (its CreatedAt) is
// read by every replica polling every poll by T + poll, and used for
// writing from T + 2×poll on; the second interval is the margin for clock
// skew between the host that rotated and the replicas, and for the time a
// poll takes.
func ActivationDelay(poll time.Duration) time.Duration { return 2 * poll }

// activeAt is when version i of recs (ascending) may become primary: its
// CreatedAt plus the activation delay. The first version needs no delay:
// there is no older one to write with meanwhile, and a replica that does
// not know the name yet reads the store when it needs it.
func (m *Manager) activeAt(recs []keystore.Record, i int) time.Time {
	if i == 0 {
		return recs[0].CreatedAt
	}
	return recs[i].CreatedAt.Add(m.activation)
}

// settled reports whether the newest version of recs is past its
// activation (or there is no delay), so that no clock read is needed to
// pick the primary version.
func (m *Manager) settled(recs []keystore.Record) bool {
	return m.activation == 0 || len(recs) < 2 || !m.now().Before(m.activeAt(recs, len(recs)-1))
}

// primaryOf returns the index of the primary version of recs (one name,
// ascending) at now: the newest one past its activation.
func (m *Manager) primaryOf(recs []keystore.Record, now time.Time) int {
	i := len(recs) - 1
	for i > 0 && now.Before(m.activeAt(recs, i)) {
		i--
	}
	return i
}

// primaryIndex returns the index in km.records of the primary version: the
// newest one past its activation. Only a list with a pending version reads
// the clock; once the newest version is active the list is settled and
// logs so once.
func (m *Manager) primaryIndex(ctx context.Context, km *keyMeta) int {
	last := len(km.records) - 1
	if km.settled.Load() {
		return last
	}
	i := m.primaryOf(km.records, m.now())
	if i == last && !km.settled.Swap(true) {
		m.log.LogAttrs(ctx, slog.LevelInfo, "data key version is now primary",
			attrKey(km.records[i].Name), attrVersion(km.records[i].Version))
	}
	return i
}

// noteNew logs the versions recs has beyond the newest of old, with when
// each becomes primary. A poller reads a version at most one poll (plus
// the time a poll takes) after its creation, so at least about one poll
// before its activation; a version read less than half a poll before it
// means that the clocks disagree or polls fail or lag, so that a replica
// may start writing with it before another has read it: that is a
// warning.
func (m *Manager) noteNew(ctx context.Context, old, recs []keystore.Record) {
	var newest uint32
	if len(old) > 0 {
		newest = old[len(old)-1].Version
	}
	now := m.now()
	for i := range recs {
		r := &recs[i]
		if r.Version <= newest {
			continue
		}
		at := m.activeAt(recs, i)
		attrs := []slog.Attr{attrKey(r.Name), attrVersion(r.Version), slog.Time("primary_at", at.UTC())}
		if i > 0 && m.poll > 0 && at.Sub(now) < m.poll/2 {
			m.log.LogAttrs(ctx, slog.LevelWarn, "read a new data key version less than half a keystore poll before it becomes primary; other replicas may not know it yet: check that clocks are synchronized (NTP) and keystore polls succeed",
				append(attrs, slog.Duration("poll", m.poll))...)
			continue
		}
		m.log.LogAttrs(ctx, slog.LevelInfo, "read a new data key version", attrs...)
	}
}
