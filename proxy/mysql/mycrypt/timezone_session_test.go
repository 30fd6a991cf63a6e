package mycrypt_test

import (
	"context"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// zoneHooks returns hooks of a MariaDB session with one timestamptz
// column events.at; track negotiates CLIENT_SESSION_TRACK.
func zoneHooks(t *testing.T, track bool) *mysql.SessionHooks {
	t.Helper()
	m, err := crypto.NewRandomKeyMaterial(crypto.AlgorithmAESSIV)
	if err != nil {
		t.Fatal(err)
	}
	k, err := crypto.NewKey("det", 1, crypto.AlgorithmAESSIV, m)
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.New(rules.DialectMySQL, []rules.Spec{
		{Table: "events", Column: "at", Key: "det", Mode: rules.ModeDeterministic, Type: value.TypeTimestamptz}})
	if err != nil {
		t.Fatal(err)
	}
	ic, err := mycrypt.New(mycrypt.Options{Rules: set, Keys: memKeys{"det": k}})
	if err != nil {
		t.Fatal(err)
	}
	info := mysql.SessionInfo{Database: "app", Charset: 45, ServerVersion: "5.5.5-10.11.6-MariaDB",
		Capabilities: uint64(gomysql.CLIENT_SECURE_CONNECTION)}
	if track {
		info.Capabilities |= uint64(gomysql.CLIENT_SESSION_TRACK)
	}
	h, err := ic.NewSession(context.Background(), info)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const onEvents = "INSERT INTO events (at) VALUES ('2024-01-01 10:00:00')"

// TestSessionTimeZone follows the session time_zone through the
// statements that change it and the server's session state reports.
func TestSessionTimeZone(t *testing.T) {
	errPacket := []byte("\xff\x15\x04#42000nope")
	moreOK := []byte{0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00} // AUTOCOMMIT|MORE_RESULTS_EXISTS
	t.Run("literal SET, failed SET, variable", func(t *testing.T) {
		h := zoneHooks(t, false)
		mustRun(t, h, "SET time_zone = '+02:00'", mysql.KindOK, okPacket)
		mustRun(t, h, onEvents, 0, nil)
		mustRun(t, h, "SET time_zone = @tz", mysql.KindERR, errPacket) // failed: no change
		mustRun(t, h, onEvents, 0, nil)
		mustRun(t, h, "SET time_zone = @tz", mysql.KindOK, okPacket)
		wantRefusal(t, run(t, h, onEvents, 0, nil), "time_zone")
		mustRun(t, h, "/*!40103 SET TIME_ZONE='+00:00' */", mysql.KindOK, okPacket)
		mustRun(t, h, onEvents, 0, nil)
		mustRun(t, h, "SET @old = @@time_zone", mysql.KindOK, okPacket)
		mustRun(t, h, onEvents, 0, nil)
		mustRun(t, h, "CALL p()", mysql.KindOK, okPacket)
		wantRefusal(t, run(t, h, onEvents, 0, nil), "time_zone")
	})
	t.Run("a statement after a change in the same string", func(t *testing.T) {
		h := zoneHooks(t, false)
		wantRefusal(t, run(t, h, "SET time_zone = '+02:00'; "+onEvents, 0, nil), "time_zone")
		mustRun(t, h, "SET time_zone = '+02:00'; SELECT 1", mysql.KindOK, okPacket)
		mustRun(t, h, onEvents, 0, nil)
		// A multi-statement string that fails: which changes ran is unknown.
		x := &mysql.Exchange{Command: gomysql.COM_QUERY}
		var w mysql.Writer
		if err := h.Command(x, query("SELECT 1; SET time_zone = '+03:00'"), &w); err != nil {
			t.Fatal(err)
		}
		var rw mysql.Writer
		if err := h.Result(x, mysql.KindOK, moreOK, &rw); err != nil {
			t.Fatal(err)
		}
		if err := h.Result(x, mysql.KindERR, errPacket, &rw); err != nil {
			t.Fatal(err)
		}
		wantRefusal(t, run(t, h, onEvents, 0, nil), "time_zone")
	})
	t.Run("PREPARE and EXECUTE", func(t *testing.T) {
		h := zoneHooks(t, false)
		mustRun(t, h, "PREPARE s FROM 'SET time_zone = ?'", mysql.KindOK, okPacket)
		mustRun(t, h, onEvents, 0, nil)
		mustRun(t, h, "EXECUTE s USING @z", mysql.KindOK, okPacket)
		wantRefusal(t, run(t, h, onEvents, 0, nil), "time_zone")
		// COM_RESET_CONNECTION forgets prepared statements.
		var w mysql.Writer
		if err := h.Command(&mysql.Exchange{Command: gomysql.COM_RESET_CONNECTION}, []byte{gomysql.COM_RESET_CONNECTION}, &w); err != nil {
			t.Fatal(err)
		}
		mustRun(t, h, "EXECUTE s USING @z", mysql.KindERR, errPacket)
		mustRun(t, h, onEvents, 0, nil)
	})
	t.Run("COM_STMT_PREPARE and COM_STMT_EXECUTE", func(t *testing.T) {
		h := zoneHooks(t, false)
		prepare := func(id byte, sql string) {
			t.Helper()
			x := &mysql.Exchange{Command: gomysql.COM_STMT_PREPARE}
			var w, rw mysql.Writer
			if err := h.Command(x, append([]byte{gomysql.COM_STMT_PREPARE}, sql...), &w); err != nil {
				t.Fatal(err)
			}
			ok := []byte{0x00, id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			if err := h.Result(x, mysql.KindPrepareOK, ok, &rw); err != nil {
				t.Fatal(err)
			}
		}
		execute := func(id byte) {
			t.Helper()
			x := &mysql.Exchange{Command: gomysql.COM_STMT_EXECUTE, StmtID: uint32(id)}
			var w, rw mysql.Writer
			if err := h.Command(x, []byte{gomysql.COM_STMT_EXECUTE, id, 0, 0, 0, 0, 1, 0, 0, 0}, &w); err != nil {
				t.Fatal(err)
			}
			if x.Watch {
				if err := h.Result(x, mysql.KindOK, okPacket, &rw); err != nil {
					t.Fatal(err)
				}
			}
		}
		prepare(1, "SELECT 1")
		prepare(2, "SET time_zone = '+02:00'")
		execute(1)
		mustRun(t, h, onEvents, 0, nil)
		execute(2)
		wantRefusal(t, run(t, h, onEvents, 0, nil), "time_zone")
		mustRun(t, h, "SET time_zone = '+02:00'", mysql.KindOK, okPacket)
		execute(1) // another statement changes nothing
		mustRun(t, h, onEvents, 0, nil)
	})
	t.Run("session state tracking", func(t *testing.T) {
		h := zoneHooks(t, true)
		mustRun(t, h, "SET time_zone = @tz", mysql.KindOK, sessionTrackOK("time_zone", "+05:00"))
		mustRun(t, h, onEvents, 0, nil)
		mustRun(t, h, "CALL p()", mysql.KindOK, sessionTrackOK("time_zone", "SYSTEM"))
		wantRefusal(t, run(t, h, onEvents, 0, nil), "time_zone")
		// The report wins over the text.
		mustRun(t, h, "SET time_zone = '+01:00'", mysql.KindOK, sessionTrackOK("time_zone", "Nowhere/Atlantis"))
		wantRefusal(t, run(t, h, onEvents, 0, nil), "time_zone")
		mustRun(t, h, "CALL p()", mysql.KindOK, sessionTrackOK("time_zone", "+01:00"))
		mustRun(t, h, onEvents, 0, nil)
	})
}

func mustRun(t *testing.T, h *mysql.SessionHooks, sql string, kind mysql.Kind, resp []byte) {
	t.Helper()
	if err := run(t, h, sql, kind, resp); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
