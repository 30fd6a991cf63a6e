package mycrypt

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// serverZone is the time_zone new sessions start in (nil: UTC; zoneUnknown:
// one the proxy cannot follow). Without a source, or while the source
// cannot be reached, it is UTC, the RDS and Aurora default. It is looked up
// once, by the first session that starts, and only when some encrypted
// column is a timestamptz (the only type the zone matters for).
type serverZone struct {
	src ZoneSource
	log *slog.Logger

	mu      sync.Mutex // serializes lookups
	lookup  bool       // the zone is looked up (else UTC for good)
	done    atomic.Bool
	loc     atomic.Pointer[time.Location]
	retryAt time.Time
}

func newServerZone(src ZoneSource, set *rules.Set, log *slog.Logger) *serverZone {
	z := &serverZone{src: src, log: log, lookup: src != nil && hasTimestamptz(set)}
	z.done.Store(!z.lookup)
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
	if z.done.Load() {
		return z.loc.Load()
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.done.Load() || time.Now().Before(z.retryAt) {
		return z.loc.Load()
	}
	zone, system, err := z.src.ServerTimeZone(ctx)
	if err != nil {
		z.retryAt = time.Now().Add(zoneRetry)
		z.log.LogAttrs(ctx, slog.LevelWarn, "could not read the server's time_zone; sessions are assumed to start in UTC",
			slog.Any("error", err))
		return nil
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
	z.loc.Store(loc)
	z.done.Store(true)
	return loc
}

// invalidate makes the next session look the zone up again (SET GLOBAL
// time_zone through the proxy); sessions until then start in the last one
// read.
func (z *serverZone) invalidate() {
	if z.lookup {
		z.mu.Lock()
		z.retryAt = time.Time{}
		z.mu.Unlock()
		z.done.Store(false)
	}
}

// current returns the zone without a lookup (COM_CHANGE_USER and
// COM_RESET_CONNECTION go back to it).
func (z *serverZone) current() *time.Location { return z.loc.Load() }

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
