package rules

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/value"
)

// Dialect selects the identifier rules of one SQL dialect. The zero value
// is invalid.
type Dialect uint8

func (d Dialect) String() string { return enumName(d, "Dialect", "postgres", "mysql") }

const (
	DialectUnknown  Dialect = 0
	DialectPostgres Dialect = 1
	DialectMySQL    Dialect = 2
)

// enumName names v, a value of the enum typ numbered from 1: names[v-1], or
// typ(v) for a value with no name (0 and out of range).
func enumName[T ~uint8](v T, typ string, names ...string) string {
	if v >= 1 && int(v) <= len(names) {
		return names[v-1]
	}
	return fmt.Sprintf("%s(%d)", typ, uint8(v))
}

// Mode is how a column is encrypted. The zero value is invalid.
type Mode uint8

const (
	ModeUnknown Mode = 0
	// ModeRandomized: XAES-256-GCM with a random 192-bit nonce (legacy key
	// versions: AES-256-GCM with a random 96-bit nonce). Equal values give
	// different ciphertexts; no comparison is possible.
	ModeRandomized Mode = 1
	// ModeDeterministic: AES-256-SIV. Equal values give equal ciphertexts
	// (per key version), so equality, GROUP BY and DISTINCT work.
	ModeDeterministic Mode = 2
)

func (m Mode) String() string { return enumName(m, "Mode", "randomized", "deterministic") }

// Algorithm is the algorithm of new data keys for the mode (keys init):
// XAES-256-GCM for randomized, AES-256-SIV for deterministic. Its Overhead
// is the largest of the algorithms the mode Accepts.
func (m Mode) Algorithm() crypto.Algorithm {
	switch m {
	case ModeRandomized:
		return crypto.AlgorithmXAESGCM
	case ModeDeterministic:
		return crypto.AlgorithmAESSIV
	default:
		return crypto.AlgorithmUnknown
	}
}

// Accepts reports whether data key versions and ciphertexts of algorithm a
// may serve a column of mode m: a randomized column takes XAES-256-GCM and
// legacy AES-256-GCM (a key's versions may mix them after a rotation), a
// deterministic one only AES-256-SIV.
func (m Mode) Accepts(a crypto.Algorithm) bool {
	switch m {
	case ModeRandomized:
		return a.Randomized()
	case ModeDeterministic:
		return a == crypto.AlgorithmAESSIV
	default:
		return false
	}
}

// Spec is one configured encrypted column: a neutral copy of a
// config.Column and the table it belongs to.
type Spec struct {
	Database string // "" = every database
	Schema   string // PostgreSQL; "" means public. Ignored for MySQL.
	Table    string
	Column   string
	Key      string // data key name; required
	Mode     Mode
	Type     value.Type
}

// ColumnRule is the rule for one encrypted column. Names are the folded
// names lookups compare against (see the package doc). Rules are shared and
// must not be modified.
type ColumnRule struct {
	Database string // "" = every database
	Schema   string // "" for MySQL
	Table    string
	Column   string
	Key      string
	Mode     Mode
	Type     value.Type
	// Deterministic is Mode == ModeDeterministic.
	Deterministic bool

	// snaps caches the column's key lookups for the Encryptor (nil for
	// a ColumnRule not made by New: it then looks them up every time).
	snaps *keySnaps
}

// String is the qualified column name, e.g. public.users.email (schema
// omitted for MySQL). It is safe to show in errors and logs.
func (c *ColumnRule) String() string {
	if c == nil {
		return "<nil column>"
	}
	if c.Schema == "" {
		return c.Table + "." + c.Column
	}
	return c.Schema + "." + c.Table + "." + c.Column
}

// TableRule is the set of encrypted columns of one table.
type TableRule struct {
	Database string
	Schema   string
	Table    string
	// Columns are the encrypted columns in configuration order.
	Columns []*ColumnRule

	dialect Dialect
	byName  map[string]*ColumnRule // folded (PG) or lower-cased (MySQL) name
	byLower map[string]*ColumnRule // lower-cased name, for SimilarColumn
}

// String is the qualified table name, e.g. public.users.
func (t *TableRule) String() string {
	if t.Schema == "" {
		return t.Table
	}
	return t.Schema + "." + t.Table
}

