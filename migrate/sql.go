package migrate

import (
	"context"
	"fmt"
	"strings"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
	"github.com/dbproxy/dbproxy/value"
)

// statements builds the SQL of one run. Column names come from the
// catalog and rules; every identifier is quoted.
type statements struct {
	op   Op
	t    Table
	info *tableInfo
}

// alias names the migrated table in UPDATE … FROM.
const alias = "dbproxy_t"

// keyList is the key columns, qualified with the table's alias: in ORDER
// BY an unqualified name would mean the output column of that name (the
// key cast to text), not the key.
func (s statements) keyList() string {
	q := make([]string, len(s.info.keyCols))
	for i, k := range s.info.keyCols {
		q[i] = alias + "." + quote(k)
	}
	return strings.Join(q, ", ")
}

// after is the keyset condition: the key after the parameters $from….
func (s statements) after(from int) string {
	ps := make([]string, len(s.info.keyCols))
	for i, typ := range s.info.keyTypes {
		ps[i] = fmt.Sprintf("$%d::text::%s", from+i, typ)
	}
	return fmt.Sprintf("(%s) > (%s)", s.keyList(), strings.Join(ps, ", "))
}

// source is the column a run reads: encrypt reads the plaintext as text
// (DateStyle ISO, TimeZone UTC), the others read the bytes.
func (s statements) source(c *rules.ColumnRule) string {
	if s.op == OpEncrypt {
		return alias + "." + quote(c.Column) + "::text"
	}
	return alias + "." + quote(c.Column)
}

// pending is the condition of rows whose shadow the trigger reset.
func (s statements) pending() string { return s.pendingOf(alias + ".") }

// pendingOf is pending with each column prefixed by qualifier ("" in an
// index predicate, which cannot name an alias).
func (s statements) pendingOf(qualifier string) string {
	var or []string
	for _, c := range s.t.Columns {
		or = append(or, fmt.Sprintf("(%s%s IS NULL AND %s%s IS NOT NULL)", qualifier, quote(shadowName(c.Column)), qualifier, quote(c.Column)))
	}
	return "(" + strings.Join(or, " OR ") + ")"
}

// pendingIndex is the partial index of the rows still pending, built
// (concurrently) after the backfill, so that the catch-up passes and the
// final pass under the swap's lock read only those rows instead of
// scanning the table. Dropping the source column in the swap drops it.
func (s statements) pendingIndex() string { return derivedName("dbproxy_pending_", s.t.Name) }

func (s statements) createPendingIndex() string {
	cols := make([]string, len(s.info.keyCols))
	for i, k := range s.info.keyCols {
		cols[i] = quote(k)
	}
	return fmt.Sprintf("CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (%s) WHERE %s", quote(s.pendingIndex()), s.t.qualified(),
		strings.Join(cols, ", "), s.pendingOf(""))
}

func (s statements) dropPendingIndex() string {
	return fmt.Sprintf("DROP INDEX CONCURRENTLY IF EXISTS %s.%s", quote(s.t.schema()), quote(s.pendingIndex()))
}

// selectBatch reads the key (as text) and the source columns of the next
// rows: after a key (withAfter), only pending ones (pending), locking them
// (forUpdate).
func (s statements) selectBatch(withAfter, pending, forUpdate bool, limit int) string {
	cols := make([]string, 0, len(s.info.keyCols)+len(s.t.Columns))
	for _, k := range s.info.keyCols {
		cols = append(cols, alias+"."+quote(k)+"::text")
	}
	for _, c := range s.t.Columns {
		cols = append(cols, s.source(c))
	}
	var where []string
	if pending {
		where = append(where, s.pending())
	}
	if withAfter {
		where = append(where, s.after(1))
	}
	q := fmt.Sprintf("SELECT %s FROM %s AS %s", strings.Join(cols, ", "), s.t.qualified(), alias)
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + s.keyList()
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	if forUpdate {
		q += " FOR UPDATE OF " + alias
	}
	return q
}

// target is the column a run writes.
func (s statements) target(c *rules.ColumnRule) string {
	if s.op == OpReencrypt {
		return c.Column
	}
	return shadowName(c.Column)
}

// update writes one batch: parameters are one text[] per key column, then
// one array per migrated column (bytea[] for ciphertext, text[] for
// decrypt). Reencrypt keeps a value whose element is NULL.
func (s statements) update() string {
	var params, names, sets, match []string
	n := 1
	for i, k := range s.info.keyCols {
		params = append(params, fmt.Sprintf("$%d::text[]", n))
		names = append(names, fmt.Sprintf("k%d", i))
		match = append(match, fmt.Sprintf("%s.%s = v.k%d::%s", alias, quote(k), i, s.info.keyTypes[i]))
		n++
	}
	for i, c := range s.t.Columns {
		arr, val := "bytea[]", fmt.Sprintf("v.c%d", i)
		switch s.op {
		case OpDecrypt:
			arr, val = "text[]", fmt.Sprintf("v.c%d::%s", i, plainSQLType(c.Type))
		case OpReencrypt:
			val = fmt.Sprintf("COALESCE(v.c%d, %s.%s)", i, alias, quote(c.Column))
		}
		params = append(params, fmt.Sprintf("$%d::%s", n, arr))
		names = append(names, fmt.Sprintf("c%d", i))
		sets = append(sets, fmt.Sprintf("%s = %s", quote(s.target(c)), val))
		n++
	}
	return fmt.Sprintf("UPDATE %s AS %s SET %s FROM unnest(%s) AS v(%s) WHERE %s", s.t.qualified(), alias,
		strings.Join(sets, ", "), strings.Join(params, ", "), strings.Join(names, ", "), strings.Join(match, " AND "))
}

