package mycrypt_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
	"github.com/dbproxy/dbproxy/value"
)

// The exchange of bench/mysql-enc-point-select.lua (select workload): one
// COM_STMT_PREPARE of `SELECT id, name, email, ssn, salary FROM t WHERE
// email = ?`, then COM_STMT_EXECUTE with a VARCHAR parameter, answered by
// five column definitions, one binary row and the terminating OK, on a
// table whose email (deterministic text), ssn (randomized text) and salary
// (randomized bigint) are encrypted, and on an identical plaintext table.

const benchDB = "sbtest"

// pointSelect is one session's view of the workload.
type pointSelect struct {
	hooks  *mysql.SessionHooks
	enc    bool
	stmtID uint32
	defs   [][]byte // server column definitions of an execute response
	row    []byte   // the server's binary row
	ok     []byte   // the terminating OK (CLIENT_DEPRECATE_EOF)
	x      mysql.Exchange
	w      mysql.Writer
}

func benchManager(tb testing.TB) *keys.Manager {
	tb.Helper()
	return testkeys.Manager(tb,
		keys.Spec{Name: "det", Algorithm: rules.ModeDeterministic.Algorithm()},
		keys.Spec{Name: "rnd", Algorithm: rules.ModeRandomized.Algorithm()},
		keys.Spec{Name: "rnd2", Algorithm: rules.ModeRandomized.Algorithm()})
}

