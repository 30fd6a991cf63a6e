package mycrypt

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/internal/blocking"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// ZoneSource tells the server's default time_zone, which every new session
// starts with: the global time_zone and, for SYSTEM, the server's
// system_time_zone. *Catalog is one.
type ZoneSource interface {
	ServerTimeZone(ctx context.Context) (zone, system string, err error)
}

// zoneRetry is how long after a failed lookup of the server's time_zone
// sessions keep the UTC assumption before the next attempt.
const zoneRetry = 30 * time.Second

// serverGlobal is a server setting new sessions start with, read from the
// server by the first session that starts and again after invalidate.
// While a read fails, it is tried again after zoneRetry at the earliest.
type serverGlobal[T any] struct {
	mu      sync.Mutex // serializes reads
	done    atomic.Bool
	cur     atomic.Pointer[T]
	retryAt time.Time
}

// get returns the setting, reading it with read first when that has not
// been done yet. On a failure read returns the error and what sessions
// start with meanwhile.
func (g *serverGlobal[T]) get(ctx context.Context, read func(context.Context) (*T, error)) *T {
	if g.done.Load() {
		return g.cur.Load()
	}
	// Held across the read: a session on an event loop announces that
	// it waits, for the lock or the read.
	blocking.Lock(ctx, &g.mu)
	defer g.mu.Unlock()
	if g.done.Load() || time.Now().Before(g.retryAt) {
		return g.cur.Load()
	}
	blocking.Announce(ctx)
	v, err := read(ctx)
	if err != nil {
		g.retryAt = time.Now().Add(zoneRetry)
		return v
	}
	g.cur.Store(v)
	g.done.Store(true)
	return v
}

// invalidate makes the next get read the setting again; sessions until
// then start with the last one read.
func (g *serverGlobal[T]) invalidate() {
	g.mu.Lock()
	g.retryAt = time.Time{}
	g.done.Store(false)
	g.mu.Unlock()
}

// serverZone is the time_zone new sessions start in (nil: UTC; zoneUnknown:
// one the proxy cannot follow). Without a source, or while the source
// cannot be reached, it is UTC, the RDS and Aurora default. It is looked up
// once, by the first session that starts, and only when some encrypted
// column is a timestamptz (the only type the zone matters for).
type serverZone struct {
	src    ZoneSource
	log    *slog.Logger
	lookup bool // the zone is looked up (else UTC for good)
	loc    serverGlobal[time.Location]
}

func newServerZone(src ZoneSource, set *rules.Set, log *slog.Logger) *serverZone {
	z := &serverZone{src: src, log: log, lookup: src != nil && hasTimestamptz(set)}
	z.loc.done.Store(!z.lookup)
	return z
}

func hasTimestamptz(set *rules.Set) bool {
	for _, t := range set.Tables() {
		for _, c := range t.Columns {
			if c.Type == value.TypeTimestamptz {
				return true
			}
		}
	}
	return false
}

// get returns the zone a new session starts in, looking it up first when
// that has not been done yet.
func (z *serverZone) get(ctx context.Context) *time.Location {
	return z.loc.get(ctx, z.read)
}

// read looks the server's zone up; sessions start in UTC while it fails.
func (z *serverZone) read(ctx context.Context) (*time.Location, error) {
	zone, system, err := z.src.ServerTimeZone(ctx)
	if err != nil {
		z.log.LogAttrs(ctx, slog.LevelWarn, "could not read the server's time_zone; sessions are assumed to start in UTC",
			slog.Any("error", err))
		return nil, err
	}
	loc := resolveServerZone(zone, system)
	switch {
	case loc == zoneUnknown:
		z.log.LogAttrs(ctx, slog.LevelWarn,
			"the server's default time_zone cannot be followed: timestamptz values are refused in a session until it sets time_zone",
			slog.String("time_zone", zone), slog.String("system_time_zone", system))
	case loc != nil:
		z.log.LogAttrs(ctx, slog.LevelInfo, "sessions start in the server's time_zone",
			slog.String("time_zone", loc.String()))
	}
	return loc, nil
}

// invalidate makes the next session look the zone up again (SET GLOBAL
// time_zone through the proxy); sessions until then start in the last one
// read.
func (z *serverZone) invalidate() {
	if z.lookup {
		z.loc.invalidate()
	}
}

// current returns the zone without a lookup (COM_CHANGE_USER and
// COM_RESET_CONNECTION go back to it).
func (z *serverZone) current() *time.Location { return z.loc.cur.Load() }

// resolveServerZone maps the server's global time_zone to a location; for
// SYSTEM, the server's system_time_zone (an IANA name or an abbreviation
// such as UTC or CET that tzdata knows) decides.
func resolveServerZone(zone, system string) *time.Location {
	if strings.EqualFold(zone, "SYSTEM") {
		if strings.EqualFold(system, "SYSTEM") {
			return zoneUnknown
		}
		zone = system
	}
	return parseZone(zone)
}
