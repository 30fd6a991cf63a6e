package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// inspectMySQL reads t's columns and key from information_schema. Names
// are matched without regard to case, as the proxy matches them, and t
// takes the database's spelling.
func inspectMySQL(ctx context.Context, c *sql.Conn, t *Table) (*tableInfo, error) {
	var name string
	err := c.QueryRowContext(ctx, `SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND LOWER(TABLE_NAME) = LOWER(?)
AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME = ? DESC LIMIT 1`, t.Schema, t.Name, t.Name).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("table %s not found", t)
	}
	if err != nil {
		return nil, wrapf(err, "read table %s", t)
	}
	t.Name = name
	info := &tableInfo{columns: map[string]columnInfo{}}
	rows, err := c.QueryContext(ctx, `SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE = 'NO', COLUMN_DEFAULT, EXTRA,
COALESCE(CHARACTER_OCTET_LENGTH, 0) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, t.Schema, name)
	if err != nil {
		return nil, wrapf(err, "read columns of %s", t)
	}
	defer rows.Close()
	byLower := map[string]string{}
	prev := ""
	for rows.Next() {
		var col, extra string
		var def sql.NullString
		var ci columnInfo
		if err := rows.Scan(&col, &ci.typ, &ci.dataType, &ci.notNull, &def, &extra, &ci.octets); err != nil {
			return nil, wrapf(err, "read columns of %s", t)
		}
		ci.dataType = strings.ToLower(ci.dataType)
		// MariaDB reports an implicit DEFAULT NULL as the string NULL.
		ci.hasDef = (def.Valid && !strings.EqualFold(def.String, "NULL")) || strings.Contains(strings.ToUpper(extra), "GENERATED")
		ci.cipher = myCipherTypes[ci.dataType]
		ci.after, prev = prev, col
		info.columns[col] = ci
		byLower[strings.ToLower(col)] = col
	}
	if err := rows.Err(); err != nil {
		return nil, wrapf(err, "read columns of %s", t)
	}
	// The rules' column names take the database's spelling.
	for i, rc := range t.Columns {
		if real, ok := byLower[strings.ToLower(rc.Column)]; ok && real != rc.Column {
			cp := *rc
			cp.Column = real
			t.Columns[i] = &cp
		}
	}
	return info, info.readMySQLKey(ctx, c, *t)
}

// readMySQLKey picks the primary key, else the narrowest unique index
// over whole NOT NULL columns.
func (info *tableInfo) readMySQLKey(ctx context.Context, c *sql.Conn, t Table) error {
	rows, err := c.QueryContext(ctx, `SELECT INDEX_NAME, COLUMN_NAME, SUB_PART IS NOT NULL FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0
ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX`, t.Schema, t.Name)
	if err != nil {
		return wrapf(err, "read keys of %s", t)
	}
	defer rows.Close()
	type key struct {
		name string
		cols []string
		ok   bool
	}
	var keys []*key
	for rows.Next() {
		var idx, col string
		var prefix bool
		if err := rows.Scan(&idx, &col, &prefix); err != nil {
			return wrapf(err, "read keys of %s", t)
		}
		if len(keys) == 0 || keys[len(keys)-1].name != idx {
			keys = append(keys, &key{name: idx, ok: true})
		}
		k := keys[len(keys)-1]
		k.cols = append(k.cols, col)
		k.ok = k.ok && !prefix && info.columns[col].notNull
	}
	if err := rows.Err(); err != nil {
		return wrapf(err, "read keys of %s", t)
	}
	var best *key
	for _, k := range keys {
		if k.ok && (best == nil || (best.name != "PRIMARY" && len(k.cols) < len(best.cols))) {
			best = k
		}
	}
	if best == nil {
		return fmt.Errorf("%s: %w: add one (the migration pages through the table in key order)", t, ErrNoKey)
	}
	info.keyName, info.keyCols = best.name, best.cols
	for _, col := range best.cols {
		info.keyTypes = append(info.keyTypes, info.columns[col].typ)
	}
	return nil
}
