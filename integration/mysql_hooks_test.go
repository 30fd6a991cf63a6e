package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	driver "github.com/go-sql-driver/mysql"
)

// testInterceptor exercises the hook point the encryption layer will use:
// it refuses statements containing "forbidden" (nothing goes upstream),
// and rewrites 'secret' to 'SECRET' in the rows of statements marked
// /*upper*/, text and binary, following prepared statements by id.
type testInterceptor struct {
	mu       sync.Mutex
	sessions int
	columns  int
}

func (ic *testInterceptor) NewSession(ctx context.Context, info mysql.SessionInfo) (*mysql.SessionHooks, error) {
	ic.mu.Lock()
	ic.sessions++
	ic.mu.Unlock()
	var stmtMu sync.Mutex
	upperStmts := map[uint32]bool{}
	h := &mysql.SessionHooks{}
	h.Commands.Add(gomysql.COM_QUERY, gomysql.COM_STMT_PREPARE, gomysql.COM_STMT_EXECUTE)
	h.Command = func(x *mysql.Exchange, p []byte, w *mysql.Writer) error {
		if bytes.Contains(p, []byte("forbidden")) {
			return &mysql.Error{Code: 1142, State: "42000", Message: "refused by the test policy"}
		}
		switch x.Command {
		case gomysql.COM_QUERY, gomysql.COM_STMT_PREPARE:
			x.Watch = bytes.Contains(p, []byte("/*upper*/"))
		case gomysql.COM_STMT_EXECUTE:
			stmtMu.Lock()
			x.Watch = upperStmts[x.StmtID]
			stmtMu.Unlock()
		}
		w.Packet(p)
		return nil
	}
	h.Results.Add(mysql.KindTextRow, mysql.KindBinaryRow, mysql.KindPrepareOK, mysql.KindColumnDef)
	h.Result = func(x *mysql.Exchange, kind mysql.Kind, p []byte, w *mysql.Writer) error {
		switch kind {
		case mysql.KindPrepareOK:
			stmtMu.Lock()
			upperStmts[x.StmtID] = true
			stmtMu.Unlock()
			w.Packet(p)
		case mysql.KindColumnDef:
			ic.mu.Lock()
			ic.columns++
			ic.mu.Unlock()
			w.Packet(p)
		default:
			b := w.Begin()
			b = append(b, p...)
			copy(b[len(b)-len(p):], bytes.ReplaceAll(p, []byte("secret"), []byte("SECRET")))
			w.End(b)
		}
		return nil
	}
	return h, nil
}

func TestMySQLInterceptor(t *testing.T) {
	ic := &testInterceptor{}
	mysqlModesWith(t, myProxyOpts{Interceptor: ic}, func(t *testing.T, db *testenv.MariaDB, p *myProxy) {
		ctx := testCtx(t)
		for _, params := range [][]string{nil, {"interpolateParams=true"}} {
			c := openConn(t, p.config(t, params...))
			var before, after int
			var name string
			if err := c.QueryRowContext(ctx, `SHOW SESSION STATUS LIKE 'Com_select'`).Scan(&name, &before); err != nil {
				t.Fatal(err)
			}
			var v string
			err := c.QueryRowContext(ctx, `SELECT 'forbidden'`).Scan(&v)
			var me *driver.MySQLError
			if !errors.As(err, &me) || me.Number != 1142 || me.Message != "refused by the test policy" {
				t.Fatalf("refused statement: %v", err)
			}
			if err := c.QueryRowContext(ctx, `SHOW SESSION STATUS LIKE 'Com_select'`).Scan(&name, &after); err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Fatalf("the refused SELECT reached the server (Com_select %d -> %d)", before, after)
			}
			for _, q := range []string{`SELECT /*upper*/ 'secret', ?`, `SELECT 'secret', ?`} {
				var a, b string
				if err := c.QueryRowContext(ctx, q, "a secret").Scan(&a, &b); err != nil {
					t.Fatal(err)
				}
				want := "secret"
				if bytes.Contains([]byte(q), []byte("upper")) {
					want = "SECRET"
				}
				if a != want || b != "a "+want {
					t.Fatalf("%s (%v): %q %q", q, params, a, b)
				}
			}
		}
		// Pipelined: a refusal queued between two forwarded commands is
		// answered in its place.
		r := rawConnect(t, p.Addr, db.User, db.Password, db.Database, 0)
		for round := range 20 {
			var out []byte
			for _, q := range []string{"SELECT 'a'", "SELECT 'forbidden'", "SELECT /*upper*/ 'secret'", "SELECT 'forbidden'"} {
				payload := append([]byte{gomysql.COM_QUERY}, q...)
				out = append(out, byte(len(payload)), 0, 0, 0)
				out = append(out, payload...)
			}
			r.writeRaw(t, out)
			for i, want := range []string{"a", "ERR", "SECRET", "ERR"} {
				r.c.Sequence = 1
				first := r.read(t)
				got := "ERR"
				if first[0] != 0xff {
					_, rows, _ := r.readResultSet(t, first)
					v, _, _, _ := gomysql.LengthEncodedString(rows[0])
					got = string(v)
				} else if errCode(first) != 1142 {
					t.Fatalf("round %d answer %d: %x", round, i, first)
				}
				if got != want {
					t.Fatalf("round %d answer %d: %q, want %q", round, i, got, want)
				}
			}
		}
		ic.mu.Lock()
		sessions, columns := ic.sessions, ic.columns
		ic.mu.Unlock()
		if sessions < 2 || columns == 0 {
			t.Fatalf("hooks saw %d sessions, %d column definitions", sessions, columns)
		}
	})
}