// Column returns the rule of column name (as the parser delivers it), or
// nil if the column is not encrypted. It does not allocate for names of up
// to 128 bytes.
func (t *TableRule) Column(name string) *ColumnRule {
	if t == nil {
		return nil
	}
	if t.dialect == DialectMySQL {
		return lookupFold(t.byName, name)
	}
	return t.byName[name]
}

// SimilarColumn returns the rule of a column whose name equals name only
// when case is ignored (PostgreSQL: Column found nothing, but for example
// "Email" was written quoted while the configured column is email). Callers
// refuse such references rather than treat them as plaintext. It returns
// nil when Column finds the column, and always for MySQL.
func (t *TableRule) SimilarColumn(name string) *ColumnRule {
	if t == nil || t.dialect == DialectMySQL || t.byName[name] != nil {
		return nil
	}
	return lookupFold(t.byLower, name)
}

// tableKey is a (schema, table) pair, folded.
type tableKey struct{ schema, table string }

// Set is an immutable set of encryption rules for one dialect. It is safe
// for concurrent use.
type Set struct {
	dialect Dialect
	tables  []*TableRule
	// byName holds the rules by folded (PG) / lower-cased (MySQL) key; a
	// slice because rules for different databases may share a name.
	byName  map[tableKey][]*TableRule
	byLower map[tableKey][]*TableRule // lower-cased key, for Similar (PG)

	filter needleSet // MayTouch
}

// ErrInvalidSpec is wrapped by New for a Spec it cannot use.
var ErrInvalidSpec = errors.New("invalid encryption rule")

// New builds a Set from specs. Every spec needs a table, a column, a key, a
// valid mode and a valid type; a column may appear only once (after
// folding); columns sharing a key must have the same mode and type.
func New(d Dialect, specs []Spec) (*Set, error) {
	if d != DialectPostgres && d != DialectMySQL {
		return nil, fmt.Errorf("rules: %w: unknown dialect %s", ErrInvalidSpec, d)
	}
	s := &Set{
		dialect: d,
		byName:  map[tableKey][]*TableRule{},
		byLower: map[tableKey][]*TableRule{},
	}
	type dbTable struct {
		db string
		tableKey
	}
	tables := map[dbTable]*TableRule{}
	keys := map[string]*ColumnRule{}
	for i, sp := range specs {
		where := fmt.Sprintf("rule %d (%s.%s)", i, sp.Table, sp.Column)
		switch {
		case sp.Table == "" || sp.Column == "":
			return nil, fmt.Errorf("rules: %s: %w: table and column are required", where, ErrInvalidSpec)
		case sp.Key == "":
			return nil, fmt.Errorf("rules: %s: %w: no data key name", where, ErrInvalidSpec)
		case sp.Mode != ModeRandomized && sp.Mode != ModeDeterministic:
			return nil, fmt.Errorf("rules: %s: %w: invalid mode %s", where, ErrInvalidSpec, sp.Mode)
		case !sp.Type.Valid():
			return nil, fmt.Errorf("rules: %s: %w: invalid plaintext type %s", where, ErrInvalidSpec, sp.Type)
		}
		schema, table, column := "", foldConfigName(d, sp.Table), foldConfigName(d, sp.Column)
		if d == DialectPostgres {
			schema = "public"
			if sp.Schema != "" {
				schema = foldConfigName(d, sp.Schema)
			}
		}
		db := sp.Database
		if d == DialectMySQL {
			db = strings.ToLower(db)
		}
		k := dbTable{db, tableKey{schema, table}}
		t := tables[k]
		if t == nil {
			t = &TableRule{Database: sp.Database, Schema: schema, Table: table, dialect: d,
				byName: map[string]*ColumnRule{}, byLower: map[string]*ColumnRule{}}
			tables[k] = t
			s.tables = append(s.tables, t)
			s.byName[k.tableKey] = append(s.byName[k.tableKey], t)
			lk := tableKey{strings.ToLower(schema), strings.ToLower(table)}
			s.byLower[lk] = append(s.byLower[lk], t)
		}
		if t.byName[column] != nil {
			return nil, fmt.Errorf("rules: %s: %w: column %s configured twice", where, ErrInvalidSpec, t.byName[column])
		}
		c := &ColumnRule{
			Database: sp.Database, Schema: schema, Table: table, Column: column,
			Key: sp.Key, Mode: sp.Mode, Type: sp.Type, Deterministic: sp.Mode == ModeDeterministic,
			snaps: new(keySnaps),
		}
		if o := keys[c.Key]; o != nil && (o.Mode != c.Mode || o.Type != c.Type) {
			return nil, fmt.Errorf("rules: %s: %w: data key %q is used by %s as %s %s and by %s as %s %s; columns sharing a key must have the same mode and type",
				where, ErrInvalidSpec, c.Key, o, o.Mode, o.Type, c, c.Mode, c.Type)
		} else if o == nil {
			keys[c.Key] = c
		}
		t.Columns = append(t.Columns, c)
		t.byName[column] = c
		t.byLower[strings.ToLower(column)] = c
	}
	s.filter = newNeedleSet(d, tableNames(s.tables))
	return s, nil
}