func benchRules(tb testing.TB) *rules.Set {
	tb.Helper()
	set, err := rules.New(rules.DialectMySQL, []rules.Spec{
		{Table: "users_enc", Column: "email", Key: "det", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "users_enc", Column: "ssn", Key: "rnd", Mode: rules.ModeRandomized, Type: value.TypeText},
		{Table: "users_enc", Column: "salary", Key: "rnd2", Mode: rules.ModeRandomized, Type: value.TypeBigint},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

func lenenc(dst, s []byte) []byte {
	dst = gomysql.AppendLengthEncodedInteger(dst, uint64(len(s)))
	return append(dst, s...)
}

// colDef is a ColumnDefinition41 payload.
func colDef(table, name string, typ byte, charset uint16, length uint32, flags uint16) []byte {
	var b []byte
	for _, f := range []string{"def", benchDB, table, table, name, name} {
		b = lenenc(b, []byte(f))
	}
	b = append(b, 0x0c)
	b = binary.LittleEndian.AppendUint16(b, charset)
	b = binary.LittleEndian.AppendUint32(b, length)
	b = append(b, typ)
	b = binary.LittleEndian.AppendUint16(b, flags)
	return append(b, 0, 0, 0)
}

// newPointSelect prepares the statement on a new session of ic and builds
// the server's execute response for the row with the given email.
func newPointSelect(tb testing.TB, ic *mycrypt.Interceptor, enc *rules.Encryptor, set *rules.Set, enc_ bool, email string) *pointSelect {
	tb.Helper()
	ctx := context.Background()
	h := icSession(tb, ic, mysql.SessionInfo{Database: benchDB, Charset: 45, ServerVersion: mariaDB})
	table := "users_plain"
	if enc_ {
		table = "users_enc"
	}
	ps := &pointSelect{hooks: h, enc: enc_, stmtID: 7}
	sql := "SELECT id, name, email, ssn, salary FROM " + table + " WHERE email = ?"
	x := &mysql.Exchange{Command: gomysql.COM_STMT_PREPARE}
	var w mysql.Writer
	if err := h.Command(x, append([]byte{gomysql.COM_STMT_PREPARE}, sql...), &w); err != nil {
		tb.Fatal(err)
	}
	nparams := 1
	if enc_ {
		nparams = mysqlsql.MatchSlots
	}
	ps.defs = make([][]byte, 5)
	ps.defs[0] = colDef(table, "id", gomysql.MYSQL_TYPE_LONGLONG, 63, 20, gomysql.NOT_NULL_FLAG|gomysql.PRI_KEY_FLAG|gomysql.AUTO_INCREMENT_FLAG|gomysql.BINARY_FLAG)
	ps.defs[1] = colDef(table, "name", gomysql.MYSQL_TYPE_VAR_STRING, 45, 256, 0)
	if enc_ {
		ps.defs[2] = colDef(table, "email", gomysql.MYSQL_TYPE_VAR_STRING, 63, 512, gomysql.PART_KEY_FLAG|gomysql.BINARY_FLAG)
		ps.defs[3] = colDef(table, "ssn", gomysql.MYSQL_TYPE_VAR_STRING, 63, 512, gomysql.BINARY_FLAG)
		ps.defs[4] = colDef(table, "salary", gomysql.MYSQL_TYPE_VAR_STRING, 63, 256, gomysql.BINARY_FLAG)
	} else {
		ps.defs[2] = colDef(table, "email", gomysql.MYSQL_TYPE_VAR_STRING, 45, 256, gomysql.PART_KEY_FLAG)
		ps.defs[3] = colDef(table, "ssn", gomysql.MYSQL_TYPE_VAR_STRING, 45, 256, 0)
		ps.defs[4] = colDef(table, "salary", gomysql.MYSQL_TYPE_LONGLONG, 63, 20, gomysql.BINARY_FLAG)
	}
	// PREPARE response: PrepareOK, parameter definitions, column definitions.
	pok := []byte{0}
	pok = binary.LittleEndian.AppendUint32(pok, ps.stmtID)
	pok = binary.LittleEndian.AppendUint16(pok, 5)
	pok = binary.LittleEndian.AppendUint16(pok, uint16(nparams))
	pok = append(pok, 0, 0, 0)
	x.Params, x.Columns = nparams, 5
	if err := h.Result(x, mysql.KindPrepareOK, pok, &w); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < nparams; i++ {
		x.Column = i
		if err := h.Result(x, mysql.KindParamDef, colDef("", "?", gomysql.MYSQL_TYPE_VAR_STRING, 63, 0, 0), &w); err != nil {
			tb.Fatal(err)
		}
	}
	for i, d := range ps.defs {
		x.Column = i
		if err := h.Result(x, mysql.KindColumnDef, d, &w); err != nil {
			tb.Fatal(err)
		}
	}
	// The row: id 42, name, email, ssn, salary 123456.
	row := []byte{0, 0}
	row = binary.LittleEndian.AppendUint64(row, 42)
	row = lenenc(row, []byte("user name"))
	if enc_ {
		encrypt := func(col string, canon []byte) []byte {
			ct, err := enc.EncryptForStore(ctx, set.Column(benchDB, "", "users_enc", col), canon)
			if err != nil {
				tb.Fatal(err)
			}
			return ct
		}
		row = lenenc(row, encrypt("email", []byte(email)))
		row = lenenc(row, encrypt("ssn", []byte("999-45-6789")))
		row = lenenc(row, encrypt("salary", binary.BigEndian.AppendUint64(nil, 123456)))
	} else {
		row = lenenc(row, []byte(email))
		row = lenenc(row, []byte("999-45-6789"))
		row = binary.LittleEndian.AppendUint64(row, 123456)
	}
	ps.row = row
	ps.ok = []byte{0xfe, 0, 0, 0x22, 0, 0, 0}
	return ps
}

// executePacket is the client's COM_STMT_EXECUTE with one VARCHAR
// parameter (types bound on the first execution only, as libmysqlclient
// does when the bind did not change).
func executePacket(stmtID uint32, email string, bound bool) []byte {
	p := []byte{gomysql.COM_STMT_EXECUTE}
	p = binary.LittleEndian.AppendUint32(p, stmtID)
	p = append(p, 0)                           // flags
	p = binary.LittleEndian.AppendUint32(p, 1) // iterations
	p = append(p, 0)                           // NULL bitmap
	if bound {
		p = append(p, 1, gomysql.MYSQL_TYPE_VAR_STRING, 0)
	} else {
		p = append(p, 0)
	}
	return lenenc(p, []byte(email))
}

// framePacket frames a payload shorter than 16 MiB as packet seq.
func framePacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// writerBytes returns what a Writer collected.
func writerBytes(w *mysql.Writer) []byte { return w.Bytes() }

// resetWriter empties w keeping its buffer, as the relay does between
// hooks.
func resetWriter(w *mysql.Writer) { w.Reset() }

// run drives one execution; out, if set, receives the forwarded packets.
func (ps *pointSelect) run(tb testing.TB, exec []byte, out *[]byte) {
	x := &ps.x
	*x = mysql.Exchange{Command: gomysql.COM_STMT_EXECUTE, StmtID: ps.stmtID, DeprecateEOF: true}
	w := &ps.w
	resetWriter(w)
	if err := ps.hooks.Command(x, exec, w); err != nil {
		tb.Fatal(err)
	}
	if out != nil {
		*out = append((*out)[:0], writerBytes(w)...)
	}
	if !x.Watch {
		return // the relay copies the response through
	}
	x.Columns = len(ps.defs)
	for i, d := range ps.defs {
		x.Column = i
		resetWriter(w)
		if err := ps.hooks.Result(x, mysql.KindColumnDef, d, w); err != nil {
			tb.Fatal(err)
		}
		if out != nil {
			*out = append(*out, writerBytes(w)...)
		}
	}
	resetWriter(w)
	if err := ps.hooks.Result(x, mysql.KindBinaryRow, ps.row, w); err != nil {
		tb.Fatal(err)
	}
	if out != nil {
		*out = append(*out, writerBytes(w)...)
	}
	resetWriter(w)
	x.Last = true // as the relay marks the response's last packet
	if err := ps.hooks.Result(x, mysql.KindOK, ps.ok, w); err != nil {
		tb.Fatal(err)
	}
}

func benchSetup(tb testing.TB) (*mycrypt.Interceptor, *rules.Encryptor, *rules.Set) {
	mgr := benchManager(tb)
	set := benchRules(tb)
	enc := rules.NewEncryptor(mgr)
	ic, err := mycrypt.New(mycrypt.Options{Rules: set, Encryptor: enc})
	if err != nil {
		tb.Fatal(err)
	}
	return ic, enc, set
}

// TestPointSelectExchange checks what the benchmarked exchange forwards:
// the execute carries MatchSlots ciphertexts of the email, and the row
// comes back as the plaintext table's row would.
func TestPointSelectExchange(t *testing.T) {
	ic, enc, set := benchSetup(t)
	e := newPointSelect(t, ic, enc, set, true, "1234")
	p := newPointSelect(t, ic, enc, set, false, "1234")
	for i, bound := range []bool{true, false, false} {
		var eo, po []byte
		e.run(t, executePacket(e.stmtID, "1234", bound), &eo)
		p.run(t, executePacket(p.stmtID, "1234", bound), &po)
		// The plaintext statement goes through unchanged.
		if want := framePacket(0, executePacket(p.stmtID, "1234", bound)); !bytes.Equal(po, want) {
			t.Fatalf("execute %d: plaintext execute rewritten: %x", i, po)
		}
		// The encrypted one: header, a 1-byte NULL bitmap, bound types, and
		// MatchSlots blobs, each the ciphertext of "1234".
		cmd := eo[4 : 4+(int(eo[0])|int(eo[1])<<8|int(eo[2])<<16)]
		ps := 10 + 1 + 1
		if cmd[11] != 1 {
			t.Fatalf("execute %d: types not bound upstream", i)
		}
		for j := 0; j < mysqlsql.MatchSlots; j++ {
			if cmd[ps+2*j] != gomysql.MYSQL_TYPE_BLOB {
				t.Fatalf("execute %d: slot %d has type %d", i, j, cmd[ps+2*j])
			}
		}
		q := ps + 2*mysqlsql.MatchSlots
		col := set.Column(benchDB, "", "users_enc", "email")
		for j := 0; j < mysqlsql.MatchSlots; j++ {
			n := int(cmd[q])
			pt, err := enc.Decrypt(context.Background(), col, cmd[q+1:q+1+n])
			if err != nil || string(pt) != "1234" {
				t.Fatalf("execute %d: slot %d: %q, %v", i, j, pt, err)
			}
			q += 1 + n
		}
		if q != len(cmd) {
			t.Fatalf("execute %d: %d trailing bytes", i, len(cmd)-q)
		}
		// The response: column definitions as the plaintext table's (but for
		// the length, charset and flags the proxy announces), the row
		// exactly as the plaintext table's.
		wantRow := p.row
		if !bytes.HasSuffix(eo, wantRow) {
			t.Fatalf("execute %d: decrypted row\n%x\nwant suffix\n%x", i, eo, wantRow)
		}
	}
}

// onBothTables runs bench as the sub-benchmarks plain and encrypted, on
// the plaintext and the encrypted table, each with a new interceptor.
func onBothTables(b *testing.B, bench func(b *testing.B, ic *mycrypt.Interceptor, enc *rules.Encryptor, set *rules.Set, encrypted bool)) {
	for _, tc := range []struct {
		name string
		enc  bool
	}{{"plain", false}, {"encrypted", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ic, enc, set := benchSetup(b)
			bench(b, ic, enc, set, tc.enc)
		})
	}
}

func BenchmarkPointSelect(b *testing.B) {
	onBothTables(b, func(b *testing.B, ic *mycrypt.Interceptor, enc *rules.Encryptor, set *rules.Set, encrypted bool) {
		ps := newPointSelect(b, ic, enc, set, encrypted, "5678")
		ps.run(b, executePacket(ps.stmtID, "5678", true), nil)
		exec := executePacket(ps.stmtID, "5678", false)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			ps.run(b, exec, nil)
		}
	})
}

// BenchmarkPointSelectParallel runs sessions concurrently, as the 16
// sysbench threads do.
func BenchmarkPointSelectParallel(b *testing.B) {
	onBothTables(b, func(b *testing.B, ic *mycrypt.Interceptor, enc *rules.Encryptor, set *rules.Set, encrypted bool) {
		b.ReportAllocs()
		b.SetParallelism(8)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			email := strconv.FormatInt(n.Add(1), 10)
			ps := newPointSelect(b, ic, enc, set, encrypted, email)
			ps.run(b, executePacket(ps.stmtID, email, true), nil)
			exec := executePacket(ps.stmtID, email, false)
			for pb.Next() {
				ps.run(b, exec, nil)
			}
		})
	})
}

