package mysqlsql

import (
	"errors"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/mysql"
)

// Flavour is the server's SQL dialect, as far as lexing is concerned: which
// executable comments it reads. The zero value is unknown.
type Flavour uint8

const (
	// FlavourUnknown: versioned and /*M! comments cannot be read.
	FlavourUnknown Flavour = iota
	// FlavourMySQL: /*!NNNNN … */ runs when NNNNN ≤ the server version
	// (five digits); /*M! … */ is a plain comment.
	FlavourMySQL
	// FlavourMariaDB: /*!NNNNN[N] … */ and /*M!NNNNN[N] … */ run when the
	// version is ≤ the server's, except MySQL 5.7+ versions (50700–99999)
	// in /*! form, which MariaDB skips.
	FlavourMariaDB
)

// Lex is how the server lexes a session's SQL text. The planner reads a
// string exactly as the server will under it, or refuses. It is comparable
// (plans are cached per Lex).
type Lex struct {
	// Mode holds the session sql_mode bits that change how text is lexed or
	// parsed (ANSI_QUOTES, NO_BACKSLASH_ESCAPES, PIPES_AS_CONCAT,
	// IGNORE_SPACE, HIGH_NOT_PRECEDENCE); see [ParseSQLMode].
	Mode mysql.SQLMode
	// ModeAssumed: Mode is an assumption, not read from the server (no
	// catalog connection). A string on an encrypted table must then mean
	// the same whether or not NO_BACKSLASH_ESCAPES and ANSI_QUOTES are on.
	ModeAssumed bool
	// Flavour and Version (MYSQL_VERSION_ID: 101106 for 10.11.6, 80036 for
	// 8.0.36; 0 unknown) decide which executable comments run.
	Flavour Flavour
	Version uint32
	// SingleByte: the client character set is single-byte (latin1, ascii,
	// binary): a byte ≥ 0x80 outside a string literal may be whitespace to
	// the server and is refused.
	SingleByte bool
	// Unreadable, when set, is why the session's text cannot be read as the
	// server reads it (sql_mode unknown or unsupported, a client character
	// set whose multi-byte characters can end in a quote or backslash):
	// every string that may touch an encrypted table is refused with it.
	Unreadable string
}

// ParseServerVersion reads the server version string of the initial
// handshake: MariaDB sends "5.5.5-10.11.6-MariaDB-…" (the 5.5.5- prefix is
// for old replication clients) or, from 11.0, "11.4.2-MariaDB"; anything
// else is MySQL ("8.0.36", "8.0.mysql_aurora.3.05.2" reads as 8.0.0).
func ParseServerVersion(s string) (Flavour, uint32) {
	fl := FlavourMySQL
	if strings.Contains(s, "MariaDB") {
		fl = FlavourMariaDB
		s = strings.TrimPrefix(s, "5.5.5-")
	}
	var parts [3]uint32
	for i := range parts {
		j := 0
		for j < len(s) && j < 3 && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == 0 {
			if i < 2 {
				return fl, 0
			}
			break
		}
		n, _ := strconv.Atoi(s[:j])
		parts[i] = uint32(n)
		s = s[j:]
		if i < 2 {
			if len(s) == 0 || s[0] != '.' {
				if i == 0 {
					return fl, 0
				}
				break
			}
			s = s[1:]
		}
	}
	if parts[1] > 99 || parts[2] > 99 {
		return fl, 0
	}
	return fl, parts[0]*10000 + parts[1]*100 + parts[2]
}

// lexModes are the sql_mode bits the planner follows (the TiDB parser
// implements them); other known modes do not change how text is read.
const lexModes = mysql.ModeANSIQuotes | mysql.ModeNoBackslashEscapes | mysql.ModePipesAsConcat |
	mysql.ModeIgnoreSpace | mysql.ModeHighNotPrecedence