// Dialect is the dialect the Set was built for.
func (s *Set) Dialect() Dialect { return s.dialect }

// Tables returns the table rules in configuration order. The slice is
// shared: do not modify it.
func (s *Set) Tables() []*TableRule { return s.tables }

// Empty reports whether the Set has no rules (then nothing is encrypted and
// MayTouch is always false).
func (s *Set) Empty() bool { return s == nil || len(s.tables) == 0 }

// ForDatabase returns the Set of rules that apply in database name: those
// configured for it and those without a database. The result shares rule
// pointers with s.
func (s *Set) ForDatabase(name string) *Set {
	out := &Set{dialect: s.dialect, byName: map[tableKey][]*TableRule{}, byLower: map[tableKey][]*TableRule{}}
	for _, t := range s.tables {
		if !s.databaseMatches(t, name) {
			continue
		}
		out.tables = append(out.tables, t)
		k := tableKey{t.Schema, t.Table}
		if s.dialect == DialectMySQL {
			k = tableKey{"", t.Table}
		}
		out.byName[k] = append(out.byName[k], t)
		lk := tableKey{strings.ToLower(t.Schema), strings.ToLower(t.Table)}
		out.byLower[lk] = append(out.byLower[lk], t)
	}
	out.filter = newNeedleSet(s.dialect, tableNames(out.tables))
	return out
}

func (s *Set) databaseMatches(t *TableRule, database string) bool {
	if t.Database == "" {
		return true
	}
	if s.dialect == DialectMySQL {
		return strings.EqualFold(t.Database, database)
	}
	return t.Database == database
}

// Table returns the rule of table schema.table in database, or nil if the
// table has no encrypted column. For PostgreSQL, schema and table are
// compared exactly (pass them as the parser delivers them; the caller
// resolves an unqualified name to a schema first); a rule for a specific
// database wins over one for every database. For MySQL schema is ignored
// and names compare case-insensitively. It does not allocate for names of
// up to 128 bytes.
func (s *Set) Table(database, schema, table string) *TableRule {
	if s == nil || len(s.tables) == 0 {
		return nil
	}
	var cands []*TableRule
	if s.dialect == DialectMySQL {
		var buf [128]byte
		if l, ok := lowerASCII(buf[:0], table); ok {
			cands = s.byName[tableKey{"", string(l)}]
		} else {
			cands = s.byName[tableKey{"", strings.ToLower(table)}]
		}
	} else {
		cands = s.byName[tableKey{schema, table}]
	}
	return s.pick(cands, database)
}

// pick prefers a rule for database over a rule for every database.
func (s *Set) pick(cands []*TableRule, database string) *TableRule {
	var any *TableRule
	for _, t := range cands {
		if t.Database == "" {
			if any == nil {
				any = t
			}
			continue
		}
		if s.databaseMatches(t, database) {
			return t
		}
	}
	return any
}

