package mycrypt_test

import (
	"strconv"

	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy/mysql"
)

// queryExchange returns one exchange of a text-protocol point select by
// email on table (the same text every time, so its plan is cached): the
// command hook (planning, the lookup ciphertexts and the rewritten
// COM_QUERY) and, when the hook watches the response, an OK that ends it
// (the rows' cost is in BenchmarkPointSelect), so that the exchange's
// state is released as the relay would.
func queryExchange(tb testing.TB, ic *mycrypt.Interceptor, table string) func() {
	return queryExchangeVarying(tb, ic, table, false)
}

// queryExchangeVarying is queryExchange; with vary, each statement looks
// up another value, as applications that send literals do (the plan then
// comes from the plan's template, not from the exact text).
func queryExchangeVarying(tb testing.TB, ic *mycrypt.Interceptor, table string, vary bool) func() {
	h := icSession(tb, ic, mysql.SessionInfo{Database: benchDB, Charset: 45, ServerVersion: mariaDB})
	base := append([]byte{gomysql.COM_QUERY}, "SELECT id, name, email, ssn, salary FROM "+table+" WHERE email = '"...)
	q := append(append([]byte(nil), base...), "5678'"...)
	ok := []byte{0, 0, 0, 0x02, 0, 0, 0} // no rows affected, AUTOCOMMIT
	var w mysql.Writer
	var x mysql.Exchange
	n := 0
	return func() {
		if vary {
			n++
			q = append(strconv.AppendInt(append(q[:0], base...), int64(n%100000), 10), '\'')
		}
		w.Reset()
		x = mysql.Exchange{Command: gomysql.COM_QUERY}
		if err := h.Command(&x, q, &w); err != nil {
			tb.Fatal(err)
		}
		if x.Watch {
			w.Reset()
			x.Last = true
			if err := h.Result(&x, mysql.KindOK, ok, &w); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

func BenchmarkQueryCommand(b *testing.B) {
	onBothTables(b, func(b *testing.B, ic *mycrypt.Interceptor, _ *rules.Encryptor, _ *rules.Set, encrypted bool) {
		table := "users_plain"
		if encrypted {
			table = "users_enc"
		}
		run := queryExchange(b, ic, table)
		b.ReportAllocs()
		for b.Loop() {
			run()
		}
	})
}

// BenchmarkQueryCommandVarying is BenchmarkQueryCommand with another
// value in each statement.
func BenchmarkQueryCommandVarying(b *testing.B) {
	onBothTables(b, func(b *testing.B, ic *mycrypt.Interceptor, _ *rules.Encryptor, _ *rules.Set, encrypted bool) {
		table := "users_plain"
		if encrypted {
			table = "users_enc"
		}
		run := queryExchangeVarying(b, ic, table, true)
		b.ReportAllocs()
		for b.Loop() {
			run()
		}
	})
}

// TestQueryAllocations: a text-protocol statement whose plan is cached
// allocates only the string of its text (the plan cache's key): its
// exchange state is the session's spare, on the encrypted table as on the
// plaintext one.
func TestQueryAllocations(t *testing.T) {
	ic, _, _ := benchSetup(t)
	for _, table := range []string{"users_plain", "users_enc"} {
		run := queryExchange(t, ic, table)
		run()
		if n := testing.AllocsPerRun(100, run); n > 1 {
			t.Errorf("%s: %v allocations per statement, want at most 1", table, n)
		}
	}
}
