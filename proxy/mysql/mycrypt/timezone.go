package mycrypt

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
	"github.com/dbproxy/dbproxy/value"
)

// The session time_zone decides which instant a timestamptz wall time
// means (MySQL TIMESTAMP semantics). A session starts in the server's
// default time_zone as read once through the catalog connection
// (serverzone.go), or in UTC without one (the RDS default). From then on
// the proxy learns it from two sources:
//
//   - the server's own report: with CLIENT_SESSION_TRACK, an OK packet
//     lists the tracked system variables a statement changed, time_zone
//     among them by default (session_track_system_variables on MySQL 5.7+
//     and MariaDB 10.5+); such a report always wins;
//   - the statements themselves, read with the server's grammar
//     (mysqlsql.AnalyzeTimeZone): a literal `SET [SESSION] time_zone =
//     '…'`, also inside an executable comment as mysqldump writes it,
//     applies when the server's OK arrives. A statement whose effect the
//     proxy cannot read exactly (an expression, a variable, CALL, EXECUTE
//     after a PREPARE that may change it, a prepared SET) makes the zone
//     unknown: encrypting or decrypting timestamptz values is then refused
//     until a SET the proxy understands, or a report. Statements of a
//     string that run after a change in the same string run under an
//     unknown zone.
//
// COM_CHANGE_USER and COM_RESET_CONNECTION go back to the server's
// default.

// zoneUnknown marks a session whose time_zone the proxy cannot follow.
var zoneUnknown = time.FixedZone("unknown", 0)

var errZoneUnknown = errors.New("the session time_zone is not known to the proxy; SET time_zone = '+hh:mm' (or a zone name) on its own")

// zoneChange is a change of the session time_zone on its way: loc applies
// when the string succeeds (nil: UTC; zoneUnknown), prev is restored when
// a single statement fails. reported is the last value the server
// reported during the exchange, if reportedSet.
type zoneChange struct {
	loc, prev   *time.Location
	single      bool
	reportedSet bool
	reported    *time.Location
}

// beginZoneChange reads what a COM_QUERY text does to the session
// time_zone; nil if nothing.
func (s *session) beginZoneChange(text string, lex mysqlsql.Lex) *zoneChange {
	z := mysqlsql.AnalyzeTimeZone(text, lex)
	if z.Global {
		s.ic.zone.invalidate()
	}
	if z.RiskyPrepare {
		s.zoneRisky.Store(true)
	}
	if z.Executes && s.zoneRisky.Load() {
		z.Set = mysqlsql.SettingUnknown // whatever EXECUTE runs may change it
	}
	if !z.Changed() && !z.Mixed {
		return nil
	}
	c := &zoneChange{prev: s.zone(), single: z.Statements <= 1, loc: zoneUnknown}
	switch z.Set {
	case mysqlsql.SettingValue:
		c.loc = parseZone(z.Zone)
	case mysqlsql.SettingUnchanged: // SET STATEMENT time_zone = … FOR …
		c.loc = c.prev
	}
	if z.Mixed {
		s.tz.Store(zoneUnknown)
	}
	return c
}

// preparedChangesZone reports whether a statement prepared with
// COM_STMT_PREPARE may change time_zone when executed: its values are
// parameters, and its execution a change the proxy cannot read. An SQL
// PREPARE in it makes later SQL EXECUTEs such changes too.
func (s *session) preparedChangesZone(text string) bool {
	s.lock()
	lex := s.lx.lex()
	s.mu.Unlock()
	z := mysqlsql.AnalyzeTimeZone(text, lex)
	if z.RiskyPrepare {
		s.zoneRisky.Store(true)
	}
	return z.Changed() || z.Mixed || z.RiskyPrepare || z.Executes && s.zoneRisky.Load()
}

// executeZoneChange returns the change a COM_STMT_EXECUTE of st makes, nil
// if it cannot change time_zone.
func (s *session) executeZoneChange(st *stmt) *zoneChange {
	if !st.zoneRisky {
		return nil
	}
	return &zoneChange{prev: s.zone(), single: true, loc: zoneUnknown}
}

// finishZoneChange settles the time_zone at an OK or ERR of a watched
// exchange: reported is the server's session state report in it (nil if
// none), more whether results follow; c is the exchange's change, if any.
func (s *session) finishZoneChange(c *zoneChange, kind byte, more bool, reported *string) {
	if reported != nil {
		loc := parseZone(*reported)
		s.tz.Store(loc)
		if c != nil {
			c.reported, c.reportedSet = loc, true
		}
	}
	if c == nil || more {
		return
	}
	switch {
	case c.reportedSet:
		s.tz.Store(c.reported)
	case kind == 0x00:
		s.tz.Store(c.loc)
	case c.single:
		s.tz.Store(c.prev)
	default:
		// A multi-statement string failed somewhere: which of its
		// changes ran is unknown.
		s.tz.Store(zoneUnknown)
	}
}

// resetZone goes back to the server's default time_zone (COM_CHANGE_USER,
// COM_RESET_CONNECTION); prepared statements are gone.
func (s *session) resetZone() {
	s.tz.Store(s.ic.zone.current())
	s.zoneRisky.Store(false)
}

// parseZone maps a MySQL time_zone value to a location: '+hh:mm' offsets,
// UTC, and IANA names; SYSTEM (the server's own zone) and anything else
// is unknown.
func parseZone(name string) *time.Location {
	switch {
	case len(name) == 6 && (name[0] == '+' || name[0] == '-') && name[3] == ':':
		h, err1 := strconv.Atoi(name[1:3])
		m, err2 := strconv.Atoi(name[4:6])
		if err1 != nil || err2 != nil || h > 14 || m > 59 {
			return zoneUnknown
		}
		off := h*3600 + m*60
		if name[0] == '-' {
			off = -off
		}
		if off == 0 {
			return nil
		}
		return time.FixedZone(name, off)
	case name == "UTC" || name == "utc":
		return nil
	case name == "" || bytes.EqualFold([]byte(name), []byte("SYSTEM")):
		return zoneUnknown
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return zoneUnknown
	}
	return loc
}

// zone returns the session's time_zone (nil: UTC; zoneUnknown).
func (s *session) zone() *time.Location { return s.tz.Load() }

// zoneFor returns the location for converting values of col, or an error
// when col is timestamptz and the session time_zone is unknown.
func (s *session) zoneFor(col *rules.ColumnRule) (*time.Location, error) {
	loc := s.zone()
	if loc == zoneUnknown {
		if col.Type == value.TypeTimestamptz {
			return nil, errZoneUnknown
		}
		return nil, nil
	}
	return loc, nil
}
