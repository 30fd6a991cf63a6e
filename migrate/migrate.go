package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dbproxy/dbproxy/rules"
)

// Op is what a migration does to its columns.
type Op string

// The operations.
const (
	OpEncrypt   Op = "encrypt"
	OpDecrypt   Op = "decrypt"
	OpReencrypt Op = "reencrypt"
)

// Cipher converts values as the proxy does; *rules.Encryptor satisfies it.
type Cipher interface {
	AppendStore(ctx context.Context, dst []byte, col *rules.ColumnRule, canon []byte) ([]byte, error)
	AppendDecrypt(ctx context.Context, dst []byte, col *rules.ColumnRule, ct []byte) ([]byte, error)
}

// Versions tells the primary version of a data key (reencrypt);
// *crypto/keys.Manager satisfies it through PrimaryVersion below.
type Versions interface {
	PrimaryVersion(ctx context.Context, key string) (uint32, error)
}

// Table is the table to migrate and the rules of the columns to move.
type Table struct {
	// Dialect is the database's: PostgreSQL (the zero value) or MySQL.
	Dialect rules.Dialect
	Schema  string // "" means public; MySQL: the database (required)
	Name    string
	Columns []*rules.ColumnRule // Column names as the database spells them
}

func (t Table) mysql() bool { return t.Dialect == rules.DialectMySQL }

func (t Table) schema() string {
	if t.Schema == "" && !t.mysql() {
		return "public"
	}
	return t.Schema
}

// quote quotes an identifier of t's database.
func (t Table) quote(s string) string {
	if t.mysql() {
		return myQuote(s)
	}
	return quote(s)
}

// ph turns PostgreSQL's $n placeholders (used in order, once each) into
// MySQL's ?.
func (t Table) ph(q string) string {
	if !t.mysql() {
		return q
	}
	return placeholder.ReplaceAllString(q, "?")
}

var placeholder = regexp.MustCompile(`\$[0-9]+`)

// String is schema.table.
func (t Table) String() string { return t.schema() + "." + t.Name }

// Options tune a run.
type Options struct {
	Batch  int     // rows per batch transaction; default 1000
	Rate   float64 // rows per second; 0 = unthrottled
	DryRun bool    // print the plan (to Plan) and change nothing
	Plan   io.Writer
	// Progress, when set, is called after every batch and phase change.
	Progress func(Progress)
	// Versions is required by reencrypt.
	Versions Versions
}

func (o Options) batch() int {
	if o.Batch <= 0 {
		return 1000
	}
	return o.Batch
}

// Progress is a snapshot of a run.
type Progress struct {
	Op    Op     `json:"op"`
	Table string `json:"table"`
	Phase string `json:"phase"`
	Done  int64  `json:"done"`  // rows of the current pass handled
	Total int64  `json:"total"` // rows in the table when the run started
	// Changed counts rows whose value this run converted.
	Changed int64 `json:"changed"`
}

// Result is what a finished run did.
type Result struct {
	Rows    int64 // rows visited
	Changed int64 // values converted
	Passes  int   // catch-up passes after the backfill
	Skipped bool  // nothing to do (already in the target form)
	Message string
	// SwapLock is how long the swap held ACCESS EXCLUSIVE on the table
	// (from the grant of the lock to the commit).
	SwapLock time.Duration
}

// Phases recorded in the state table.
const (
	phaseBackfill = "backfill"
	phaseCatchUp  = "catch-up"
	phaseSwapped  = "swapped"
	phaseDone     = "done"
)

// ErrBusy: another run holds the table's migration lock.
var ErrBusy = errors.New("another dbproxy migrate is running on this table")

// ErrNoKey: the table has no primary key and no unique key over NOT NULL
// columns, so it cannot be paged through.
var ErrNoKey = errors.New("table has no primary key or unique key over NOT NULL columns")

// StateTable is the name of the progress table, created in the schema of
// the migrated table.
const StateTable = "dbproxy_migrations"

// maxIdent is PostgreSQL's longest identifier.
const maxIdent = 63

// derivedName is prefix+name cut to 63 bytes, ending in a hash of name
// when cut, so it stays deterministic and distinct.
func derivedName(prefix, name string) string {
	s := prefix + name
	if len(s) <= maxIdent {
		return s
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "_" + hex.EncodeToString(sum[:4])
	n := maxIdent - len(suffix)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + suffix
}

// shadowName is the column the new form is built in.
func shadowName(column string) string { return derivedName("dbproxy_new_", column) }

// quote quotes a PostgreSQL identifier.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteLit quotes a PostgreSQL string literal.
func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (t Table) qualified() string { return t.quote(t.schema()) + "." + t.quote(t.Name) }

func (t Table) stateName() string { return t.quote(t.schema()) + "." + t.quote(StateTable) }

func (t Table) columnNames() string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Column
	}
	return strings.Join(names, ",")
}

func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
