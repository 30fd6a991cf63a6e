package mycrypt_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/value"
)

// memKeys holds one version of each key.
type memKeys map[string]*crypto.Key

func (m memKeys) Primary(_ context.Context, name string) (*crypto.Key, error) {
	if k := m[name]; k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("data key %q not found", name)
}

func (m memKeys) Live(ctx context.Context, name string) ([]*crypto.Key, error) {
	k, err := m.Primary(ctx, name)
	if err != nil {
		return nil, err
	}
	return []*crypto.Key{k}, nil
}

func (m memKeys) Decrypt(ctx context.Context, name string, dst, ct []byte) ([]byte, value.Type, error) {
	k, err := m.Primary(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	return k.Decrypt(dst, ct)
}

// newHooks returns hooks of a MariaDB session on database app, with a
// deterministic rule on users.email and a randomized one on users.ssn.
func newHooks(t *testing.T) *mysql.SessionHooks {
	t.Helper()
	return lexHooks(t, mysql.SessionInfo{Database: "app", Charset: 45, ServerVersion: mariaDB}, nil)
}

func query(sql string) []byte { return append([]byte{gomysql.COM_QUERY}, sql...) }

func TestQueryCommand(t *testing.T) {
	tests := []struct {
		name, sql string
		code      uint16 // 0: forwarded
		grows     bool   // the forwarded packet is longer (ciphertexts)
		mention   string
	}{
		{"passthrough", "SELECT 1", 0, false, ""},
		{"plain table", "INSERT INTO orders (note) VALUES ('secret-1')", 0, false, ""},
		{"encrypt", "INSERT INTO users (email, ssn) VALUES ('a@example.com', 'secret-2')", 0, true, ""},
		{"like", "SELECT * FROM users WHERE email LIKE 'secret-3%'", 1235, false, "users.email"},
		{"randomized eq", "SELECT * FROM users WHERE ssn = 'secret-4'", 1235, false, "users.ssn"},
		{"unparseable", "INSERT INTO users (email) VALUES ('secret-5'", 1235, false, "parsed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHooks(t)
			if !h.Commands.Has(gomysql.COM_QUERY) {
				t.Fatal("COM_QUERY not hooked")
			}
			payload := query(tt.sql)
			var w mysql.Writer
			err := h.Command(&mysql.Exchange{Command: gomysql.COM_QUERY}, payload, &w)
			if tt.code != 0 {
				var me *mysql.Error
				if !errors.As(err, &me) || me.Code != tt.code || me.Fatal || !strings.Contains(me.Message, tt.mention) {
					t.Fatalf("got %v, want ERR %d mentioning %q", err, tt.code, tt.mention)
				}
				if strings.Contains(me.Message, "secret") {
					t.Fatalf("refusal leaks a value: %q", me.Message)
				}
				if w.Len() != 0 {
					t.Fatal("a refused command was forwarded")
				}
				return
			}
			if err != nil {
				t.Fatalf("Command: %v", err)
			}
			if grew := w.Len() > 4+len(payload); grew != tt.grows || w.Len() < 4+len(payload) {
				t.Fatalf("forwarded %d bytes for a %d-byte command (want growth %v)", w.Len(), len(payload), tt.grows)
			}
		})
	}
}

func TestExecuteUnknownStatement(t *testing.T) {
	h := newHooks(t)
	var w mysql.Writer
	payload := []byte{gomysql.COM_STMT_EXECUTE, 99, 0, 0, 0, 0, 1, 0, 0, 0}
	err := h.Command(&mysql.Exchange{Command: gomysql.COM_STMT_EXECUTE, StmtID: 99}, payload, &w)
	var me *mysql.Error
	if !errors.As(err, &me) || me.Code != gomysql.ER_UNKNOWN_STMT_HANDLER || w.Len() != 0 {
		t.Fatalf("got %v (%d bytes forwarded), want ERR 1243", err, w.Len())
	}
}

func TestMalformedResult(t *testing.T) {
	h := newHooks(t)
	var w mysql.Writer
	x := &mysql.Exchange{Command: gomysql.COM_QUERY}
	if err := h.Command(x, query("SELECT email FROM users"), &w); err != nil {
		t.Fatal(err)
	}
	if !x.Watch {
		t.Fatal("a query on an encrypted table is not watched")
	}
	x.Columns, x.Column = 1, 0
	for _, p := range [][]byte{{}, {3, 'd', 'e'}, {0xfc, 0xff}} {
		var rw mysql.Writer
		err := h.Result(x, mysql.KindColumnDef, p, &rw)
		var me *mysql.Error
		if !errors.As(err, &me) || me.Fatal {
			t.Fatalf("column definition %x: got %v, want a non-fatal ERR", p, err)
		}
	}
}
