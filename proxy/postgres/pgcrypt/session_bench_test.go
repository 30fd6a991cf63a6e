package pgcrypt_test

import (
	"context"
	"encoding/hex"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// benchManager is a real key manager (local master key, file key store)
// holding the data keys of the fixture's columns.
func benchManager(tb testing.TB) *keys.Manager {
	tb.Helper()
	return testkeys.Manager(tb,
		keys.Spec{Name: "email", Algorithm: rules.ModeDeterministic.Algorithm()},
		keys.Spec{Name: "alt", Algorithm: rules.ModeDeterministic.Algorithm()},
		keys.Spec{Name: "ssn", Algorithm: rules.ModeRandomized.Algorithm()},
		keys.Spec{Name: "salary", Algorithm: rules.ModeRandomized.Algorithm()})
}

// countingKeys counts decryptions per data key.
type countingKeys struct {
	*keys.Manager
	email, alt, other atomic.Int64
}

func (k *countingKeys) Decrypt(ctx context.Context, name string, dst, ct []byte) ([]byte, value.Type, error) {
	switch name {
	case "email":
		k.email.Add(1)
	case "alt":
		k.alt.Add(1)
	default:
		k.other.Add(1)
	}
	return k.Manager.Decrypt(ctx, name, dst, ct)
}

type fakeCatalog map[string][]string

func (c fakeCatalog) Resolve(_ context.Context, _ []string, table string) (string, error) {
	if _, ok := c["public."+table]; ok {
		return "public", nil
	}
	return "", nil
}

func (c fakeCatalog) Columns(_ context.Context, schema, table string) ([]string, error) {
	return c[schema+"."+table], nil
}

func (c fakeCatalog) CreationSchema(context.Context, []string) (string, error) { return "public", nil }

const (
	encOID   = 16384
	plainOID = 16390
)

// fixture is a session over users_enc (email deterministic, ssn
// randomized, salary randomized bigint) and users_plain, with one row of
// each as the server would send it.
type fixture struct {
	sess     *pgcrypt.BenchSession
	cols     []*rules.ColumnRule // of the users_enc result
	encRow   []byte              // DataRow body of users_enc, ciphertext cells
	plainRow []byte
	plainOut int // length of the decrypted DataRow message
	enc      *rules.Encryptor
	keys     *countingKeys
	alt      *rules.ColumnRule // users_enc.alt: deterministic text under another key
	encCells [][]byte          // the cells of encRow
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	ctx := context.Background()
	set, err := rules.New(rules.DialectPostgres, []rules.Spec{
		{Table: "users_enc", Column: "email", Key: "email", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "users_enc", Column: "ssn", Key: "ssn", Mode: rules.ModeRandomized, Type: value.TypeText},
		{Table: "users_enc", Column: "salary", Key: "salary", Mode: rules.ModeRandomized, Type: value.TypeBigint},
		{Table: "users_enc", Column: "alt", Key: "alt", Mode: rules.ModeDeterministic, Type: value.TypeText},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ck := &countingKeys{Manager: benchManager(tb)}
	enc := rules.NewEncryptor(ck)
	email := set.Column("bench", "public", "users_enc", "email")
	ssn := set.Column("bench", "public", "users_enc", "ssn")
	salary := set.Column("bench", "public", "users_enc", "salary")
	alt := set.Column("bench", "public", "users_enc", "alt")
	if email == nil || ssn == nil || salary == nil || alt == nil {
		tb.Fatal("rules not found")
	}
	cat := fakeCatalog{
		"public.users_enc":   {"id", "name", "email", "ssn", "salary", "alt"},
		"public.users_plain": {"id", "name", "email", "ssn", "salary"},
	}
	sess, err := pgcrypt.NewBenchSession(ctx, set, enc, cat, "bench", map[uint32]map[int16]*rules.ColumnRule{
		encOID:   {3: email, 4: ssn, 5: salary, 6: alt},
		plainOID: nil,
	})
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{sess: sess, enc: enc, keys: ck, cols: []*rules.ColumnRule{nil, nil, email, ssn, salary}, alt: alt}
	plain := [][]byte{[]byte("42"), []byte("user 42"), []byte("user42@example.com"), []byte("123-45-6789"), []byte("123456")}
	cells := slices.Clone(plain)
	f.plainOut = 1 + 4 + 2
	for i, col := range f.cols {
		f.plainOut += 4 + len(plain[i])
		if col == nil {
			continue
		}
		canon, err := value.AppendCanonicalText(nil, col.Type, plain[i])
		if err != nil {
			tb.Fatal(err)
		}
		ct, err := enc.EncryptForStore(ctx, col, canon)
		if err != nil {
			tb.Fatal(err)
		}
		cells[i] = []byte(`\x` + hex.EncodeToString(ct))
	}
	f.encCells = cells
	f.encRow = encodeBody(tb, &pgproto3.DataRow{Values: cells})
	f.plainRow = encodeBody(tb, &pgproto3.DataRow{Values: plain})
	return f
}

// encodeBody returns the body of an encoded message (without type and
// length).
func encodeBody(tb testing.TB, msg interface{ Encode([]byte) ([]byte, error) }) []byte {
	tb.Helper()
	b, err := msg.Encode(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return b[5:]
}

func rowDescription(oid uint32, types [5]uint32) *pgproto3.RowDescription {
	rd := &pgproto3.RowDescription{}
	for i, name := range []string{"id", "name", "email", "ssn", "salary"} {
		size := int16(-1)
		if types[i] == 20 {
			size = 8
		}
		rd.Fields = append(rd.Fields, pgproto3.FieldDescription{Name: []byte(name), TableOID: oid,
			TableAttributeNumber: uint16(i + 1), DataTypeOID: types[i], DataTypeSize: size, TypeModifier: -1})
	}
	return rd
}

// exchange is the messages of one pgbench -M prepared transaction: the
// client's Bind, Describe portal, Execute, Sync and the server's answers.
type exchange struct {
	front []msg
	back  []msg
	// wantOut is the length of what the session forwards to the client.
	wantOut int
}

type msg struct {
	typ  byte
	body []byte
}

// prepare parses the statement on the session, answers its hidden
// Describe, and returns one transaction's exchange.
func (f *fixture) prepare(tb testing.TB, table string, oid uint32, types [5]uint32, row []byte, rowOut int) exchange {
	tb.Helper()
	name := "P_" + table
	sql := "SELECT id, name, email, ssn, salary FROM " + table + " WHERE email = $1"
	var w postgres.Writer
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(f.sess.Frontend('P', encodeBody(tb, &pgproto3.Parse{Name: name, Query: sql}), &w))
	must(f.sess.Frontend('S', nil, &w))
	rd := encodeBody(tb, rowDescription(oid, types))
	must(f.sess.Backend('1', nil, &w))
	must(f.sess.Backend('t', encodeBody(tb, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{types[2]}}), &w))
	must(f.sess.Backend('T', rd, &w))
	must(f.sess.Backend('Z', []byte{'I'}, &w))
	if n := f.sess.Pending(); n != 0 {
		tb.Fatalf("%d events pending after Parse", n)
	}
	return exchange{
		front: []msg{
			{'B', encodeBody(tb, &pgproto3.Bind{PreparedStatement: name, ParameterFormatCodes: []int16{0},
				Parameters: [][]byte{[]byte("user42@example.com")}, ResultFormatCodes: []int16{0}})},
			{'D', encodeBody(tb, &pgproto3.Describe{ObjectType: 'P'})},
			{'E', encodeBody(tb, &pgproto3.Execute{})},
			{'S', nil},
		},
		back: []msg{
			{'2', nil}, {'T', rd}, {'D', row},
			{'C', []byte("SELECT 1\x00")}, {'Z', []byte{'I'}},
		},
		wantOut: 5 + 5 + len(rd) + rowOut + 5 + 9 + 6,
	}
}

func (f *fixture) run(x *exchange, front, back *postgres.Writer) error {
	for _, m := range x.front {
		if err := f.sess.Frontend(m.typ, m.body, front); err != nil {
			return err
		}
	}
	for _, m := range x.back {
		if err := f.sess.Backend(m.typ, m.body, back); err != nil {
			return err
		}
	}
	return nil
}

var (
	encTypes   = [5]uint32{20, 25, 17, 17, 17}
	plainTypes = [5]uint32{20, 25, 25, 25, 20}
)

func TestPreparedExchange(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		table    string
		oid      uint32
		types    [5]uint32
		row      []byte
		rowOut   int
		bindSame bool // the Bind is forwarded unchanged
	}{
		{"encrypted", "users_enc", encOID, encTypes, f.encRow, f.plainOut, false},
		{"plain", "users_plain", plainOID, plainTypes, f.plainRow, 5 + len(f.plainRow), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := f.prepare(t, tc.table, tc.oid, tc.types, tc.row, tc.rowOut)
			for i := range 3 { // the RowDescription cache is cold, warm, then purged
				if i == 2 {
					f.sess.PurgeCatalog()
				}
				var front, back postgres.Writer
				if err := f.run(&x, &front, &back); err != nil {
					t.Fatal(err)
				}
				if back.Len() != x.wantOut {
					t.Errorf("round %d: forwarded %d bytes to the client, want %d", i, back.Len(), x.wantOut)
				}
				bindIn := 5 + len(x.front[0].body)
				if got := front.Len() - (5 + len(x.front[1].body)) - (5 + len(x.front[2].body)) - 5; (got == bindIn) != tc.bindSame {
					t.Errorf("round %d: Bind of %d bytes forwarded as %d", i, bindIn, got)
				}
				if n := f.sess.Pending(); n != 0 {
					t.Fatalf("round %d: %d events pending", i, n)
				}
			}
		})
	}
}

func BenchmarkDataRow(b *testing.B) {
	f := newFixture(b)
	var w postgres.Writer
	b.ReportAllocs()
	for b.Loop() {
		if w.Len() > 1<<20 {
			w.Reset()
		}
		if err := f.sess.DataRow(f.cols, f.encRow, &w); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPreparedSelect(b *testing.B) {
	for _, tc := range simpleCases {
		b.Run(tc.name, func(b *testing.B) {
			f := newFixture(b)
			row, rowOut := f.plainRow, 5+len(f.plainRow)
			if tc.enc {
				row, rowOut = f.encRow, f.plainOut
			}
			x := f.prepare(b, tc.table, tc.oid, tc.types, row, rowOut)
			var front, back postgres.Writer
			b.ReportAllocs()
			stop := startCPUTimer(b)
			for b.Loop() {
				if back.Len() > 1<<20 {
					front.Reset()
					back.Reset()
				}
				if err := f.run(&x, &front, &back); err != nil {
					b.Fatal(err)
				}
			}
			stop()
		})
	}
}

// rowsFor returns the DataRow bodies (ciphertext cells, plaintext cells)
// of the row of user i, and the length of the decrypted DataRow message.
func (f *fixture) rowsFor(tb testing.TB, i int) (enc, plain []byte, out int) {
	tb.Helper()
	vals := [][]byte{[]byte(strconv.Itoa(i)), []byte("user " + strconv.Itoa(i)), []byte(emailOf(i)),
		[]byte("123-45-6789"), []byte(strconv.Itoa(1000 * i))}
	cells := slices.Clone(vals)
	out = 1 + 4 + 2
	for j, col := range f.cols {
		out += 4 + len(vals[j])
		if col == nil {
			continue
		}
		canon, err := value.AppendCanonicalText(nil, col.Type, vals[j])
		if err != nil {
			tb.Fatal(err)
		}
		ct, err := f.enc.EncryptForStore(context.Background(), col, canon)
		if err != nil {
			tb.Fatal(err)
		}
		cells[j] = []byte(`\x` + hex.EncodeToString(ct))
	}
	return encodeBody(tb, &pgproto3.DataRow{Values: cells}), encodeBody(tb, &pgproto3.DataRow{Values: vals}), out
}

func emailOf(i int) string { return "user" + strconv.Itoa(i) + "@example.com" }

// simpleExchanges returns the exchanges of n simple-protocol point selects
// by email (n distinct literals, as pgbench's random keys: all but the
// first are plan-template hits): the client's Query and the server's
// RowDescription, one DataRow, CommandComplete and ReadyForQuery.
func (f *fixture) simpleExchanges(tb testing.TB, table string, oid uint32, types [5]uint32, enc bool, n int) []exchange {
	tb.Helper()
	rd := encodeBody(tb, rowDescription(oid, types))
	xs := make([]exchange, n)
	for i := range xs {
		encRow, plainRow, out := f.rowsFor(tb, 100+i)
		row, rowOut := plainRow, 5+len(plainRow)
		if enc {
			row, rowOut = encRow, out
		}
		sql := "SELECT id, name, email, ssn, salary FROM " + table + " WHERE email = '" + emailOf(100+i) + "'"
		xs[i] = exchange{
			front: []msg{{'Q', append([]byte(sql), 0)}},
			back: []msg{{'T', rd}, {'D', row},
				{'C', []byte("SELECT 1\x00")}, {'Z', []byte{'I'}}},
			wantOut: 5 + len(rd) + rowOut + 5 + 9 + 6,
		}
	}
	return xs
}

// simpleCases are the two tables of the simple-query exchange.
var simpleCases = []struct {
	name  string
	table string
	oid   uint32
	types [5]uint32
	enc   bool
}{
	{"encrypted", "users_enc", encOID, encTypes, true},
	{"plain", "users_plain", plainOID, plainTypes, false},
}

func TestSimpleExchange(t *testing.T) {
	for _, tc := range simpleCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			xs := f.simpleExchanges(t, tc.table, tc.oid, tc.types, tc.enc, 4)
			for round := range 3 {
				if round == 2 {
					f.sess.PurgeCatalog()
				}
				for i := range xs {
					var front, back postgres.Writer
					if err := f.run(&xs[i], &front, &back); err != nil {
						t.Fatal(err)
					}
					if back.Len() != xs[i].wantOut {
						t.Errorf("round %d, query %d: forwarded %d bytes to the client, want %d", round, i, back.Len(), xs[i].wantOut)
					}
					q := xs[i].front[0].body
					if same := front.Len() == 5+len(q); same == tc.enc {
						t.Errorf("round %d, query %d: Query of %d bytes forwarded as %d", round, i, 5+len(q), front.Len())
					}
					if n := f.sess.Pending(); n != 0 {
						t.Fatalf("round %d, query %d: %d events pending", round, i, n)
					}
				}
			}
		})
	}
}

