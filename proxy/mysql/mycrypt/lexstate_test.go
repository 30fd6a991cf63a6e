package mycrypt_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy/mysql"
)

var okPacket = []byte{0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00}

// run sends sql and, if the hook forwarded it, answers with resp (nil: no
// answer yet). It returns the hook's refusal.
func run(t *testing.T, h *mysql.SessionHooks, sql string, kind mysql.Kind, resp []byte) error {
	t.Helper()
	x := &mysql.Exchange{Command: gomysql.COM_QUERY}
	var w mysql.Writer
	if err := h.Command(x, query(sql), &w); err != nil {
		return err
	}
	if resp != nil && x.Watch {
		var rw mysql.Writer
		if err := h.Result(x, kind, resp, &rw); err != nil {
			t.Fatalf("result: %v", err)
		}
	}
	return nil
}

func wantRefusal(t *testing.T, err error, words ...string) {
	t.Helper()
	var me *mysql.Error
	if !errors.As(err, &me) || me.Code != 1235 {
		t.Fatalf("got %v, want ERR 1235", err)
	}
	for _, w := range words {
		if !strings.Contains(me.Message, w) {
			t.Fatalf("refusal %q does not mention %q", me.Message, w)
		}
	}
}

const onUsers = "INSERT INTO users (email) VALUES ('a@example.com')"

func TestLexCharsetTracking(t *testing.T) {
	maria := mysql.SessionInfo{Charset: 45, ServerVersion: mariaDB,
		Capabilities: uint64(gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_SESSION_TRACK)}
	h := lexHooks(t, maria, nil)
	if err := run(t, h, onUsers, 0, nil); err != nil {
		t.Fatal(err)
	}
	// In flight: unknown.
	x := &mysql.Exchange{Command: gomysql.COM_QUERY}
	var w mysql.Writer
	if err := h.Command(x, query("SET NAMES gbk"), &w); err != nil || !x.Watch {
		t.Fatalf("SET NAMES: %v watch %v", err, x.Watch)
	}
	wantRefusal(t, run(t, h, onUsers, 0, nil), "not known")
	var rw mysql.Writer
	if err := h.Result(x, mysql.KindOK, okPacket, &rw); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, run(t, h, onUsers, 0, nil), "character_set_client gbk", "utf8mb4")
	if err := run(t, h, "INSERT INTO orders VALUES ('x')", 0, nil); err != nil {
		t.Fatalf("plaintext table: %v", err)
	}
	// A failed SET changes nothing.
	if err := run(t, h, "SET NAMES utf8mb4", mysql.KindERR, []byte("\xff\x15\x04#42000nope")); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, run(t, h, onUsers, 0, nil), "character_set_client gbk")
	if err := run(t, h, "SET NAMES utf8mb4", mysql.KindOK, okPacket); err != nil {
		t.Fatal(err)
	}
	if err := run(t, h, onUsers, 0, nil); err != nil {
		t.Fatal(err)
	}
	// A variable: unknown, until session state tracking tells.
	if err := run(t, h, "SET character_set_client = @cs", mysql.KindOK, okPacket); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, run(t, h, onUsers, 0, nil), "character_set_client is not known")
	tracked := sessionTrackOK("character_set_client", "utf8mb4")
	if err := run(t, h, "SET character_set_client = @cs", mysql.KindOK, tracked); err != nil {
		t.Fatal(err)
	}
	if err := run(t, h, onUsers, 0, nil); err != nil {
		t.Fatalf("after session state tracking: %v", err)
	}
	if err := run(t, h, "SET sql_mode = @m", mysql.KindOK, sessionTrackOK("sql_mode", "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES")); err != nil {
		t.Fatal(err)
	}
	// NO_BACKSLASH_ESCAPES from the tracking: 'k\' is a whole string.
	if err := run(t, h, `INSERT INTO users SET email = 'k\'`, 0, nil); err != nil {
		t.Fatalf("NO_BACKSLASH_ESCAPES: %v", err)
	}

	// COM_CHANGE_USER with gbk; COM_RESET_CONNECTION goes back to it
	// (MariaDB).
	cu := append([]byte{gomysql.COM_CHANGE_USER}, "u\x00\x00app\x00"...)
	cu = append(cu, 28, 0) // gbk_chinese_ci
	cu = append(cu, "mysql_native_password\x00"...)
	if err := h.Command(&mysql.Exchange{Command: gomysql.COM_CHANGE_USER}, cu, &w); err != nil {
		t.Fatal(err)
	}
	const qualified = "INSERT INTO app.users (email) VALUES ('a@example.com')" // the database is unknown after COM_CHANGE_USER
	wantRefusal(t, run(t, h, qualified, 0, nil), "character_set_client")
	if err := run(t, h, "SET NAMES utf8mb4", mysql.KindOK, okPacket); err != nil {
		t.Fatal(err)
	}
	if err := run(t, h, qualified, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Command(&mysql.Exchange{Command: gomysql.COM_RESET_CONNECTION}, []byte{gomysql.COM_RESET_CONNECTION}, &w); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, run(t, h, qualified, 0, nil), "character_set_client")
}

