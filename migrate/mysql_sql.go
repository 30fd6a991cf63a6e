package migrate

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
	"github.com/dbproxy/dbproxy/value"
)

// myStatements builds the MySQL/MariaDB SQL of one run. Every name is
// quoted and qualified with the database (the connection has none).
type myStatements struct {
	op   Op
	t    Table
	info *tableInfo
}

// myQuote quotes a MySQL identifier.
func myQuote(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func (s myStatements) col(name string) string { return s.t.qualified() + "." + myQuote(name) }

func (s myStatements) keyList() string {
	q := make([]string, len(s.info.keyCols))
	for i, k := range s.info.keyCols {
		q[i] = s.col(k)
	}
	return strings.Join(q, ", ")
}

// after is the keyset condition spelled out column by column (k1 > ? OR
// (k1 = ? AND k2 > ?) …), which every MySQL version turns into a range
// scan of the key.
func (s myStatements) after() string {
	var or []string
	for i := range s.info.keyCols {
		var and []string
		for j := 0; j < i; j++ {
			and = append(and, s.col(s.info.keyCols[j])+" = ?")
		}
		and = append(and, s.col(s.info.keyCols[i])+" > ?")
		or = append(or, "("+strings.Join(and, " AND ")+")")
	}
	return "(" + strings.Join(or, " OR ") + ")"
}

func (s myStatements) afterArgs(lastKey []string) []any {
	var args []any
	for i := range lastKey {
		for j := 0; j <= i; j++ {
			args = append(args, lastKey[j])
		}
	}
	return args
}

// pending is the condition of rows whose shadow the triggers reset.
func (s myStatements) pending() string {
	var or []string
	for _, c := range s.t.Columns {
		or = append(or, fmt.Sprintf("(%s IS NULL AND %s IS NOT NULL)", s.col(shadowName(c.Column)), s.col(c.Column)))
	}
	return "(" + strings.Join(or, " OR ") + ")"
}

func (s myStatements) selectBatch(withAfter, pending, lock bool, limit int) string {
	cols := make([]string, 0, len(s.info.keyCols)+len(s.t.Columns))
	for _, k := range s.info.keyCols {
		cols = append(cols, s.col(k))
	}
	for _, c := range s.t.Columns {
		cols = append(cols, s.col(c.Column))
	}
	var where []string
	if pending {
		where = append(where, s.pending())
	}
	if withAfter {
		where = append(where, s.after())
	}
	q := fmt.Sprintf("SELECT %s FROM %s", strings.Join(cols, ", "), s.t.qualified())
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + s.keyList()
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	if lock {
		q += " FOR UPDATE"
	}
	return q
}

// update writes the rows of the batch numbered rows in one statement: per
// target column a CASE over the key, WHERE the key is one of theirs. A
// NULL value of reencrypt keeps the column's value.
func (s myStatements) update(b *batchRows, outs [][][]byte, rows []int) (string, []any) {
	var sets []string
	var args []any
	keyIs := s.keyIs()
	for i, c := range s.t.Columns {
		var w strings.Builder
		w.WriteString("CASE")
		for _, j := range rows {
			w.WriteString(" WHEN " + keyIs + " THEN ?")
			args = append(args, s.keyArgs(b, j)...)
			switch v := outs[i][j]; {
			case v == nil:
				args = append(args, nil)
			case s.op == OpDecrypt:
				args = append(args, string(v))
			default:
				args = append(args, v)
			}
		}
		if s.op == OpReencrypt {
			sets = append(sets, fmt.Sprintf("%s = COALESCE(%s END, %s)", myQuote(c.Column), w.String(), myQuote(c.Column)))
			continue
		}
		sh := myQuote(shadowName(c.Column))
		sets = append(sets, fmt.Sprintf("%s = %s ELSE %s END", sh, w.String(), sh))
	}
	var or []string
	for _, j := range rows {
		or = append(or, "("+keyIs+")")
		args = append(args, s.keyArgs(b, j)...)
	}
	return fmt.Sprintf("UPDATE %s SET %s WHERE %s", s.t.qualified(), strings.Join(sets, ", "), strings.Join(or, " OR ")), args
}

// keyIs is the condition that a row has the key of the parameters.
func (s myStatements) keyIs() string {
	eq := make([]string, len(s.info.keyCols))
	for i, k := range s.info.keyCols {
		eq[i] = myQuote(k) + " = ?"
	}
	return strings.Join(eq, " AND ")
}

func (s myStatements) keyArgs(b *batchRows, row int) []any {
	out := make([]any, len(b.keys))
	for i, k := range b.keys {
		out[i] = k[row]
	}
	return out
}

// maxParams keeps a statement under MySQL's 65,535 placeholders;
// maxUpdateRows bounds the rows of one UPDATE, whose CASE costs each row a
// comparison per row of the statement.
const (
	maxParams     = 60000
	maxUpdateRows = 100
)

// writeBatch updates the kept rows, in as few statements as the
// placeholder limit allows (in the batch's transaction).
func (s myStatements) writeBatch(ctx context.Context, q execQuerier, b *batchRows, outs [][][]byte, keep []bool) error {
	perRow := (len(s.t.Columns) + 1) * (len(b.keys) + 1)
	var rows []int
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		stmt, args := s.update(b, outs, rows)
		rows = rows[:0]
		_, err := q.ExecContext(ctx, stmt, args...)
		return err
	}
	for j := range b.n {
		if !keep[j] {
			continue
		}
		rows = append(rows, j)
		if len(rows) >= maxUpdateRows || len(rows)*perRow >= maxParams {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// readPlain reads MySQL's text form (session time_zone +00:00), as the
// proxy reads the values of a statement.
func (s myStatements) readPlain(col *rules.ColumnRule, v []byte) ([]byte, error) {
	return value.AppendCanonicalMySQLText(nil, col.Type, v, time.UTC)
}

// writePlain is the MySQL text form of a canonical value, as the proxy
// returns it to a session in time_zone +00:00.
func (s myStatements) writePlain(col *rules.ColumnRule, canon []byte) ([]byte, error) {
	return value.AppendMySQLTextInZone(nil, col.Type, canon, time.UTC)
}

// myPlainTypes are the MySQL DATA_TYPEs that hold each plaintext type.
var myPlainTypes = map[value.Type][]string{
	value.TypeText:        {"varchar", "char", "tinytext", "text", "mediumtext", "longtext"},
	value.TypeSmallint:    {"smallint", "tinyint"},
	value.TypeInt:         {"int", "mediumint", "smallint", "tinyint"},
	value.TypeBigint:      {"bigint", "int", "mediumint", "smallint", "tinyint"},
	value.TypeReal:        {"float"},
	value.TypeDouble:      {"double", "float"},
	value.TypeNumeric:     {"decimal"},
	value.TypeBoolean:     {"tinyint"},
	value.TypeDate:        {"date"},
	value.TypeTimestamp:   {"datetime"},
	value.TypeTimestamptz: {"timestamp"},
	value.TypeUUID:        {"uuid", "char", "varchar"},
	value.TypeJSON:        {"json", "longtext"},
	value.TypeBytes:       {"varbinary", "blob", "tinyblob", "mediumblob", "longblob"},
}

// myDecryptTypes are the column types migrate decrypt creates.
var myDecryptTypes = map[value.Type]string{
	value.TypeText: "LONGTEXT", value.TypeSmallint: "SMALLINT", value.TypeInt: "INT", value.TypeBigint: "BIGINT",
	value.TypeReal: "FLOAT", value.TypeDouble: "DOUBLE", value.TypeNumeric: "DECIMAL(65,30)", value.TypeBoolean: "BOOLEAN",
	value.TypeDate: "DATE", value.TypeTimestamp: "DATETIME(6)", value.TypeTimestamptz: "TIMESTAMP(6)", value.TypeUUID: "CHAR(36)",
	value.TypeJSON: "LONGTEXT", value.TypeBytes: "LONGBLOB",
}

func (s myStatements) holdsPlain(ci columnInfo, t value.Type) bool {
	for _, name := range myPlainTypes[t] {
		if ci.dataType == name {
			return true
		}
	}
	return false
}

// myCipherTypes keep ciphertext bytes as they are (BINARY(n) pads).
var myCipherTypes = map[string]bool{"varbinary": true, "tinyblob": true, "blob": true, "mediumblob": true, "longblob": true}

// maxCanonical bounds the canonical encoding of a non-text value (a
// DECIMAL(65,30) is 67 characters).
const maxCanonical = 80

// maxVarbinary is the longest shadow kept VARBINARY: InnoDB's longest index
// key, so that a deterministic column can still be indexed whole.
const maxVarbinary = 3072

// shadowType is the type of c's shadow column: for encrypt a VARBINARY
// with room for the longest value plus the ciphertext's overhead, or a
// BLOB type when that is long; for decrypt the rule type's column type.
func (s myStatements) shadowType(c *rules.ColumnRule) string {
	if s.op == OpDecrypt {
		return myDecryptTypes[c.Type]
	}
	n := int64(maxCanonical)
	if ci := s.info.columns[c.Column]; c.Type == value.TypeText || c.Type == value.TypeJSON {
		n = ci.octets
	}
	n += int64(crypto.AlgorithmXAESGCM.Overhead())
	switch {
	case n <= maxVarbinary:
		return fmt.Sprintf("VARBINARY(%d)", n)
	case n <= 65535:
		return "BLOB"
	case n <= 1<<24-1:
		return "MEDIUMBLOB"
	}
	return "LONGBLOB"
}

func (s myStatements) createState() string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (\n"+
		"  op VARCHAR(16) NOT NULL, table_name VARCHAR(200) NOT NULL, `columns` TEXT NOT NULL, phase VARCHAR(16) NOT NULL,\n"+
		"  last_key TEXT, rows_done BIGINT NOT NULL DEFAULT 0, changed BIGINT NOT NULL DEFAULT 0,\n"+
		"  started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),\n"+
		"  PRIMARY KEY (op, table_name)) ENGINE=InnoDB", s.t.stateName())
}

// triggers are the names of the BEFORE INSERT and BEFORE UPDATE triggers.
func (s myStatements) triggers() [2]string {
	return [2]string{derivedName("dbproxy_mi_", s.t.Name), derivedName("dbproxy_mu_", s.t.Name)}
}

// addShadow adds c's shadow column, last; encrypt adds the guard with it,
// on the shadow column. MySQL has no NOT VALID: adding a CHECK copies the
// table (writes wait, reads go on), which costs least here, while every
// shadow is NULL and nothing holds LOCK TABLES. The swap's rename carries
// the constraint over to the column's name (the server rewrites the
// expression), so the swap itself need not copy the table.
func (s myStatements) addShadow(c *rules.ColumnRule) string {
	q := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s NULL", s.t.qualified(), myQuote(shadowName(c.Column)), s.shadowType(c))
	if s.op == OpEncrypt {
		g := schemaguard.Target{Database: s.t.Schema, Table: s.t.Name, Column: shadowName(c.Column), Mode: c.Mode, Type: c.Type}
		q += fmt.Sprintf(", ADD CONSTRAINT %s CHECK (%s)", myQuote(schemaguard.ConstraintName(rules.DialectMySQL, s.t.Name, c.Column)),
			schemaguard.Expression(rules.DialectMySQL, g))
	}
	return q
}

// createTriggers mark a row pending: every insert, and every update that
// changes a source column (compared as bytes, so that a change of case or
// of trailing spaces counts under any collation).
func (s myStatements) createTriggers() []string {
	var ins, upd []string
	for _, c := range s.t.Columns {
		sh, src := myQuote(shadowName(c.Column)), myQuote(c.Column)
		ins = append(ins, fmt.Sprintf("NEW.%s = NULL", sh))
		upd = append(upd, fmt.Sprintf("NEW.%s = IF(BINARY NEW.%s <=> BINARY OLD.%s, NEW.%s, NULL)", sh, src, src, sh))
	}
	tr := s.triggers()
	db := myQuote(s.t.Schema) + "."
	return []string{
		fmt.Sprintf("CREATE TRIGGER %s%s BEFORE INSERT ON %s FOR EACH ROW SET %s", db, myQuote(tr[0]), s.t.qualified(), strings.Join(ins, ", ")),
		fmt.Sprintf("CREATE TRIGGER %s%s BEFORE UPDATE ON %s FOR EACH ROW SET %s", db, myQuote(tr[1]), s.t.qualified(), strings.Join(upd, ", ")),
	}
}

func (s myStatements) dropTriggers() []string {
	var out []string
	for _, tr := range s.triggers() {
		out = append(out, fmt.Sprintf("DROP TRIGGER IF EXISTS %s.%s", myQuote(s.t.Schema), myQuote(tr)))
	}
	return out
}

// swap is the one ALTER TABLE of the swap: per column, drop the guard
// (decrypt) and the source column, and rename the shadow, with the guard
// setup put on it (encrypt), to the column's name at its place (keeping
// NOT NULL). guarded names the columns that carry a guard now.
func (s myStatements) swap(guarded map[string]bool) string {
	var parts []string
	for _, c := range s.t.Columns {
		name := myQuote(schemaguard.ConstraintName(rules.DialectMySQL, s.t.Name, c.Column))
		if s.op == OpDecrypt && guarded[c.Column] {
			parts = append(parts, "DROP CONSTRAINT "+name)
		}
		parts = append(parts, "DROP COLUMN "+myQuote(c.Column))
	}
	for _, c := range s.t.Columns {
		ci := s.info.columns[c.Column]
		def := s.shadowType(c) + " NULL"
		if ci.notNull {
			def = s.shadowType(c) + " NOT NULL"
		}
		pos := " FIRST"
		if ci.after != "" {
			pos = " AFTER " + myQuote(ci.after)
		}
		parts = append(parts, fmt.Sprintf("CHANGE COLUMN %s %s %s%s", myQuote(shadowName(c.Column)), myQuote(c.Column), def, pos))
	}
	return fmt.Sprintf("ALTER TABLE %s %s", s.t.qualified(), strings.Join(parts, ", "))
}
