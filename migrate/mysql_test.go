package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"testing"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
	"github.com/dbproxy/dbproxy/value"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// frameCipher wraps a canonical value in a ciphertext header, 24 nonce and
// 16 tag bytes (what the guard checks), without encrypting it: the
// tests of the flow need a value the guard accepts and a way back.
type frameCipher struct{}

func (frameCipher) AppendStore(_ context.Context, dst []byte, col *rules.ColumnRule, canon []byte) ([]byte, error) {
	dst = append(dst, crypto.FormatVersion, byte(crypto.AlgorithmXAESGCM), 0, 0, 0, 1, byte(col.Type))
	dst = append(dst, make([]byte, 24)...)
	return append(append(dst, canon...), make([]byte, 16)...), nil
}

func (frameCipher) AppendDecrypt(_ context.Context, dst []byte, _ *rules.ColumnRule, ct []byte) ([]byte, error) {
	if len(ct) < 47 {
		return nil, fmt.Errorf("short ciphertext")
	}
	return append(dst, ct[31:len(ct)-16]...), nil
}

// TestMySQLResumeAfterAlter: a run killed between the swap's ALTER TABLE
// and dropping the triggers leaves a table every write to fails (the
// triggers name a shadow column that is gone); the next run finds the
// columns swapped, drops the triggers and records done; writes work
// again and the values are the converted ones.
func TestMySQLResumeAfterAlter(t *testing.T) {
	m := testenv.StartMariaDB(t)
	ctx := context.Background()
	cfg, err := driver.ParseDSN(m.DSN())
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE TABLE t (id INT PRIMARY KEY, secret VARCHAR(50) CHARACTER SET utf8mb4 NOT NULL, n BIGINT NULL)",
		"INSERT INTO t VALUES (1, 'one', 10), (2, 'two', NULL), (3, 'three', 30)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tbl := Table{Dialect: rules.DialectMySQL, Schema: m.Database, Name: "t", Columns: []*rules.ColumnRule{
		{Table: "t", Column: "secret", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText},
	}}
	alterOnly(t, ctx, db, tbl)

	_, err = db.ExecContext(ctx, "UPDATE t SET n = 11 WHERE id = 1")
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
