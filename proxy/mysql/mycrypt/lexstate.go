package mycrypt

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	tidbmysql "github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// The server reads SQL text under the session's sql_mode (ANSI_QUOTES,
// NO_BACKSLASH_ESCAPES, …) and character_set_client (in big5, cp932, gbk,
// gb18030 and sjis the second byte of a character can be a backslash or a
// quote), and runs executable comments by its version. The proxy follows
// all three per session and plans every string under them
// (mysqlsql.Lex); what it cannot follow refuses statements that may touch
// an encrypted table, with ER 1235 naming the setting.
//
//   - Version: from the handshake's server version string.
//   - sql_mode: a session starts in the server's global sql_mode, read
//     once per listener through the catalog connection (LexSource);
//     without one it is assumed to have no lexing modes, and strings on
//     encrypted tables must then read the same with NO_BACKSLASH_ESCAPES
//     and ANSI_QUOTES. If init_connect changes sql_mode or the character
//     set, sessions start with them unknown (init_connect does not run for
//     every user). Literal SETs (also SET NAMES / CHARACTER SET /
//     character_set_client) apply when the server's OK arrives; while one
//     is in flight, and after one the proxy cannot follow (an expression,
//     a variable, SQL EXECUTE after a PREPARE that could change them,
//     compound statements), the setting is unknown. Session state
//     tracking in an OK packet (CLIENT_SESSION_TRACK, when the server
//     tracks the variable) sets them to the server's own value.
//   - character_set_client: from the handshake's collation id, COM_CHANGE_USER,
//     SET NAMES / SET CHARACTER SET / SET character_set_client.
//     COM_RESET_CONNECTION goes back to the handshake's on MariaDB, to
//     the global one on MySQL.

// LexSource tells the server's global sql_mode, character_set_client and
// init_connect, which sessions start with. *Catalog is one.
type LexSource interface {
	ServerLexState(ctx context.Context) (sqlMode, charset, initConnect string, err error)
}

// globalLex is what new sessions start with.
type globalLex struct {
	mode    tidbmysql.SQLMode
	modeErr string // unsupported global sql_mode
	known   bool   // read from the server (else assumed)
	charset string // global character_set_client; "" unknown
	// initMode / initCharset: init_connect changes them (sessions start
	// with them unknown).
	initMode, initCharset bool
}

// serverLex reads the global state once (again after SET GLOBAL through
// the proxy), like serverZone.
type serverLex struct {
	src    LexSource
	log    *slog.Logger
	global serverGlobal[globalLex]
}

var assumedLex = &globalLex{}

func newServerLex(src LexSource, log *slog.Logger) *serverLex {
	z := &serverLex{src: src, log: log}
	z.global.cur.Store(assumedLex)
	if src == nil {
		z.global.done.Store(true)
	}
	return z
}

func (z *serverLex) get(ctx context.Context) *globalLex {
	return z.global.get(ctx, z.read)
}

// current returns the global state without reading it.
func (z *serverLex) current() *globalLex { return z.global.cur.Load() }

// read reads the global state; sessions keep the last one while it fails.
func (z *serverLex) read(ctx context.Context) (*globalLex, error) {
	mode, cs, initConnect, err := z.src.ServerLexState(ctx)
	if err != nil {
		z.log.LogAttrs(ctx, slog.LevelWarn, "could not read the server's sql_mode; sessions are assumed to start without lexing modes",
			slog.Any("error", err))
		return z.current(), err
	}
	g := &globalLex{known: true, charset: strings.ToLower(cs)}
	if g.mode, err = mysqlsql.ParseSQLMode(mode); err != nil {
		g.modeErr = "the server's sql_mode is not supported by the proxy"
		z.log.LogAttrs(ctx, slog.LevelWarn, "the server's global sql_mode is not supported: statements on encrypted tables are refused until a session sets sql_mode")
	}
	if strings.TrimSpace(initConnect) != "" {
		c := mysqlsql.AnalyzeSession(initConnect, mysqlsql.Lex{Mode: g.mode})
		g.initMode = c.ModeSet != mysqlsql.SettingUnchanged || c.Executes
		g.initCharset = c.CharsetSet != mysqlsql.SettingUnchanged || c.Executes
	}
	return g, nil
}