// sqlModes maps every sql_mode name MySQL 8 and MariaDB 10/11 know to the
// lexing bits it sets (0 for modes that only change semantics).
var sqlModes = map[string]mysql.SQLMode{
	"REAL_AS_FLOAT": 0, "PIPES_AS_CONCAT": mysql.ModePipesAsConcat, "ANSI_QUOTES": mysql.ModeANSIQuotes,
	"IGNORE_SPACE": mysql.ModeIgnoreSpace, "IGNORE_BAD_TABLE_OPTIONS": 0, "ONLY_FULL_GROUP_BY": 0,
	"NO_UNSIGNED_SUBTRACTION": 0, "NO_DIR_IN_CREATE": 0, "POSTGRESQL": 0, "DB2": 0, "MAXDB": 0,
	"NO_KEY_OPTIONS": 0, "NO_TABLE_OPTIONS": 0, "NO_FIELD_OPTIONS": 0, "MYSQL323": mysql.ModeHighNotPrecedence,
	"MYSQL40": mysql.ModeHighNotPrecedence, "ANSI": 0, "NO_AUTO_VALUE_ON_ZERO": 0,
	"NO_BACKSLASH_ESCAPES": mysql.ModeNoBackslashEscapes, "STRICT_TRANS_TABLES": 0, "STRICT_ALL_TABLES": 0,
	"NO_ZERO_IN_DATE": 0, "NO_ZERO_DATE": 0, "INVALID_DATES": 0, "ALLOW_INVALID_DATES": 0,
	"ERROR_FOR_DIVISION_BY_ZERO": 0, "TRADITIONAL": 0, "NO_AUTO_CREATE_USER": 0,
	"HIGH_NOT_PRECEDENCE": mysql.ModeHighNotPrecedence, "NO_ENGINE_SUBSTITUTION": 0,
	"PAD_CHAR_TO_FULL_LENGTH": 0, "EMPTY_STRING_IS_NULL": 0, "SIMULTANEOUS_ASSIGNMENT": 0,
	"TIME_ROUND_FRACTIONAL": 0, "TIME_TRUNCATE_FRACTIONAL": 0,
}

// sqlModeCombos are the combination modes whose members change lexing.
var sqlModeCombos = map[string]mysql.SQLMode{
	"ANSI":       mysql.ModePipesAsConcat | mysql.ModeANSIQuotes | mysql.ModeIgnoreSpace,
	"POSTGRESQL": mysql.ModePipesAsConcat | mysql.ModeANSIQuotes | mysql.ModeIgnoreSpace,
	"DB2":        mysql.ModePipesAsConcat | mysql.ModeANSIQuotes | mysql.ModeIgnoreSpace,
	"MAXDB":      mysql.ModePipesAsConcat | mysql.ModeANSIQuotes | mysql.ModeIgnoreSpace,
}

// ErrSQLModeUnsupported is returned by [ParseSQLMode] for modes whose
// grammar the planner does not implement (MariaDB's ORACLE and MSSQL) and
// for names it does not know.
var ErrSQLModeUnsupported = errors.New("sql_mode not supported by the proxy")

