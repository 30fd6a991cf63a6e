package mycrypt_test

import (
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy/mysql"
)

// BenchmarkQueryCommand: the command hook of a text-protocol point select
// by email whose plan is cached (the same text every time): planning,
// the lookup ciphertexts and the rewritten COM_QUERY.
func BenchmarkQueryCommand(b *testing.B) {
	onBothTables(b, func(b *testing.B, ic *mycrypt.Interceptor, _ *rules.Encryptor, _ *rules.Set, encrypted bool) {
		h := icSession(b, ic, mysql.SessionInfo{Database: benchDB, Charset: 45, ServerVersion: mariaDB})
		table := "users_plain"
		if encrypted {
			table = "users_enc"
		}
		q := append([]byte{gomysql.COM_QUERY}, "SELECT id, name, email, ssn, salary FROM "+table+" WHERE email = '5678'"...)
		var w mysql.Writer
		var x mysql.Exchange
		b.ReportAllocs()
		for b.Loop() {
			w.Reset()
			x = mysql.Exchange{Command: gomysql.COM_QUERY}
			if err := h.Command(&x, q, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}
