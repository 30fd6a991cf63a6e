package mycrypt_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// TestSessionCipher: the session's key uses reach the Monitor with its
// Principal, follow COM_CHANGE_USER, and a Guard refusal is an access
// denied error naming the column, with nothing forwarded.
func TestSessionCipher(t *testing.T) {
	specs := usersSpecs()
	set := mysqlRules(t, specs...)
	var mu sync.Mutex
	var users []string
	ic, err := mycrypt.New(mycrypt.Options{Rules: set,
		Encryptor: rules.NewEncryptor(testkeys.Manager(t, testkeys.ForRules(specs)...)),
		Monitor: fieldcrypt.MonitorFunc(func(_ context.Context, u fieldcrypt.Use) {
			mu.Lock()
			users = append(users, u.Principal.User+"/"+u.Principal.Database+"/"+u.Op.String())
			mu.Unlock()
		}),
		Guard: fieldcrypt.GuardFunc(func(_ context.Context, a fieldcrypt.Access) error {
			if a.Principal.User == "bob" && a.Column.Column == "ssn" {
				return errors.New("bob may not")
			}
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := ic.NewSession(context.Background(), mysql.SessionInfo{Database: "app", Charset: 45, ServerVersion: mariaDB,
		Capabilities: uint64(gomysql.CLIENT_SECURE_CONNECTION),
		SessionBase:  proxy.SessionBase{Principal: proxy.Principal{User: "alice", Database: "app"}}})
	if err != nil {
		t.Fatal(err)
	}
	insert := query("INSERT INTO users (email, ssn) VALUES ('a@example.com', 'secret-1')")
	var w mysql.Writer
	if err := h.Command(&mysql.Exchange{Command: gomysql.COM_QUERY}, insert, &w); err != nil {
		t.Fatal(err)
	}
	// COM_CHANGE_USER: user, auth (length-prefixed), database, collation.
	// The session becomes bob's only once the server says OK: MariaDB
	// keeps a session whose change failed, under its old user.
	change := append([]byte{gomysql.COM_CHANGE_USER}, "bob\x00\x00other\x00\x2d\x00"...)
	changeUser := func(answer mysql.Kind, payload []byte) {
		t.Helper()
		x := &mysql.Exchange{Command: gomysql.COM_CHANGE_USER}
		w.Reset()
		if err := h.Command(x, change, &w); err != nil {
			t.Fatal(err)
		}
		if err := h.Result(x, answer, payload, &w); err != nil {
			t.Fatal(err)
		}
	}
	changeUser(mysql.KindERR, []byte{0xff, 0x15, 0x04, '#', '2', '8', '0', '0', '0', 'x'})
	w.Reset()
	_ = h.Command(&mysql.Exchange{Command: gomysql.COM_QUERY},
		query("INSERT INTO app.users (email, ssn) VALUES ('a@example.com', 'secret-1')"), &w)
	mu.Lock()
	for _, u := range users {
		if strings.HasPrefix(u, "bob/") {
			t.Fatalf("a COM_CHANGE_USER the server refused made the session bob's: %v", users)
		}
	}
	users = nil
	mu.Unlock()
	changeUser(mysql.KindOK, okPacket)
	w.Reset()
	err = h.Command(&mysql.Exchange{Command: gomysql.COM_QUERY},
		query("INSERT INTO other.users (email, ssn) VALUES ('a@example.com', 'secret-1')"), &w)
	var me *mysql.Error
	if !errors.As(err, &me) || me.Code != gomysql.ER_COLUMNACCESS_DENIED_ERROR || me.State != "42000" ||
		!strings.Contains(me.Message, "users.ssn") || strings.Contains(me.Message, "secret") {
		t.Fatalf("bob's INSERT: %v, want ERR 1143 naming users.ssn", err)
	}
	if w.Len() != 0 {
		t.Fatal("a refused INSERT was forwarded")
	}
	want := "bob/other/encrypt,bob/other/encrypt"
	if got := strings.Join(users, ","); got != want {
		t.Errorf("monitor saw %s, want %s", got, want)
	}
}
