package mycrypt

import (
	"bytes"
	"errors"
	"regexp"
	"strconv"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
	"github.com/dbproxy/dbproxy/value"
)

// The session time_zone decides which instant a timestamptz wall time
// means (MySQL TIMESTAMP semantics). MySQL does not report it, so a
// session starts in the server's default time_zone as read once through
// the catalog connection (serverzone.go), or in UTC without one (the RDS
// default), and the proxy follows `SET [SESSION] time_zone = '…'`
// statements that succeed. Any other statement that mentions
// time_zone (other than a SELECT or SHOW reading it) makes it unknown:
// encrypting or decrypting timestamptz values is then refused until a SET
// the proxy understands. COM_CHANGE_USER and COM_RESET_CONNECTION go back
// to the server's default.

// zoneUnknown marks a session whose time_zone the proxy cannot follow.
var zoneUnknown = time.FixedZone("unknown", 0)

var errZoneUnknown = errors.New("the session time_zone is not known to the proxy; SET time_zone = '+hh:mm' (or a zone name) on its own")

// setTimeZone matches a statement that only sets the session time_zone to
// a quoted value, also inside an executable comment as mysqldump writes it
// (`/*!40103 SET TIME_ZONE='+00:00' */`).
var setTimeZone = regexp.MustCompile(`(?is)^\s*(?:/\*M?!\d*\s*)?SET\s+(?:SESSION\s+|LOCAL\s+|@@SESSION\.|@@LOCAL\.|@@)?time_zone\s*:?=\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*(?:\*/\s*)?;?\s*$`)

// savesTimeZone matches a statement that only copies time_zone into a
// user variable (mysqldump's `/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */`):
// the session's zone does not change.
var savesTimeZone = regexp.MustCompile(`(?is)^\s*(?:/\*M?!\d*\s*)?SET\s+@[\w$.]+\s*:?=\s*@@(?:SESSION\.|GLOBAL\.)?time_zone\s*(?:\*/\s*)?;?\s*$`)

var readsOnly = regexp.MustCompile(`(?is)^\s*(SELECT|SHOW)\b`)

// zoneChange reports what a COM_QUERY text does to the session time_zone:
// ok false if nothing; otherwise the new location (zoneUnknown when it
// cannot be followed), to apply once the server answered OK.
func zoneChange(raw []byte, lex mysqlsql.Lex) (loc *time.Location, ok bool) {
	if !containsFold(raw, "time_zone") {
		return nil, false
	}
	// Read the text as the server does: executable comments for a newer
	// server version are comments.
	norm, err := mysqlsql.Normalize(string(raw), lex)
	if err != nil {
		return zoneUnknown, true
	}
	text := []byte(norm)
	if !containsFold(text, "time_zone") || readsOnly.Match(text) || savesTimeZone.Match(text) {
		return nil, false
	}
	m := setTimeZone.FindSubmatch(text)
	if m == nil {
		return zoneUnknown, true
	}
	name := string(m[1])
	if m[1] == nil {
		name = string(m[2])
	}
	return parseZone(name), true
}

// containsFold reports whether text contains word (lower case), ignoring
// ASCII case, without copying text (it runs on every COM_QUERY).
func containsFold(text []byte, word string) bool {
	for i := 0; i+len(word) <= len(text); i++ {
		if text[i]|0x20 == word[0] && bytes.EqualFold(text[i:i+len(word)], []byte(word)) {
			return true
		}
	}
	return false
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
