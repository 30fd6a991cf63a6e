package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// mariaExtendedMetadata is MARIADB_CLIENT_EXTENDED_METADATA in the
// extended capability bytes.
const mariaExtendedMetadata = 1 << 3

// colDef is a column definition read with MariaDB's extended metadata.
type colDef struct {
	raw      []byte
	name     string
	ext      []byte // the extended metadata field's content
	charset  uint16
	typ      byte
	fixedEnd int
}

func parseColDef(t testing.TB, p []byte) colDef {
	t.Helper()
	d := colDef{raw: p}
	pos := 0
	for i := range 7 { // catalog, schema, table, org_table, name, org_name, extended metadata
		v, _, n, err := gomysql.LengthEncodedString(p[pos:])
		if err != nil {
			t.Fatalf("column definition %x: %v", p, err)
		}
		switch i {
		case 4:
			d.name = string(v)
		case 6:
			d.ext = bytes.Clone(v)
		}
		pos += n
	}
	if pos+13 > len(p) || p[pos] != 0x0c {
		t.Fatalf("column %s: fixed fields not where the extended metadata ends: %x", d.name, p)
	}
	d.charset = binary.LittleEndian.Uint16(p[pos+1:])
	d.typ = p[pos+7]
	d.fixedEnd = pos + 13
	return d
}

// queryDefs runs a text query and returns its column definitions and the
// columns of its rows.
func (r *rawConn) queryDefs(t testing.TB, sql string) ([]colDef, [][]string) {
	t.Helper()
	r.command(t, append([]byte{gomysql.COM_QUERY}, sql...))
	first := r.read(t)
	if first[0] == 0xff {
		t.Fatalf("%s: %s", sql, first[9:])
	}
	n, _, _ := gomysql.LengthEncodedInt(first)
	defs := make([]colDef, n)
	for i := range defs {
		defs[i] = parseColDef(t, r.read(t))
	}
	if !r.deprecateEOF() {
		r.read(t)
	}
	var rows [][]string
	for {
		p := r.read(t)
		if p[0] == 0xff {
			t.Fatalf("rows: %s", p[9:])
		}
		if p[0] == 0xfe && len(p) < 0xffffff {
			return defs, rows
		}
		var row []string
		for pos := 0; pos < len(p); {
			v, isNull, n, err := gomysql.LengthEncodedString(p[pos:])
			if err != nil {
				t.Fatal(err)
			}
			if isNull {
				row = append(row, "NULL")
			} else {
				row = append(row, string(v))
			}
			pos += n
		}
		rows = append(rows, row)
	}
}

// TestMySQLExtendedMetadata: MariaDB's extended column metadata (format
// "json" for JSON columns, which mysql2 and MariaDB's connectors use to
// return JSON values as JSON) reaches a client that asks for it, byte for
// byte as from the server for plaintext columns; an encrypted column's
// rewritten definition carries the extended metadata of its plaintext type
// (format json for json, none for an int) and stays well formed, in text
// results and in prepared statements' definitions.
func TestMySQLExtendedMetadata(t *testing.T) {
	e := startMyEncProxy(t, []string{
		"CREATE TABLE xm (id INT PRIMARY KEY, doc JSON, edoc VARBINARY(600), eint VARBINARY(100), note VARCHAR(10))",
	}, []rules.Spec{
		{Table: "xm", Column: "edoc", Key: "edoc", Mode: rules.ModeRandomized, Type: value.TypeJSON},
		{Table: "xm", Column: "eint", Key: "eint", Mode: rules.ModeDeterministic, Type: value.TypeInt},
	})
	ctx := context.Background()
	through := openDB(t, e.proxy.config(t))
	if _, err := through.ExecContext(ctx, `INSERT INTO xm (id, doc, edoc, eint, note) VALUES (1, '{"a": 1}', '{"b": [1, 2]}', 42, 'x')`); err != nil {
		t.Fatal(err)
	}
	e.checkAtRest(t, []string{`"b"`})
	caps := uint32(rawDefaultCaps &^ gomysql.CLIENT_LONG_PASSWORD)
	const q = `SELECT id, doc, edoc, eint, note FROM xm`

	direct := rawLogin(t, e.db.Addr(), e.db.User, e.db.Password, e.db.Database, caps, mariaExtendedMetadata, true)
	directDefs, _ := direct.queryDefs(t, q)
	jsonFormat := []byte{1, 4, 'j', 's', 'o', 'n'}
	if !bytes.Equal(directDefs[1].ext, jsonFormat) {
		t.Fatalf("the server sends extended metadata %x for a JSON column; the test expects format json", directDefs[1].ext)
	}

	r := rawLogin(t, e.proxy.Addr, e.db.User, e.db.Password, e.db.Database, caps, mariaExtendedMetadata, true)
	defs, rows := r.queryDefs(t, q)
	for _, i := range []int{0, 1, 4} {
		if !bytes.Equal(defs[i].raw, directDefs[i].raw) {
			t.Errorf("plaintext column %s: definition %x through the proxy, %x from the server", defs[i].name, defs[i].raw, directDefs[i].raw)
		}
	}
	if d := defs[2]; !bytes.Equal(d.ext, jsonFormat) || d.typ != gomysql.MYSQL_TYPE_VAR_STRING || d.charset != 45 {
		t.Errorf("encrypted json column: extended metadata %x type %d charset %d; want format json, VAR_STRING, utf8mb4", d.ext, d.typ, d.charset)
	}
	if d := defs[3]; len(d.ext) != 0 || d.typ != gomysql.MYSQL_TYPE_LONG {
		t.Errorf("encrypted int column: extended metadata %x type %d; want none, LONG", d.ext, d.typ)
	}
	if len(rows) != 1 || rows[0][2] != `{"b": [1, 2]}` || rows[0][3] != "42" || rows[0][1] != `{"a": 1}` {
		t.Errorf("rows %q", rows)
	}

	// Prepared: the definitions of COM_STMT_PREPARE's answer.
	r.command(t, append([]byte{gomysql.COM_STMT_PREPARE}, "SELECT edoc, eint, doc FROM xm WHERE id = ?"...))
	ok := r.read(t)
	if ok[0] != 0x00 {
		t.Fatalf("prepare: %x", ok)
	}
	cols := int(binary.LittleEndian.Uint16(ok[5:]))
	params := int(binary.LittleEndian.Uint16(ok[7:]))
	for range params {
		parseColDef(t, r.read(t))
	}
	if params > 0 && !r.deprecateEOF() {
		r.read(t)
	}
	var prep []colDef
	for range cols {
		prep = append(prep, parseColDef(t, r.read(t)))
	}
	if !r.deprecateEOF() {
		r.read(t)
	}
	if len(prep) != 3 || !bytes.Equal(prep[0].ext, jsonFormat) || prep[0].typ != gomysql.MYSQL_TYPE_VAR_STRING ||
		len(prep[1].ext) != 0 || prep[1].typ != gomysql.MYSQL_TYPE_LONG || !bytes.Equal(prep[2].ext, jsonFormat) {
		t.Errorf("prepared definitions: %+v", prep)
	}
	if got := r.query(t, `SELECT 'in step'`); len(got) != 1 || got[0] != "in step" {
		t.Fatalf("session out of step: %q", got)
	}
}