// The insert workload: `INSERT INTO t (name, email, ssn, salary) VALUES
// (?, ?, ?, ?)` with VARCHAR, VARCHAR, VARCHAR and BIGINT parameters.

func prepareInsert(tb testing.TB, ic *mycrypt.Interceptor) *mysql.SessionHooks {
	tb.Helper()
	h := icSession(tb, ic, mysql.SessionInfo{Database: benchDB, Charset: 45, ServerVersion: mariaDB})
	x := &mysql.Exchange{Command: gomysql.COM_STMT_PREPARE}
	var w mysql.Writer
	sql := "INSERT INTO users_enc (name, email, ssn, salary) VALUES (?, ?, ?, ?)"
	if err := h.Command(x, append([]byte{gomysql.COM_STMT_PREPARE}, sql...), &w); err != nil {
		tb.Fatal(err)
	}
	pok := []byte{0}
	pok = binary.LittleEndian.AppendUint32(pok, 9)
	pok = binary.LittleEndian.AppendUint16(pok, 0)
	pok = binary.LittleEndian.AppendUint16(pok, 4)
	pok = append(pok, 0, 0, 0)
	x.Params = 4
	if err := h.Result(x, mysql.KindPrepareOK, pok, &w); err != nil {
		tb.Fatal(err)
	}
	return h
}