// triggerName and functionName are the objects that mark changed rows.
func (s statements) triggerName() string { return "dbproxy_migrate" }

func (s statements) functionName() string {
	return quote(s.t.schema()) + "." + quote(derivedName("dbproxy_migrate_", s.t.Name))
}

// shadowType is the type of the shadow columns.
func (s statements) shadowType(c *rules.ColumnRule) string {
	if s.op == OpDecrypt {
		return plainSQLType(c.Type)
	}
	return "bytea"
}

// createState is the progress table.
func (s statements) createState() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  op text NOT NULL, table_name text NOT NULL, columns text NOT NULL, phase text NOT NULL,
  last_key text, rows_done bigint NOT NULL DEFAULT 0, changed bigint NOT NULL DEFAULT 0,
  started_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (op, table_name))`, s.t.stateName())
}

// setup is the DDL that adds the shadow columns and the trigger; every
// statement is idempotent.
func (s statements) setup() []string {
	var out []string
	var reset []string
	for _, c := range s.t.Columns {
		out = append(out, fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s", s.t.qualified(), quote(shadowName(c.Column)), s.shadowType(c)))
		reset = append(reset, fmt.Sprintf("    IF TG_OP = 'INSERT' OR NEW.%s IS DISTINCT FROM OLD.%s THEN NEW.%s := NULL; END IF;",
			quote(c.Column), quote(c.Column), quote(shadowName(c.Column))))
	}
	out = append(out,
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $dbproxy$
BEGIN
%s
    RETURN NEW;
END $dbproxy$`, s.functionName(), strings.Join(reset, "\n")),
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", quote(s.triggerName()), s.t.qualified()),
		fmt.Sprintf("CREATE TRIGGER %s BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s()",
			quote(s.triggerName()), s.t.qualified(), s.functionName()))
	return out
}

// guardTarget is the schemaguard target of column c.
func (s statements) guardTarget(c *rules.ColumnRule) schemaguard.Target {
	return schemaguard.Target{Schema: s.t.schema(), Table: s.t.Name, Column: c.Column, Mode: c.Mode, Type: c.Type}
}

// swap is the DDL of the swap transaction after the last pending rows are
// converted: the trigger goes, each source column is replaced by its
// shadow (keeping NOT NULL), and encrypt adds the guard NOT VALID (enforced
// for every write from the commit on) while decrypt drops it.
func (s statements) swap() []string {
	out := []string{
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", quote(s.triggerName()), s.t.qualified()),
		fmt.Sprintf("DROP FUNCTION IF EXISTS %s()", s.functionName()),
	}
	for _, c := range s.t.Columns {
		out = append(out,
			fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", s.t.qualified(), quote(c.Column)),
			fmt.Sprintf("ALTER TABLE %s RENAME COLUMN %s TO %s", s.t.qualified(), quote(shadowName(c.Column)), quote(c.Column)))
		if s.info.columns[c.Column].notNull {
			out = append(out, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL", s.t.qualified(), quote(c.Column)))
		}
		g := s.guardTarget(c)
		if s.op == OpEncrypt {
			out = append(out, schemaguard.AddStatements(rules.DialectPostgres, g)[0])
		} else {
			out = append(out, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", s.t.qualified(),
				quote(schemaguard.ConstraintName(rules.DialectPostgres, s.t.Name, c.Column))))
		}
	}
	return out
}

// validate is what runs after the swap committed: VALIDATE of each guard
// (encrypt), which reads the table without blocking writes.
func (s statements) validate() []string {
	if s.op != OpEncrypt {
		return nil
	}
	var out []string
	for _, c := range s.t.Columns {
		out = append(out, schemaguard.AddStatements(rules.DialectPostgres, s.guardTarget(c))[1])
	}
	return out
}

// afterArgs are the keys of the last row done, one parameter each.
func (s statements) afterArgs(lastKey []string) []any {
	args := make([]any, len(lastKey))
	for i, k := range lastKey {
		args[i] = k
	}
	return args
}

// writeBatch runs update with one array per key column and per migrated
// column (text[] for decrypt), of the rows kept.
func (s statements) writeBatch(ctx context.Context, q execQuerier, b *batchRows, outs [][][]byte, keep []bool) error {
	params := make([]any, 0, len(b.keys)+len(outs))
	for _, k := range b.keys {
		params = append(params, pick(k, keep))
	}
	for _, out := range outs {
		out = pick(out, keep)
		if s.op != OpDecrypt {
			params = append(params, out)
			continue
		}
		texts := make([]*string, len(out))
		for j, v := range out {
			if v != nil {
				t := string(v)
				texts[j] = &t
			}
		}
		params = append(params, texts)
	}
	_, err := q.ExecContext(ctx, s.update(), params...)
	return err
}

// readPlain reads PostgreSQL's text output (DateStyle ISO, TimeZone UTC).
func (s statements) readPlain(col *rules.ColumnRule, v []byte) ([]byte, error) {
	return value.AppendCanonicalText(nil, col.Type, v)
}

// writePlain is the PostgreSQL text form of a canonical value.
func (s statements) writePlain(col *rules.ColumnRule, canon []byte) ([]byte, error) {
	return value.AppendText(nil, col.Type, canon)
}