// Similar returns a rule whose schema and table equal schema and table only
// when case is ignored, when Table finds none (PostgreSQL only; nil for
// MySQL, where Table already ignores case). The planner refuses statements
// naming such a table: either the configuration or the statement has the
// case wrong, and guessing could store plaintext.
func (s *Set) Similar(database, schema, table string) *TableRule {
	if s == nil || s.dialect != DialectPostgres || len(s.tables) == 0 || s.Table(database, schema, table) != nil {
		return nil
	}
	var bs, bt [128]byte
	ls, ok1 := lowerASCII(bs[:0], schema)
	lt, ok2 := lowerASCII(bt[:0], table)
	var cands []*TableRule
	if ok1 && ok2 {
		cands = s.byLower[tableKey{string(ls), string(lt)}]
	} else {
		cands = s.byLower[tableKey{strings.ToLower(schema), strings.ToLower(table)}]
	}
	return s.pick(cands, database)
}

// HasTableNamed reports whether some rule's table is called table, in any
// schema (PostgreSQL: exact after folding; MySQL: ignoring case). The
// planner uses it to decide whether an unqualified name needs resolving.
func (s *Set) HasTableNamed(table string) bool {
	for _, t := range s.tables {
		if t.Table == table || (s.dialect == DialectMySQL && strings.EqualFold(t.Table, table)) {
			return true
		}
	}
	return false
}

// TablesNamed appends to dst the rules whose table is called table (in any
// schema), as HasTableNamed matches them, and returns dst.
func (s *Set) TablesNamed(dst []*TableRule, table string) []*TableRule {
	for _, t := range s.tables {
		if t.Table == table || (s.dialect == DialectMySQL && strings.EqualFold(t.Table, table)) {
			dst = append(dst, t)
		}
	}
	return dst
}

// Column returns the rule of column schema.table.column in database, or nil
// if that column is not encrypted.
func (s *Set) Column(database, schema, table, column string) *ColumnRule {
	return s.Table(database, schema, table).Column(column)
}

// SameKey reports whether equal plaintexts in columns a and b have equal
// ciphertexts, so that a = b (a join, IN (SELECT …), a set operation that
// removes duplicates) can be evaluated on ciphertexts: both deterministic,
// the same data key and the same plaintext type. False if either is nil.
func SameKey(a, b *ColumnRule) bool {
	return a != nil && b != nil && a.Deterministic && b.Deterministic && a.Key == b.Key && a.Type == b.Type
}

// Interchangeable reports whether a ciphertext of column a is a valid
// ciphertext of column b (and vice versa): the same data key, mode and
// plaintext type. Copying a value between such columns (INSERT … SELECT,
// UPDATE SET b = a, ON CONFLICT … SET b = EXCLUDED.a) needs no decryption.
// False if either is nil.
func Interchangeable(a, b *ColumnRule) bool {
	return a != nil && b != nil && a.Key == b.Key && a.Mode == b.Mode && a.Type == b.Type
}

// namedatalen is PostgreSQL's NAMEDATALEN: identifiers are truncated to
// namedatalen-1 bytes.
const namedatalen = 64

// foldConfigName turns a configured name into the form lookups compare
// against (see the package doc).
func foldConfigName(d Dialect, name string) string {
	if len(name) >= 2 && name[0] == '"' && name[len(name)-1] == '"' {
		name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
		if d == DialectMySQL {
			return strings.ToLower(name)
		}
		return truncateIdentifier(name)
	}
	if d == DialectMySQL {
		return strings.ToLower(name)
	}
	b := []byte(name)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return truncateIdentifier(string(b))
}

// truncateIdentifier cuts name to at most namedatalen-1 bytes on a UTF-8
// boundary, as PostgreSQL's truncate_identifier does.
func truncateIdentifier(name string) string {
	if len(name) < namedatalen {
		return name
	}
	n := namedatalen - 1
	for n > 0 && !utf8.RuneStart(name[n]) {
		n--
	}
	return name[:n]
}

// lowerASCII appends s lower-cased to dst if s is ASCII and fits in dst's
// capacity (so the caller's stack buffer is used); ok is false otherwise.
func lowerASCII(dst []byte, s string) ([]byte, bool) {
	if len(s) > cap(dst) {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return nil, false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// lookupFold looks name up in m, whose keys are lower-cased, without
// allocating for short ASCII names.
func lookupFold(m map[string]*ColumnRule, name string) *ColumnRule {
	var buf [128]byte
	if l, ok := lowerASCII(buf[:0], name); ok {
		return m[string(l)]
	}
	return m[strings.ToLower(name)]
}