func insertPacket(seq int64, bound bool) []byte {
	p := []byte{gomysql.COM_STMT_EXECUTE}
	p = binary.LittleEndian.AppendUint32(p, 9)
	p = append(p, 0)
	p = binary.LittleEndian.AppendUint32(p, 1)
	p = append(p, 0)
	if bound {
		p = append(p, 1, gomysql.MYSQL_TYPE_VAR_STRING, 0, gomysql.MYSQL_TYPE_VAR_STRING, 0,
			gomysql.MYSQL_TYPE_VAR_STRING, 0, gomysql.MYSQL_TYPE_LONGLONG, 0)
	} else {
		p = append(p, 0)
	}
	p = lenenc(p, []byte("new user"))
	p = lenenc(p, []byte("t1-"+strconv.FormatInt(seq, 10)))
	p = lenenc(p, []byte("999-45-6789"))
	return binary.LittleEndian.AppendUint64(p, uint64(seq))
}

// TestInsertExecute checks the forwarded insert: the plain parameter as
// sent, the three others as blobs decrypting to the values.
func TestInsertExecute(t *testing.T) {
	ic, enc, set := benchSetup(t)
	h := prepareInsert(t, ic)
	for i, bound := range []bool{true, false, true} {
		var w mysql.Writer
		x := &mysql.Exchange{Command: gomysql.COM_STMT_EXECUTE, StmtID: 9}
		if err := h.Command(x, insertPacket(int64(i+5), bound), &w); err != nil {
			t.Fatal(err)
		}
		out := writerBytes(&w)
		cmd := out[4:]
		if len(cmd) != int(out[0])|int(out[1])<<8|int(out[2])<<16 || cmd[10] != 0 || cmd[11] != 1 {
			t.Fatalf("execute %d: bad packet %x", i, out)
		}
		wantTypes := []byte{gomysql.MYSQL_TYPE_VAR_STRING, 0, gomysql.MYSQL_TYPE_BLOB, 0, gomysql.MYSQL_TYPE_BLOB, 0, gomysql.MYSQL_TYPE_BLOB, 0}
		if !bytes.Equal(cmd[12:20], wantTypes) {
			t.Fatalf("execute %d: types %x", i, cmd[12:20])
		}
		p := 20
		next := func() []byte {
			n := int(cmd[p])
			v := cmd[p+1 : p+1+n]
			p += 1 + n
			return v
		}
		if v := next(); string(v) != "new user" {
			t.Fatalf("execute %d: name %q", i, v)
		}
		for _, c := range []struct {
			col  string
			want []byte
		}{
			{"email", []byte("t1-" + strconv.Itoa(i+5))},
			{"ssn", []byte("999-45-6789")},
			{"salary", binary.BigEndian.AppendUint64(nil, uint64(i+5))},
		} {
			pt, err := enc.Decrypt(context.Background(), set.Column(benchDB, "", "users_enc", c.col), next())
			if err != nil || !bytes.Equal(pt, c.want) {
				t.Fatalf("execute %d: %s: %x, %v", i, c.col, pt, err)
			}
		}
		if p != len(cmd) {
			t.Fatalf("execute %d: %d trailing bytes", i, len(cmd)-p)
		}
	}
}