// invalidate makes the next session read the global state again (after a
// SET GLOBAL seen through the proxy).
func (z *serverLex) invalidate() {
	if z.src != nil {
		z.global.invalidate()
	}
}

// Mode states of lexTrack.
const (
	modeKnown uint8 = iota + 1
	modeAssumed
	modeUnknown
)

// lexTrack is a session's lexing state. Guarded by session.mu.
type lexTrack struct {
	flavour mysqlsql.Flavour
	version uint32

	modeSt  uint8
	mode    tidbmysql.SQLMode
	modeErr string // set: the mode is known but not supported

	charset string // character_set_client, lower case; "" unknown
	base    string // charset of the handshake or COM_CHANGE_USER

	// riskyPrepare: an SQL PREPARE could change the settings: an EXECUTE
	// makes them unknown.
	riskyPrepare bool
}

const (
	reasonModeUnknown = "the session sql_mode is not known to the proxy (it was set by an expression, a variable, " +
		"a prepared or compound statement, or by init_connect); SET sql_mode = '…' with a literal value first"
	reasonCharsetUnknown = "the session character_set_client is not known to the proxy; SET NAMES utf8mb4 first"
	reasonBothUnknown    = "the session sql_mode and character_set_client are not known to the proxy (set by an " +
		"expression, a variable, a prepared or compound statement, or by init_connect); SET NAMES utf8mb4 and " +
		"SET sql_mode = '…' with a literal value first"
)

// lex returns the mysqlsql.Lex of the state.
func (t *lexTrack) lex() mysqlsql.Lex {
	l := mysqlsql.Lex{Flavour: t.flavour, Version: t.version, Mode: t.mode, ModeAssumed: t.modeSt == modeAssumed}
	safe, single := mysqlsql.ClientCharset(t.charset)
	l.SingleByte = single
	switch {
	case t.modeSt == modeUnknown && t.charset == "":
		l.Unreadable = reasonBothUnknown
	case t.modeSt == modeUnknown:
		l.Unreadable = reasonModeUnknown
	case t.modeErr != "":
		l.Unreadable = t.modeErr + "; SET sql_mode to modes the proxy supports (not ORACLE or MSSQL)"
	case t.charset == "":
		l.Unreadable = reasonCharsetUnknown
	case !safe:
		l.Unreadable = "character_set_client " + t.charset + " is not supported on encrypted tables (its multi-byte " +
			"characters can end in a backslash or quote byte, so the proxy cannot read the statement as the server does); " +
			"use utf8mb4 (SET NAMES utf8mb4)"
	}
	return l
}

// startMode sets the sql_mode a session starts with (connect,
// COM_CHANGE_USER, COM_RESET_CONNECTION).
func (t *lexTrack) startMode(g *globalLex) {
	t.mode, t.modeErr = g.mode, g.modeErr
	switch {
	case g.initMode:
		t.modeSt = modeUnknown
	case g.known:
		t.modeSt = modeKnown
	default:
		t.modeSt = modeAssumed
	}
}

func newLexTrack(serverVersion string, collation byte, g *globalLex) lexTrack {
	var t lexTrack
	t.flavour, t.version = mysqlsql.ParseServerVersion(serverVersion)
	t.startMode(g)
	t.base = collationCharset(collation)
	if collation == 255 && t.flavour == mysqlsql.FlavourMySQL {
		t.base = "utf8mb4" // utf8mb4_0900_ai_ci, MySQL 8's default (unknown to MariaDB)
	}
	t.charset = t.base
	if g.initCharset {
		t.charset = ""
	}
	return t
}

// apply applies a change that the server has run.
func (t *lexTrack) apply(c *mysqlsql.SessionChange, g *globalLex) {
	switch c.ModeSet {
	case mysqlsql.SettingValue:
		t.modeSt, t.mode, t.modeErr = modeKnown, c.Mode, c.ModeErr
	case mysqlsql.SettingDefault:
		t.mode, t.modeErr = g.mode, g.modeErr
		t.modeSt = modeKnown
		if !g.known {
			t.modeSt = modeAssumed
		}
	case mysqlsql.SettingUnknown:
		t.modeSt = modeUnknown
	}
	switch c.CharsetSet {
	case mysqlsql.SettingValue:
		t.charset = c.Charset
	case mysqlsql.SettingDefault:
		t.charset = g.charset
	case mysqlsql.SettingUnknown:
		t.charset = ""
	}
	if c.RiskyPrepare {
		t.riskyPrepare = true
	}
}