func BenchmarkSimpleSelect(b *testing.B) {
	for _, tc := range simpleCases {
		b.Run(tc.name, func(b *testing.B) {
			f := newFixture(b)
			xs := f.simpleExchanges(b, tc.table, tc.oid, tc.types, tc.enc, 8)
			f.runEach(b, xs)
		})
	}
}

// BenchmarkSimpleInsert: pgbench's simple-protocol insert of a new row
// with its three encrypted columns as literals (every text differs in its
// constants: plan-template hits).
func BenchmarkSimpleInsert(b *testing.B) {
	for _, tc := range simpleCases {
		b.Run(tc.name, func(b *testing.B) {
			f := newFixture(b)
			f.runEach(b, insertExchanges(tc.table, 8))
		})
	}
}

// runEach runs the exchanges xs in turn, one per benchmark iteration.
func (f *fixture) runEach(b *testing.B, xs []exchange) {
	var front, back postgres.Writer
	i := 0
	b.ReportAllocs()
	stop := startCPUTimer(b)
	for b.Loop() {
		if front.Len()+back.Len() > 1<<20 {
			front.Reset()
			back.Reset()
		}
		if err := f.run(&xs[i%len(xs)], &front, &back); err != nil {
			b.Fatal(err)
		}
		i++
	}
	stop()
}

// insertExchanges returns the exchanges of n simple-protocol inserts into
// table with distinct literals, as pgbench's insert script sends them.
func insertExchanges(table string, n int) []exchange {
	xs := make([]exchange, n)
	for i := range xs {
		v := strconv.Itoa(1000 + i)
		sql := "INSERT INTO " + table + " (name, email, ssn, salary) VALUES ('new user', '" + v + "', '999-45-6789', " + v + ")"
		xs[i] = exchange{front: []msg{{'Q', append([]byte(sql), 0)}},
			back: []msg{{'C', []byte("INSERT 0 1\x00")}, {'Z', []byte{'I'}}}}
	}
	return xs
}
