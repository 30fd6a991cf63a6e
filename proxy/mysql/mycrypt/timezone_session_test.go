package mycrypt_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// zoneHooks returns hooks of a MariaDB session with one timestamptz
// column events.at; track negotiates CLIENT_SESSION_TRACK.
func zoneHooks(t *testing.T, track bool) *mysql.SessionHooks {
	t.Helper()
	keys := detKeys(t)
	set := mysqlRules(t, rules.Spec{Table: "events", Column: "at", Key: "det", Mode: rules.ModeDeterministic, Type: value.TypeTimestamptz})
	info := mysql.SessionInfo{Database: "app", Charset: 45, ServerVersion: mariaDB,
		Capabilities: uint64(gomysql.CLIENT_SECURE_CONNECTION)}
	if track {
		info.Capabilities |= uint64(gomysql.CLIENT_SESSION_TRACK)
	}
	return newSession(t, mycrypt.Options{Rules: set, Keys: keys}, info)
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

// fakeZones answers ServerTimeZone and counts the calls.
type fakeZones struct {
	zone, system string
	err          error
	calls        atomic.Int32
}

func (f *fakeZones) ServerTimeZone(context.Context) (string, string, error) {
	f.calls.Add(1)
	return f.zone, f.system, f.err
}

// TestServerTimeZone: sessions start in the server's default time_zone
// when a ZoneSource gives it, so a timestamptz literal means the same
// instant as on the server: 12:00 at +02:00 encrypts exactly as 10:00 in a
// UTC session (deterministic key). A zone the proxy cannot follow refuses
// timestamptz values; a source that fails leaves sessions in UTC.
func TestServerTimeZone(t *testing.T) {
	keys := detKeys(t)
	specs := []rules.Spec{{Table: "events", Column: "at", Key: "det", Mode: rules.ModeDeterministic, Type: value.TypeTimestamptz}}
	forward := func(t *testing.T, src mycrypt.ZoneSource, specs []rules.Spec, sql string) ([]byte, error) {
		t.Helper()
		opts := mycrypt.Options{Rules: mysqlRules(t, specs...), Keys: keys}
		if src != nil {
			opts.Zones = src
		}
		h := newSession(t, opts, mysql.SessionInfo{Database: "app", Charset: 45, ServerVersion: mariaDB})
		var w mysql.Writer
		err := h.Command(&mysql.Exchange{Command: gomysql.COM_QUERY}, query(sql), &w)
		return w.Bytes(), err
	}
	const insert = "INSERT INTO events (at) VALUES ('2024-01-01 %s')"
	utc, err := forward(t, nil, specs, strings.Replace(insert, "%s", "10:00:00", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, zone, system string
		srcErr             error
	}{
		{"offset", "+02:00", "UTC", nil},
		{"named", "Europe/Paris", "UTC", nil}, // CET in January: +01:00, see below
		{"system", "SYSTEM", "Etc/GMT-2", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeZones{zone: tc.zone, system: tc.system}
			local := "12:00:00"
			if tc.zone == "Europe/Paris" {
				local = "11:00:00"
			}
			got, err := forward(t, src, specs, strings.Replace(insert, "%s", local, 1))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(utc) {
				t.Fatalf("%s in %s/%s did not encrypt as 10:00 UTC", local, tc.zone, tc.system)
			}
			if src.calls.Load() != 1 {
				t.Fatalf("ServerTimeZone called %d times, want 1", src.calls.Load())
			}
		})
	}
	t.Run("unknown zone refuses timestamptz", func(t *testing.T) {
		_, err := forward(t, &fakeZones{zone: "SYSTEM", system: "SYSTEM"}, specs, strings.Replace(insert, "%s", "10:00:00", 1))
		var me *mysql.Error
		if !errors.As(err, &me) || !strings.Contains(me.Message, "time_zone") {
			t.Fatalf("got %v, want a refusal naming time_zone", err)
		}
	})
	t.Run("source failing keeps UTC", func(t *testing.T) {
		got, err := forward(t, &fakeZones{err: errors.New("no route")}, specs, strings.Replace(insert, "%s", "10:00:00", 1))
		if err != nil || string(got) != string(utc) {
			t.Fatalf("got %v, want the UTC encryption", err)
		}
	})
	t.Run("not asked without timestamptz columns", func(t *testing.T) {
		src := &fakeZones{zone: "+02:00"}
		textSpecs := []rules.Spec{{Table: "events", Column: "note", Key: "det", Mode: rules.ModeDeterministic, Type: value.TypeText}}
		if _, err := forward(t, src, textSpecs, "INSERT INTO events (note) VALUES ('x')"); err != nil {
			t.Fatal(err)
		}
		if src.calls.Load() != 0 {
			t.Fatalf("ServerTimeZone called %d times for rules without timestamptz", src.calls.Load())
		}
	})
}