// unknownAll marks both settings unknown.
func (t *lexTrack) unknownAll() {
	t.modeSt, t.charset = modeUnknown, ""
}

// lexChange is the per-exchange state of a string that changes the
// session's lexing state.
type lexChange struct {
	change *mysqlsql.SessionChange
	prev   lexTrack
	single bool
}

// beginLexChange runs when a string with a SessionChange is forwarded: the
// settings it changes are unknown until its response.
func (s *session) beginLexChange(plan *mysqlsql.Plan) *lexChange {
	c := plan.Session
	if c.Global {
		s.ic.lex.invalidate()
	}
	s.lock()
	defer s.mu.Unlock()
	if c.Executes && s.lx.riskyPrepare {
		// Whatever EXECUTE runs may change them: unknown until a SET (or
		// session state tracking) tells.
		s.lx.unknownAll()
	}
	if !c.Changed() && !c.RiskyPrepare {
		return nil
	}
	lc := &lexChange{change: c, prev: s.lx, single: plan.Statements <= 1}
	if c.ModeSet != mysqlsql.SettingUnchanged {
		s.lx.modeSt = modeUnknown
	}
	if c.CharsetSet != mysqlsql.SettingUnchanged {
		s.lx.charset = ""
	}
	return lc
}

// finishLexChange settles the state on the string's OK (the last one) or
// ERR.
func (s *session) finishLexChange(lc *lexChange, kind byte, more bool) {
	if more {
		return
	}
	s.lock()
	defer s.mu.Unlock()
	switch {
	case kind == 0x00:
		t := lc.prev
		t.riskyPrepare = s.lx.riskyPrepare || lc.prev.riskyPrepare
		t.apply(lc.change, s.ic.lex.current())
		s.lx = t
	case lc.single:
		risky := s.lx.riskyPrepare
		s.lx = lc.prev
		s.lx.riskyPrepare = risky
	default:
		// A multi-statement string failed somewhere: which of its
		// changes ran is unknown.
		if lc.change.ModeSet != mysqlsql.SettingUnchanged {
			s.lx.modeSt = modeUnknown
		}
		if lc.change.CharsetSet != mysqlsql.SettingUnchanged {
			s.lx.charset = ""
		}
		if lc.change.RiskyPrepare {
			s.lx.riskyPrepare = true
		}
	}
}

// tracked is what an OK packet's session state tracking reports
// (CLIENT_SESSION_TRACK): the new values of the system variables the proxy
// follows, nil for those not reported.
type tracked struct {
	sqlMode, charset, timeZone *string
}

// okInfo reads an OK packet's more-results flag and, with
// CLIENT_SESSION_TRACK, the tracked system variables sql_mode,
// character_set_client and time_zone. ok is false for a malformed packet.
func okInfo(payload []byte, sessionTrack bool) (more bool, t tracked, ok bool) {
	if len(payload) < 1 {
		return false, t, false
	}
	p := payload[1:]
	for range 2 {
		_, n := lenencInt(p)
		if n == 0 {
			return false, t, false
		}
		p = p[n:]
	}
	if len(p) < 4 {
		return false, t, false
	}
	status := binary.LittleEndian.Uint16(p)
	more = status&gomysql.SERVER_MORE_RESULTS_EXISTS != 0
	p = p[4:]
	if !sessionTrack || status&gomysql.SERVER_SESSION_STATE_CHANGED == 0 {
		return more, t, true
	}
	if _, p, ok = lenencBytes(p); !ok { // info
		return more, t, true
	}
	var state []byte
	if state, _, ok = lenencBytes(p); !ok {
		return more, t, true
	}
	for len(state) > 0 {
		typ := state[0]
		var data []byte
		if data, state, ok = lenencBytes(state[1:]); !ok {
			break
		}
		if typ != 0 { // SESSION_TRACK_SYSTEM_VARIABLES
			continue
		}
		name, rest, ok1 := lenencBytes(data)
		val, _, ok2 := lenencBytes(rest)
		if !ok1 || !ok2 {
			continue
		}
		v := string(val)
		switch {
		case bytes.EqualFold(name, []byte("sql_mode")):
			t.sqlMode = &v
		case bytes.EqualFold(name, []byte("character_set_client")):
			t.charset = &v
		case bytes.EqualFold(name, []byte("time_zone")):
			t.timeZone = &v
		}
	}
	return more, t, true
}

