package mycrypt_test

import (
	"errors"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy/mysql"
)

// FuzzResultPackets feeds arbitrary column definitions and rows of a
// watched query and arbitrary COM_STMT_EXECUTE packets to the hooks: they
// must answer with packets or an ERR, never panic (a panic would surface
// as a fatal internal error).
func FuzzResultPackets(f *testing.F) {
	f.Add(uint8(mysql.KindColumnDef), []byte("\x03def\x03app\x05users\x05users\x05email\x05email\x0c\x3f\x00\x00\x01\x00\x00\xfd\x80\x00\x00\x00\x00"))
	f.Add(uint8(mysql.KindTextRow), []byte("\x05hello"))
	f.Add(uint8(mysql.KindBinaryRow), []byte("\x00\x00\x05hello"))
	f.Add(uint8(mysql.KindOK), []byte("\x00\x00\x00\x02\x00\x00\x00"))
	f.Add(uint8(mysql.KindTextRow), []byte("\x00\x01\xfd\x00\xfd\x00\x03\x00\x01a\x01b\x07\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, kind uint8, p []byte) {
		h := newHooks(t)
		var w mysql.Writer
		x := &mysql.Exchange{Command: gomysql.COM_QUERY}
		if err := h.Command(x, query("USE app; SELECT email, ssn FROM users"), &w); err != nil {
			t.Fatal(err)
		}
		x.Columns = 2
		k := mysql.Kind(kind%uint8(mysql.KindOther)) + 1
		for col := 0; col < 2; col++ {
			x.Column = col
			var rw mysql.Writer
			err := h.Result(x, k, p, &rw)
			var me *mysql.Error
			if errors.As(err, &me) && me.Fatal {
				t.Fatalf("fatal error (panic?) for kind %v: %v", k, err)
			}
		}
		// A prepared INSERT with three parameters, then an execution
		// with arbitrary flags, NULL bitmap, types and values.
		px := &mysql.Exchange{Command: gomysql.COM_STMT_PREPARE}
		var pw mysql.Writer
		prep := append([]byte{gomysql.COM_STMT_PREPARE}, "INSERT INTO app.users (email, ssn, id) VALUES (?, ?, ?)"...)
		if err := h.Command(px, prep, &pw); err != nil {
			t.Fatal(err)
		}
		if err := h.Result(px, mysql.KindPrepareOK, []byte{0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0}, &pw); err != nil {
			t.Fatal(err)
		}
		var ew mysql.Writer
		exec := append([]byte{gomysql.COM_STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0}, p...)
		err := h.Command(&mysql.Exchange{Command: gomysql.COM_STMT_EXECUTE, StmtID: 1}, exec, &ew)
		var me *mysql.Error
		if errors.As(err, &me) && me.Fatal {
			t.Fatalf("fatal error for COM_STMT_EXECUTE: %v", err)
		}
	})
}