func BenchmarkInsert(b *testing.B) {
	ic, _, _ := benchSetup(b)
	h := prepareInsert(b, ic)
	var w mysql.Writer
	x := &mysql.Exchange{Command: gomysql.COM_STMT_EXECUTE, StmtID: 9}
	if err := h.Command(x, insertPacket(1, true), &w); err != nil {
		b.Fatal(err)
	}
	pkt := insertPacket(2, false)
	ok := []byte{0, 1, 0, 0x02, 0, 0, 0} // one row affected, AUTOCOMMIT
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		resetWriter(&w)
		*x = mysql.Exchange{Command: gomysql.COM_STMT_EXECUTE, StmtID: 9}
		if err := h.Command(x, pkt, &w); err != nil {
			b.Fatal(err)
		}
		if x.Watch {
			resetWriter(&w)
			x.Last = true
			if err := h.Result(x, mysql.KindOK, ok, &w); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestPointSelectOtherRow: a row whose email is not the value looked up
// (not one of the bound ciphertexts) is decrypted, not taken from the
// lookup; a tampered one is refused.
func TestPointSelectOtherRow(t *testing.T) {
	ic, enc, set := benchSetup(t)
	ps := newPointSelect(t, ic, enc, set, true, "5678")
	var out []byte
	ps.run(t, executePacket(ps.stmtID, "1234", true), &out)
	if !bytes.Contains(out, []byte("\x045678\x0b999-45-6789")) || bytes.Contains(out, []byte("1234")) {
		t.Fatalf("row not decrypted: %x", out)
	}
	// Flip the last byte of the email ciphertext (a 1-byte length prefix
	// follows id and name).
	p := 2 + 8 + 1 + len("user name")
	ps.row[p+int(ps.row[p])] ^= 1
	x := &mysql.Exchange{Command: gomysql.COM_STMT_EXECUTE, StmtID: ps.stmtID}
	var w mysql.Writer
	if err := ps.hooks.Command(x, executePacket(ps.stmtID, "5678", false), &w); err != nil {
		t.Fatal(err)
	}
	x.Columns = len(ps.defs)
	for i, d := range ps.defs {
		x.Column = i
		if err := ps.hooks.Result(x, mysql.KindColumnDef, d, &w); err != nil {
			t.Fatal(err)
		}
	}
	err := ps.hooks.Result(x, mysql.KindBinaryRow, ps.row, &w)
	var me *mysql.Error
	if !errors.As(err, &me) || me.Code != gomysql.ER_UNKNOWN_ERROR {
		t.Fatalf("tampered ciphertext: got %v, want ERR 1105", err)
	}
}

// TestColumnDefChange: remembered column definitions are used only while
// the server sends the same ones.
func TestColumnDefChange(t *testing.T) {
	ic, enc, set := benchSetup(t)
	ps := newPointSelect(t, ic, enc, set, true, "5678")
	var out []byte
	ps.run(t, executePacket(ps.stmtID, "5678", true), &out)
	if !bytes.HasSuffix(out, binary.LittleEndian.AppendUint64(nil, 123456)) {
		t.Fatalf("salary not decrypted: %x", out)
	}
	// The table changed behind the proxy's back: salary is now a plain
	// BIGINT column under another name.
	ps.defs[4] = colDef("users_enc", "pay", gomysql.MYSQL_TYPE_LONGLONG, 63, 20, gomysql.BINARY_FLAG)
	p := 2 + 8    // header, NULL bitmap, id
	for range 3 { // name, email, ssn: short strings
		p += 1 + int(ps.row[p])
	}
	ps.row = binary.LittleEndian.AppendUint64(ps.row[:p], 777)
	ps.run(t, executePacket(ps.stmtID, "5678", false), &out)
	if !bytes.Contains(out, framePacket(4, ps.defs[4])[4:]) {
		t.Fatalf("the plain column's definition was rewritten: %x", out)
	}
	if !bytes.Contains(out, append([]byte("\x045678\x0b999-45-6789"), binary.LittleEndian.AppendUint64(nil, 777)...)) {
		t.Fatalf("row: %x", out)
	}
}

// TestPipelinedExecutes: executions whose responses are still in flight
// each keep their own state (the spare of a finished one is reused only
// once its response is complete), so each row is decrypted with its own
// execution's lookups.
func TestPipelinedExecutes(t *testing.T) {
	ic, enc, set := benchSetup(t)
	ps := newPointSelect(t, ic, enc, set, true, "5678")
	ps.run(t, executePacket(ps.stmtID, "5678", true), nil) // leaves a spare
	xs := make([]mysql.Exchange, 3)
	for i := range xs {
		xs[i] = mysql.Exchange{Command: gomysql.COM_STMT_EXECUTE, StmtID: ps.stmtID, DeprecateEOF: true}
		var w mysql.Writer
		if err := ps.hooks.Command(&xs[i], executePacket(ps.stmtID, strconv.Itoa(1000+i), false), &w); err != nil {
			t.Fatal(err)
		}
	}
	if xs[0].State == xs[1].State || xs[1].State == xs[2].State || xs[0].State == xs[2].State {
		t.Fatal("executions in flight share their state")
	}
	for i := range xs {
		x := &xs[i]
		x.Columns = len(ps.defs)
		var out []byte
		for j, d := range ps.defs {
			x.Column = j
			var w mysql.Writer
			if err := ps.hooks.Result(x, mysql.KindColumnDef, d, &w); err != nil {
				t.Fatal(err)
			}
		}
		var w mysql.Writer
		if err := ps.hooks.Result(x, mysql.KindBinaryRow, ps.row, &w); err != nil {
			t.Fatal(err)
		}
		out = append(out, writerBytes(&w)...)
		if !bytes.Contains(out, []byte("\x045678\x0b999-45-6789")) {
			t.Fatalf("execution %d: row not decrypted: %x", i, out)
		}
		x.Last = true
		if err := ps.hooks.Result(x, mysql.KindOK, ps.ok, &w); err != nil {
			t.Fatal(err)
		}
		if x.State != nil {
			t.Fatalf("execution %d: state kept after the response's last packet", i)
		}
	}
	// The next execution reuses a released state and still works.
	var out []byte
	ps.run(t, executePacket(ps.stmtID, "5678", false), &out)
	if !bytes.Contains(out, []byte("\x045678\x0b999-45-6789")) {
		t.Fatalf("row not decrypted after reuse: %x", out)
	}
}
