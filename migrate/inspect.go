package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/dbproxy/dbproxy/value"
)

// columnInfo is one column as the catalog describes it.
type columnInfo struct {
	typ     string // format_type; MySQL: COLUMN_TYPE
	notNull bool
	hasDef  bool
	cipher  bool // a ciphertext type: bytea; VARBINARY or BLOB
	// MySQL: DATA_TYPE, the byte length of a string type, and the column
	// before this one (position kept by the swap; "" when first).
	dataType string
	octets   int64
	after    string
}

// tableInfo is what a run needs to know of its table.
type tableInfo struct {
	oid      int64
	keyCols  []string // the key the run pages through
	keyTypes []string
	keyName  string // the constraint or index
	columns  map[string]columnInfo
}

// inspect reads t's key and columns from the catalog.
func inspect(ctx context.Context, c *sql.Conn, t Table) (*tableInfo, error) {
	info := &tableInfo{columns: map[string]columnInfo{}}
	err := c.QueryRowContext(ctx, `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, t.schema(), t.Name).Scan(&info.oid)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("table %s not found", t)
	}
	if err != nil {
		return nil, wrapf(err, "read table %s", t)
	}
	rows, err := c.QueryContext(ctx, `SELECT attname, format_type(atttypid, atttypmod), attnotnull, atthasdef
FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, info.oid)
	if err != nil {
		return nil, wrapf(err, "read columns of %s", t)
	}
	for rows.Next() {
		var name string
		var ci columnInfo
		if err := rows.Scan(&name, &ci.typ, &ci.notNull, &ci.hasDef); err != nil {
			rows.Close()
			return nil, err
		}
		ci.cipher = baseType(ci.typ) == "bytea"
		info.columns[name] = ci
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrapf(err, "read columns of %s", t)
	}
	if err := info.readKey(ctx, c, t); err != nil {
		return nil, err
	}
	return info, nil
}

// readKey picks the primary key, else the narrowest valid unique index
// without predicate or expressions whose columns are all NOT NULL.
func (info *tableInfo) readKey(ctx context.Context, c *sql.Conn, t Table) error {
	rows, err := c.QueryContext(ctx, `SELECT i.indexrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
ORDER BY i.indisprimary DESC, i.indnatts, i.indexrelid, k.ord`, info.oid)
	if err != nil {
		return wrapf(err, "read keys of %s", t)
	}
	defer rows.Close()
	type key struct {
		name        string
		cols, types []string
		allNotNull  bool
	}
	var keys []*key
	for rows.Next() {
		var idx, col, typ string
		var notNull bool
		if err := rows.Scan(&idx, &col, &typ, &notNull); err != nil {
			return err
		}
		if len(keys) == 0 || keys[len(keys)-1].name != idx {
			keys = append(keys, &key{name: idx, allNotNull: true})
		}
		k := keys[len(keys)-1]
		k.cols, k.types = append(k.cols, col), append(k.types, typ)
		k.allNotNull = k.allNotNull && notNull
	}
	if err := rows.Err(); err != nil {
		return wrapf(err, "read keys of %s", t)
	}
	for _, k := range keys {
		if k.allNotNull {
			info.keyName, info.keyCols, info.keyTypes = k.name, k.cols, k.types
			return nil
		}
	}
	return fmt.Errorf("%s: %w: add one (the migration pages through the table in key order)", t, ErrNoKey)
}

// plainTypes are the PostgreSQL column types (format_type, before any
// typmod) that hold each plaintext type.
var plainTypes = map[value.Type][]string{
	value.TypeText:        {"text", "character varying", "character", "varchar", "\"char\"", "citext", "name"},
	value.TypeSmallint:    {"smallint"},
	value.TypeInt:         {"integer"},
	value.TypeBigint:      {"bigint"},
	value.TypeReal:        {"real"},
	value.TypeDouble:      {"double precision"},
	value.TypeNumeric:     {"numeric"},
	value.TypeBoolean:     {"boolean"},
	value.TypeDate:        {"date"},
	value.TypeTimestamp:   {"timestamp without time zone"},
	value.TypeTimestamptz: {"timestamp with time zone"},
	value.TypeUUID:        {"uuid"},
	value.TypeBytes:       {"bytea"},
	value.TypeJSON:        {"json", "jsonb"},
}

// baseType is a format_type without its typmod: "numeric(10,2)" is
// "numeric", "timestamp(3) with time zone" is "timestamp with time zone".
func baseType(ft string) string {
	for {
		i := strings.IndexByte(ft, '(')
		if i < 0 {
			return ft
		}
		j := strings.IndexByte(ft[i:], ')')
		if j < 0 {
			return ft
		}
		ft = ft[:i] + ft[i+j+1:]
	}
}

// holdsPlain reports whether a PostgreSQL column holds values of t.
func (s statements) holdsPlain(ci columnInfo, t value.Type) bool { return holdsPlain(ci.typ, t) }

// holdsPlain reports whether a column of catalog type ft holds values of
// plaintext type t.
func holdsPlain(ft string, t value.Type) bool {
	b := baseType(ft)
	for _, name := range plainTypes[t] {
		if b == name {
			return true
		}
	}
	return false
}

// plainSQLType is the column type migrate decrypt creates for t.
func plainSQLType(t value.Type) string {
	if t == value.TypeJSON {
		return "json"
	}
	return plainTypes[t][0]
}