// checkInterceptor watches every command and every response packet,
// forwards them unchanged and checks that the relay's classification is
// consistent: column definitions match the column count, rows come after
// all definitions, text rows only answer COM_QUERY, binary rows only
// COM_STMT_EXECUTE and COM_STMT_FETCH. A relay that lost track of a
// response would hand packets to the wrong exchange or mislabel them.
type checkInterceptor struct {
	mu       sync.Mutex
	problems []string
	packets  int
}

type respCheck struct {
	cols, defs int
	prepare    bool
}

func (ic *checkInterceptor) fail(format string, args ...any) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if len(ic.problems) < 20 {
		ic.problems = append(ic.problems, fmt.Sprintf(format, args...))
	}
}

func (ic *checkInterceptor) NewSession(context.Context, mysql.SessionInfo) (*mysql.SessionHooks, error) {
	h := &mysql.SessionHooks{}
	for c := range 256 {
		h.Commands.Add(byte(c))
	}
	h.Command = func(x *mysql.Exchange, p []byte, w *mysql.Writer) error {
		x.Watch = true
		x.State = &respCheck{prepare: x.Command == gomysql.COM_STMT_PREPARE}
		w.Packet(p)
		return nil
	}
	for k := mysql.KindOK; k <= mysql.KindOther; k++ {
		h.Results.Add(k)
	}
	h.Result = func(x *mysql.Exchange, kind mysql.Kind, p []byte, w *mysql.Writer) error {
		ic.mu.Lock()
		ic.packets++
		ic.mu.Unlock()
		st := x.State.(*respCheck)
		switch kind {
		case mysql.KindColumnCount:
			n, _, _ := gomysql.LengthEncodedInt(p)
			if st.defs != st.cols && !st.prepare {
				ic.fail("command %#x: new result set after %d of %d definitions", x.Command, st.defs, st.cols)
			}
			st.cols, st.defs = int(n), 0
			if x.Columns != int(n) {
				ic.fail("column count %d, relay says %d", n, x.Columns)
			}
		case mysql.KindColumnDef:
			if len(p) < 4 || string(p[:4]) != "\x03def" {
				ic.fail("command %#x: column definition %x", x.Command, p[:min(len(p), 8)])
			}
			if x.Command != gomysql.COM_FIELD_LIST && x.Column != st.defs {
				ic.fail("command %#x: definition %d labelled %d", x.Command, st.defs, x.Column)
			}
			st.defs++
		case mysql.KindTextRow, mysql.KindBinaryRow:
			if st.defs != st.cols && x.Command != gomysql.COM_STMT_FETCH {
				ic.fail("command %#x: row after %d of %d definitions", x.Command, st.defs, st.cols)
			}
			binary := x.Command == gomysql.COM_STMT_EXECUTE || x.Command == gomysql.COM_STMT_FETCH
			if (kind == mysql.KindBinaryRow) != binary || (binary && p[0] != 0) {
				ic.fail("command %#x: %s %x", x.Command, kind, p[:min(len(p), 8)])
			}
		case mysql.KindPrepareOK:
			if x.Command != gomysql.COM_STMT_PREPARE {
				ic.fail("PREPARE_OK answering command %#x", x.Command)
			}
		case mysql.KindParamDef:
			if x.Command != gomysql.COM_STMT_PREPARE {
				ic.fail("parameter definition answering command %#x", x.Command)
			}
		}
		w.Packet(p)
		return nil
	}
	return h, nil
}

// verify fails t if the relay misclassified anything or nothing was seen.
func (ic *checkInterceptor) verify(t *testing.T) {
	t.Helper()
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if len(ic.problems) > 0 {
		t.Fatalf("relay classification problems:\n%s", strings.Join(ic.problems, "\n"))
	}
	if ic.packets == 0 {
		t.Fatal("the checking interceptor saw no response packet")
	}
}