func sessionTrackOK(name, val string) []byte {
	entry := append([]byte{byte(len(name))}, name...)
	entry = append(entry, byte(len(val)))
	entry = append(entry, val...)
	state := append([]byte{0x00, byte(len(entry))}, entry...)
	p := []byte{0x00, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x00} // status AUTOCOMMIT|SESSION_STATE_CHANGED, info ""
	p = append(p, byte(len(state)))
	return append(p, state...)
}

func TestLexHandshake(t *testing.T) {
	for _, c := range []struct {
		name   string
		info   mysql.SessionInfo
		refuse string
	}{
		{"gbk collation", mysql.SessionInfo{Charset: 28, ServerVersion: mariaDB}, "character_set_client"},
		{"unknown collation", mysql.SessionInfo{Charset: 0, ServerVersion: mariaDB}, "character_set_client"},
		{"MySQL 8 default", mysql.SessionInfo{Charset: 255, ServerVersion: "8.0.36"}, ""},
		{"255 on MariaDB", mysql.SessionInfo{Charset: 255, ServerVersion: mariaDB}, "character_set_client"},
		{"latin1", mysql.SessionInfo{Charset: 8, ServerVersion: mariaDB}, ""},
		{"utf8mb4_unicode_ci", mysql.SessionInfo{Charset: 224, ServerVersion: "11.4.2-MariaDB"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := lexHooks(t, c.info, nil)
			err := run(t, h, onUsers, 0, nil)
			if c.refuse == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantRefusal(t, err, c.refuse)
		})
	}
}

// fakeLex is a LexSource.
type fakeLex struct{ mode, charset, initConnect string }

func (f fakeLex) ServerLexState(context.Context) (string, string, string, error) {
	return f.mode, f.charset, f.initConnect, nil
}

func TestLexServerDefaults(t *testing.T) {
	info := mysql.SessionInfo{Charset: 45, ServerVersion: mariaDB}
	// The global mode is read: NO_BACKSLASH_ESCAPES reads 'k\' as a string.
	h := lexHooks(t, info, fakeLex{mode: "NO_BACKSLASH_ESCAPES", charset: "utf8mb4"})
	if err := run(t, h, `INSERT INTO users SET email = 'k\'`, 0, nil); err != nil {
		t.Fatal(err)
	}
	// Without a source the mode is assumed: a string that reads
	// differently under NO_BACKSLASH_ESCAPES is refused.
	h = lexHooks(t, info, nil)
	wantRefusal(t, run(t, h, `INSERT INTO users SET email = 'k\', ssn = 0x73 -- '`, 0, nil), "NO_BACKSLASH_ESCAPES")
	// An unsupported global mode.
	h = lexHooks(t, info, fakeLex{mode: "ORACLE", charset: "utf8mb4"})
	wantRefusal(t, run(t, h, onUsers, 0, nil), "sql_mode")
	// init_connect that sets the mode: unknown.
	h = lexHooks(t, info, fakeLex{charset: "utf8mb4", initConnect: "SET sql_mode = 'ANSI_QUOTES'"})
	wantRefusal(t, run(t, h, onUsers, 0, nil), "sql_mode is not known")
	h = lexHooks(t, info, fakeLex{charset: "utf8mb4", initConnect: "SET autocommit = 0"})
	if err := run(t, h, onUsers, 0, nil); err != nil {
		t.Fatal(err)
	}
}