func lenencBytes(p []byte) (data, rest []byte, ok bool) {
	n, k := lenencInt(p)
	if k == 0 || uint64(len(p)-k) < n {
		return nil, nil, false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}

// trackOK follows an OK packet of a watched exchange: a pending lexChange
// or time_zone change and the session state tracking information.
func (s *session) trackOK(st *exState, kind byte, payload []byte) {
	more := false
	var t tracked
	if kind == 0x00 {
		var ok bool
		more, t, ok = okInfo(payload, s.sessionTrack)
		if !ok && st.zone != nil {
			s.tz.Store(zoneUnknown)
			st.zone = nil
		}
		if !ok {
			more = false
			if st.lex != nil {
				s.lock()
				s.lx.unknownAll()
				s.mu.Unlock()
				st.lex = nil
				return
			}
		}
	}
	s.finishZoneChange(st.zone, kind, more, t.timeZone)
	if !more {
		st.zone = nil
	}
	if st.lex != nil {
		s.finishLexChange(st.lex, kind, more)
		if !more {
			st.lex = nil
		}
	}
	mode, cs := t.sqlMode, t.charset
	if mode == nil && cs == nil {
		return
	}
	s.lock()
	defer s.mu.Unlock()
	if mode != nil {
		m, err := mysqlsql.ParseSQLMode(*mode)
		s.lx.modeSt, s.lx.mode, s.lx.modeErr = modeKnown, m, ""
		if err != nil {
			s.lx.modeErr = "the session sql_mode is not supported by the proxy"
		}
	}
	if cs != nil {
		s.lx.charset = strings.ToLower(*cs)
	}
}

// changeUser follows COM_CHANGE_USER: the server re-initialises the
// session from the global values and the packet's character set.
func (s *session) changeUser(payload []byte) {
	g := s.ic.lex.get(s.ctx)
	s.lock()
	defer s.mu.Unlock()
	s.lx.startMode(g)
	s.lx.riskyPrepare = false
	s.lx.base = parseChangeUser(payload, s.caps).charset()
	s.lx.charset = s.lx.base
	if g.initCharset {
		s.lx.charset = ""
	}
}

// resetConnection follows COM_RESET_CONNECTION: MariaDB goes back to the
// character set of the handshake (or COM_CHANGE_USER), MySQL to the global
// character_set_client.
func (s *session) resetConnection() {
	g := s.ic.lex.get(s.ctx)
	s.lock()
	defer s.mu.Unlock()
	s.lx.startMode(g)
	s.lx.riskyPrepare = false
	if s.lx.flavour == mysqlsql.FlavourMariaDB {
		s.lx.charset = s.lx.base
	} else {
		s.lx.charset = g.charset
	}
}

// collationCharset maps a handshake collation id to its character set, for
// the ids MySQL and MariaDB give the same character set that the proxy
// reads safely; "" for any other (the session then refuses statements on
// encrypted tables until SET NAMES utf8mb4).
func collationCharset(id byte) string {
	switch {
	case id == 5 || id == 8 || id == 15 || id == 31 || id == 47 || id == 48 || id == 49 || id == 94:
		return "latin1"
	case id == 11 || id == 65:
		return "ascii"
	case id == 63:
		return "binary"
	case id == 33 || id == 83 || (id >= 192 && id <= 215) || id == 223:
		return "utf8mb3"
	case id == 45 || id == 46 || (id >= 224 && id <= 247):
		return "utf8mb4"
	}
	return ""
}
