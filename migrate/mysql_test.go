package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"testing"

	_ "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
	"github.com/dbproxy/dbproxy/value"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// frameCipher wraps a canonical value in a ciphertext header (the
// algorithm of the column's mode), 24 and 16 more bytes (what the guard
// checks), without encrypting it: the
// tests of the flow need a value the guard accepts and a way back.
type frameCipher struct{}

func (frameCipher) AppendStore(_ context.Context, dst []byte, col *rules.ColumnRule, canon []byte) ([]byte, error) {
	alg := crypto.AlgorithmXAESGCM
	if col.Mode == rules.ModeDeterministic {
		alg = crypto.AlgorithmAESSIV
	}
	dst = append(dst, crypto.FormatVersion, byte(alg), 0, 0, 0, 1, byte(col.Type))
	dst = append(dst, make([]byte, 24)...)
	return append(append(dst, canon...), make([]byte, 16)...), nil
}

func (frameCipher) AppendDecrypt(_ context.Context, dst []byte, _ *rules.ColumnRule, ct []byte) ([]byte, error) {
	if len(ct) < 47 {
		return nil, fmt.Errorf("short ciphertext")
	}
	return append(dst, ct[31:len(ct)-16]...), nil
}

// mariaDBWith returns a fresh MariaDB database after running ddl in it.
func mariaDBWith(t *testing.T, ddl ...string) (*testenv.MariaDB, *sql.DB) {
	m := testenv.StartMariaDB(t)
	db, err := sql.Open("mysql", m.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	for _, q := range ddl {
		if _, err := db.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	return m, db
}

// TestMySQLResumeAfterAlter: a run killed between the swap's ALTER TABLE
// and dropping the triggers leaves a table every write to fails (the
// triggers name a shadow column that is gone); the next run finds the
// columns swapped, drops the triggers and records done; writes work
// again and the values are the converted ones.
func TestMySQLResumeAfterAlter(t *testing.T) {
	ctx := context.Background()
	m, db := mariaDBWith(t,
		"CREATE TABLE t (id INT PRIMARY KEY, secret VARCHAR(50) CHARACTER SET utf8mb4 NOT NULL, n BIGINT NULL)",
		"INSERT INTO t VALUES (1, 'one', 10), (2, 'two', NULL), (3, 'three', 30)",
	)
	tbl := Table{Dialect: rules.DialectMySQL, Schema: m.Database, Name: "t", Columns: []*rules.ColumnRule{
		{Table: "t", Column: "secret", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText},
	}}
	alterOnly(t, ctx, db, tbl)

	_, err := db.ExecContext(ctx, "UPDATE t SET n = 11 WHERE id = 1")
	if err == nil {
		t.Fatal("an update between the ALTER and dropping the triggers succeeded")
	}
	t.Logf("update after the ALTER: %v", err)
	if _, err := db.ExecContext(ctx, "INSERT INTO t (id, secret) VALUES (4, 'plain')"); err == nil {
		t.Fatal("an insert between the ALTER and dropping the triggers succeeded")
	}

	res, err := Encrypt(ctx, db, frameCipher{}, tbl, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var phase string
	var triggers int
	if err := db.QueryRowContext(ctx, "SELECT phase FROM dbproxy_migrations WHERE op = 'encrypt'").Scan(&phase); err != nil || phase != phaseDone {
		t.Fatalf("phase %q (%v), result %+v", phase, err, res)
	}
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()").Scan(&triggers); err != nil || triggers != 0 {
		t.Fatalf("%d triggers left (%v)", triggers, err)
	}
	if _, err := db.ExecContext(ctx, "UPDATE t SET n = 11 WHERE id = 1"); err != nil {
		t.Fatalf("update after the resumed run: %v", err)
	}
	problems, err := schemaguard.Check(ctx, db, rules.DialectMySQL, []schemaguard.Target{
		{Database: m.Database, Table: "t", Column: "secret", Mode: rules.ModeRandomized, Type: value.TypeText}})
	if err != nil || len(problems) > 0 {
		t.Fatalf("guard after the resumed run: %v %v", problems, err)
	}
	var cols string
	if err := db.QueryRowContext(ctx, `SELECT GROUP_CONCAT(CONCAT(COLUMN_NAME, ' ', COLUMN_TYPE, ' ', IS_NULLABLE) ORDER BY ORDINAL_POSITION)
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't'`).Scan(&cols); err != nil ||
		cols != "id int(11) NO,secret varbinary(247) NO,n bigint(20) YES" {
		t.Fatalf("columns after the swap: %q (%v)", cols, err)
	}
	want := map[int]string{1: "one", 2: "two", 3: "three"}
	rows, err := db.QueryContext(ctx, "SELECT id, secret FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		var ct []byte
		if err := rows.Scan(&id, &ct); err != nil {
			t.Fatal(err)
		}
		pt, err := frameCipher{}.AppendDecrypt(ctx, nil, nil, ct)
		if err != nil || !bytes.Equal(pt, []byte(want[id])) {
			t.Fatalf("row %d: %q %v", id, pt, err)
		}
	}
}

// alterOnly runs an encrypt of tbl up to and including the swap's ALTER
// TABLE, and stops there as a run killed at that point would.
func alterOnly(t *testing.T, ctx context.Context, db *sql.DB, tbl Table) {
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range mySession {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	info, err := inspectMySQL(ctx, conn, &tbl)
	if err != nil {
		t.Fatal(err)
	}
	s := myStatements{op: OpEncrypt, t: tbl, info: info}
	r := &run{op: OpEncrypt, t: tbl, dia: s, info: info, cipher: frameCipher{}, conn: conn}
	if err := r.mySetup(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := r.pass(ctx, false); err != nil {
		t.Fatal(err)
	}
	r.st.phase, r.st.lastKey = phaseCatchUp, nil
	if err := saveState(ctx, conn, r.op, r.t, r.st); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, s.swap(map[string]bool{})); err != nil {
		t.Fatal(err)
	}
}

// TestMySQLCompositeKey pages through a table by a composite primary key
// in batches smaller than its groups, then decrypts it back: every row is
// converted once and comes back as it was.
func TestMySQLCompositeKey(t *testing.T) {
	ctx := context.Background()
	m, db := mariaDBWith(t,
		"CREATE TABLE c (g VARCHAR(10) NOT NULL, n INT NOT NULL, v BIGINT NULL, PRIMARY KEY (g, n))",
		"INSERT INTO c VALUES ('a', 1, 10), ('a', 2, NULL), ('a', 3, -30), ('b', 1, 40), ('b', 2, 50), ('c', 1, 60), ('c', 2, 70)",
	)
	tbl := Table{Dialect: rules.DialectMySQL, Schema: m.Database, Name: "C", Columns: []*rules.ColumnRule{
		{Table: "c", Column: "V", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeBigint},
	}}
	res, err := Encrypt(ctx, db, frameCipher{}, tbl, Options{Batch: 2})
	if err != nil || res.Changed != 6 {
		t.Fatalf("encrypt: %+v %v", res, err)
	}
	var plain int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM c WHERE v IS NOT NULL AND LENGTH(v) < 47").Scan(&plain); err != nil || plain != 0 {
		t.Fatalf("%d values not converted (%v)", plain, err)
	}
	if _, err := Decrypt(ctx, db, frameCipher{}, tbl, Options{Batch: 2}); err != nil {
		t.Fatal(err)
	}
	var sum, nulls int
	if err := db.QueryRowContext(ctx, "SELECT SUM(v), SUM(v IS NULL) FROM c").Scan(&sum, &nulls); err != nil || sum != 200 || nulls != 1 {
		t.Fatalf("after decrypt: sum %d, %d NULLs (%v)", sum, nulls, err)
	}
}

// TestMySQLResumeSetup: a run killed during setup (state row and a shadow
// column there, no triggers yet) is finished by the next run.
func TestMySQLResumeSetup(t *testing.T) {
	ctx := context.Background()
	m, db := mariaDBWith(t,
		"CREATE TABLE s (id INT PRIMARY KEY, a TEXT, b DATE)",
		"INSERT INTO s VALUES (1, 'x', '2024-02-29'), (2, NULL, NULL), (3, 'z', '1999-12-31')",
	)
	tbl := Table{Dialect: rules.DialectMySQL, Schema: m.Database, Name: "s", Columns: []*rules.ColumnRule{
		{Table: "s", Column: "a", Key: "ka", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "s", Column: "b", Key: "kb", Mode: rules.ModeRandomized, Type: value.TypeDate},
	}}
	s := myStatements{op: OpEncrypt, t: tbl, info: &tableInfo{columns: map[string]columnInfo{"a": {octets: 65535}}}}
	for _, q := range []string{s.createState(), s.addShadow(tbl.Columns[0])} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := startState(ctx, db, OpEncrypt, tbl, phaseSetup); err != nil {
		t.Fatal(err)
	}
	if _, err := Encrypt(ctx, db, frameCipher{}, tbl, Options{}); err != nil {
		t.Fatal(err)
	}
	var b []byte
	if err := db.QueryRowContext(ctx, "SELECT b FROM s WHERE id = 1").Scan(&b); err != nil {
		t.Fatal(err)
	}
	want, err := value.AppendCanonicalMySQLText(nil, value.TypeDate, []byte("2024-02-29"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := (frameCipher{}).AppendDecrypt(ctx, nil, nil, b); err != nil || !bytes.Equal(pt, want) {
		t.Fatalf("b of row 1: %q %v", pt, err)
	}
}