// ParseSQLMode reads a sql_mode value ("STRICT_TRANS_TABLES,ANSI_QUOTES",
// as SET takes it or @@sql_mode shows it) and returns its lexing bits.
func ParseSQLMode(s string) (mysql.SQLMode, error) {
	var m mysql.SQLMode
	for name := range strings.SplitSeq(s, ",") {
		name = strings.ToUpper(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		bits, ok := sqlModes[name]
		if !ok {
			return 0, ErrSQLModeUnsupported
		}
		m |= bits | sqlModeCombos[name]
	}
	return m & lexModes, nil
}

// errUnprovable is the normaliser's answer for text whose reading by the
// server it cannot establish.
var errUnprovable = errors.New("unprovable")

// normalize returns sql as the server's lexer reads it under lex: comments
// the server skips (including executable comments for a newer version, and
// /*M! … */ on MySQL) become spaces, the markers of executable comments it
// runs (/*!NNNNN, /*M!NNNNN and their */) become spaces and their bodies stay,
// so that the TiDB parser, which always reads /*! bodies, parses exactly
// the statement the server will run. The result has the length of sql
// (offsets are kept). It fails with errUnprovable when the reading cannot
// be established (an executable comment inside another, an unknown server
// version, a ; inside an executable comment, a NUL outside a string, a
// non-ASCII byte after -- or, in a single-byte client character set,
// outside a string literal, a quote inside an optimizer hint) and with
// another error for unterminated strings and comments.
func normalize(sql string, lex Lex) (string, error) {
	z := normalizer{sql: sql, lex: lex}
	nbe := lex.Mode&mysql.ModeNoBackslashEscapes != 0
	ansi := lex.Mode&mysql.ModeANSIQuotes != 0
	n := len(sql)
	for i := 0; i < n; {
		c := sql[i]
		var err error
		switch {
		case c == '\'' || (c == '"' && !ansi):
			i, err = skipQuoted(sql, i, c, !nbe, false)
		case c == '`' || (c == '"' && ansi):
			i, err = skipQuoted(sql, i, c, false, lex.SingleByte)
		case c == '#':
			j := lineEnd(sql, i)
			z.blank(i, j)
			i = j
		case c == '-' && i+1 < n && sql[i+1] == '-':
			i, err = z.dashes(i)
		case c == '/' && i+1 < n && sql[i+1] == '*':
			i, err = z.comment(i)
		case z.inExec && c == '*' && i+1 < n && sql[i+1] == '/':
			z.blank(i, i+2)
			z.inExec = false
			i += 2
		case z.inExec && c == ';':
			return "", errUnprovable
		case c == 0:
			return "", errUnprovable
		case c >= 0x80 && lex.SingleByte:
			return "", errUnprovable
		default:
			i++
		}
		if err != nil {
			return "", err
		}
	}
	if z.inExec {
		return "", errors.New("unterminated comment")
	}
	if z.out == nil {
		return sql, nil
	}
	return string(z.out), nil
}

// normalizer is normalize's state: the text, its copy once the first
// comment is blanked, and whether the scan is inside an executable comment
// that runs.
type normalizer struct {
	sql    string
	lex    Lex
	out    []byte // nil until the first edit
	inExec bool
}

// blank replaces sql[from:to] with spaces (keeping newlines).
func (z *normalizer) blank(from, to int) {
	if z.out == nil {
		z.out = []byte(z.sql)
	}
	for k := from; k < to; k++ {
		if z.out[k] != '\n' {
			z.out[k] = ' '
		}
	}
}

// dashes reads the -- at sql[i]: a comment to the end of the line when a
// space or control character follows, else two minus signs.
func (z *normalizer) dashes(i int) (int, error) {
	sql := z.sql
	if i+2 < len(sql) {
		d := sql[i+2]
		if d >= 0x80 {
			return 0, errUnprovable
		}
		if !(d <= ' ' || d == 0x7f) {
			return i + 2, nil // two minus signs
		}
	}
	j := lineEnd(sql, i)
	z.blank(i, j)
	return j, nil
}

// comment reads the /* at sql[i]: a plain comment or optimizer hint is
// blanked; an executable comment (/*! or MariaDB's /*M!) whose version
// condition holds has its opening blanked and its content read as SQL, one
// that does not hold is blanked whole.
func (z *normalizer) comment(i int) (int, error) {
	sql, lex, n := z.sql, z.lex, len(z.sql)
	exec, mariaMark := false, false
	if i+2 < n && sql[i+2] == '!' {
		exec = true
	} else if i+3 < n && sql[i+2] == 'M' && sql[i+3] == '!' {
		switch lex.Flavour {
		case FlavourMariaDB:
			exec, mariaMark = true, true
		case FlavourUnknown:
			return 0, errUnprovable
		}
	}
	if exec && z.inExec {
		return 0, errUnprovable
	}
	if !exec {
		return z.plainComment(i)
	}
	p := i + 3
	if mariaMark {
		p++
	}
	run, p, err := versionCondition(sql, p, lex, mariaMark)
	if err != nil {
		return 0, err
	}
	if !run {
		end, ok := commentEnd(sql, p, 1)
		if !ok {
			return 0, errors.New("unterminated comment")
		}
		z.blank(i, end)
		return end, nil
	}
	z.blank(i, p)
	z.inExec = true
	return p, nil
}

// plainComment blanks the comment or optimizer hint at sql[i]. MySQL's
// hint scanner reads quoted names, so a hint's end is not simply the first
// */ when it holds a quote: such a hint cannot be read exactly.
func (z *normalizer) plainComment(i int) (int, error) {
	sql := z.sql
	end, ok := commentEnd(sql, i+2, 0)
	if !ok {
		return 0, errors.New("unterminated comment")
	}
	if i+2 < len(sql) && sql[i+2] == '+' && strings.ContainsAny(sql[i:end], "'\"`") {
		return 0, errUnprovable
	}
	z.blank(i, end)
	return end, nil
}

// versionCondition reads the optional version number of an executable
// comment at sql[p] and reports whether the comment runs on this server,
// and where its content starts. MySQL reads five digits; MariaDB five or
// six, and ignores MySQL-only versions 5.7.0-9.99.99 in a /*! comment.
func versionCondition(sql string, p int, lex Lex, mariaMark bool) (bool, int, error) {
	digits := 0
	for p+digits < len(sql) && sql[p+digits] >= '0' && sql[p+digits] <= '9' {
		digits++
	}
	if digits < 5 {
		return true, p, nil
	}
	vlen := 5
	switch lex.Flavour {
	case FlavourMariaDB:
		if digits >= 7 {
			return false, 0, errUnprovable
		}
		vlen = digits
	default:
		if digits >= 6 {
			return false, 0, errUnprovable
		}
	}
	if lex.Version == 0 {
		return false, 0, errUnprovable
	}
	v, _ := strconv.Atoi(sql[p : p+vlen])
	version := uint32(v)
	run := version <= lex.Version
	if lex.Flavour == FlavourMariaDB && !mariaMark && version >= 50700 && version <= 99999 {
		run = false
	}
	if run {
		p += vlen
	}
	return run, p, nil
}

// Normalize is normalize for the wire layer (which reads the few
// statements it follows, such as SET time_zone, in the server's reading).
func Normalize(sql string, lex Lex) (string, error) { return normalize(sql, lex) }

// skipQuoted returns the index after the quoted token starting at i (quote
// q; a doubled quote stands for itself; a backslash escapes the next byte
// if backslash). highRefused fails on bytes ≥ 0x80.
func skipQuoted(sql string, i int, q byte, backslash, highRefused bool) (int, error) {
	for j := i + 1; j < len(sql); j++ {
		switch c := sql[j]; {
		case c == '\\' && backslash:
			j++
		case c == q:
			if j+1 < len(sql) && sql[j+1] == q {
				j++
				continue
			}
			return j + 1, nil
		case c >= 0x80 && highRefused:
			return 0, errUnprovable
		}
	}
	return 0, errors.New("unterminated quoted string")
}

// lineEnd returns the index of the newline ending the comment at i (or the
// end of sql).
func lineEnd(sql string, i int) int {
	if k := strings.IndexByte(sql[i:], '\n'); k >= 0 {
		return i + k
	}
	return len(sql)
}

// commentEnd returns the index after the */ closing a comment whose body
// starts at i, allowing nest levels of /* … */ inside (the server's
// consume_comment).
func commentEnd(sql string, i, nest int) (int, bool) {
	for i < len(sql) {
		c := sql[i]
		i++
		if nest > 0 && c == '/' && i < len(sql) && sql[i] == '*' {
			end, ok := commentEnd(sql, i+1, nest-1)
			if !ok {
				return 0, false
			}
			i = end
			continue
		}
		if c == '*' && i < len(sql) && sql[i] == '/' {
			return i + 1, true
		}
	}
	return 0, false
}
