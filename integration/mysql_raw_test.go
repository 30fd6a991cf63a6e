package integration

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testenv"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/packet"
)

// rawConn is a minimal MySQL client on go-mysql's packet.Conn, which checks
// sequence ids and joins 16 MiB continuation packets: an independent peer
// for the commands go-sql-driver never sends.
type rawConn struct {
	c      *packet.Conn
	caps   uint32
	connID uint32
}

const rawDefaultCaps = gomysql.CLIENT_LONG_PASSWORD | gomysql.CLIENT_LONG_FLAG | gomysql.CLIENT_PROTOCOL_41 |
	gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_TRANSACTIONS | gomysql.CLIENT_MULTI_RESULTS |
	gomysql.CLIENT_PS_MULTI_RESULTS | gomysql.CLIENT_PLUGIN_AUTH | gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
	gomysql.CLIENT_CONNECT_WITH_DB | gomysql.CLIENT_MULTI_STATEMENTS | gomysql.CLIENT_LOCAL_FILES |
	gomysql.CLIENT_DEPRECATE_EOF

// rawConnect logs in with mysql_native_password. caps 0 means
// rawDefaultCaps; the flags are masked with the server's.
func rawConnect(t testing.TB, addr, user, password, database string, caps uint32) *rawConn {
	t.Helper()
	if caps == 0 {
		caps = rawDefaultCaps
	}
	return rawLogin(t, addr, user, password, database, caps, 0, true)
}

// rawLogin logs in with mysql_native_password, sending caps (masked with
// the server's if mask is set) and, when caps lack CLIENT_LONG_PASSWORD
// (a MariaDB client), the MariaDB extended flags ext.
func rawLogin(t testing.TB, addr, user, password, database string, caps, ext uint32, mask bool) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	r := &rawConn{c: packet.NewConn(nc)}
	t.Cleanup(func() { _ = nc.Close() })
	hs, err := r.c.ReadPacket()
	if err != nil {
		t.Fatalf("read handshake: %v", err)
	}
	// 10 || version NUL || id || scramble1(8) || 0 || caps_lo || charset || status || caps_hi || len || 10 reserved || scramble2 NUL || plugin
	v := bytes.IndexByte(hs[1:], 0) + 2
	r.connID = binary.LittleEndian.Uint32(hs[v:])
	scramble := append([]byte(nil), hs[v+4:v+12]...)
	pos := v + 13
	serverCaps := uint32(binary.LittleEndian.Uint16(hs[pos:])) | uint32(binary.LittleEndian.Uint16(hs[pos+5:]))<<16
	pos += 18
	scramble = append(scramble, hs[pos:pos+12]...)
	r.caps = caps
	if mask {
		r.caps &= serverCaps | gomysql.CLIENT_LONG_PASSWORD
	}
	auth := gomysql.CalcNativePassword(scramble, []byte(password))
	resp := make([]byte, 4, 128)
	resp = binary.LittleEndian.AppendUint32(resp, r.caps)
	resp = binary.LittleEndian.AppendUint32(resp, 1<<24)
	resp = append(resp, 45) // utf8mb4_general_ci
	resp = append(resp, make([]byte, 19)...)
	resp = binary.LittleEndian.AppendUint32(resp, ext)
	resp = append(resp, user...)
	resp = append(resp, 0, byte(len(auth)))
	resp = append(resp, auth...)
	resp = append(resp, database...)
	resp = append(resp, 0)
	resp = append(resp, "mysql_native_password"...)
	resp = append(resp, 0)
	if err := r.c.WritePacket(resp); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := r.c.ReadPacket()
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		switch p[0] {
		case 0x00:
			return r
		case 0xfe: // switch to mysql_native_password with a new scramble
			name, data, _ := bytes.Cut(p[1:], []byte{0})
			if string(name) != "mysql_native_password" {
				t.Fatalf("server switched to %q", name)
			}
			auth := gomysql.CalcNativePassword(bytes.TrimSuffix(data, []byte{0}), []byte(password))
			if err := r.c.WritePacket(append(make([]byte, 4), auth...)); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("login answered %x", p)
		}
	}
}

// command sends a command (sequence id 0).
// changeUser sends COM_CHANGE_USER to user on database with an empty
// mysql_native_password answer, so that the server asks again
// (AuthSwitchRequest, as often as it likes), answers each scramble with
// password, and returns at the OK.
func (r *rawConn) changeUser(t testing.TB, user, password, database string) {
	t.Helper()
	cu := []byte{gomysql.COM_CHANGE_USER}
	cu = append(cu, user...)
	cu = append(cu, 0, 0) // empty auth response: the server asks
	cu = append(cu, database...)
	cu = append(cu, 0, 45, 0)
	cu = append(cu, "mysql_native_password\x00"...)
	r.command(t, cu)
	for {
		p := r.read(t)
		if p[0] == 0x00 {
			return
		}
		if p[0] != 0xfe {
			t.Fatalf("change user answered %x", p)
		}
		_, data, _ := bytes.Cut(p[1:], []byte{0})
		r.send(t, gomysql.CalcNativePassword(bytes.TrimSuffix(data, []byte{0}), []byte(password)))
	}
}

func (r *rawConn) command(t testing.TB, payload []byte) {
	t.Helper()
	r.c.ResetSequence()
	if err := r.c.WritePacket(append(make([]byte, 4), payload...)); err != nil {
		t.Fatal(err)
	}
}

// send sends a packet continuing the current exchange.
func (r *rawConn) send(t testing.TB, payload []byte) {
	t.Helper()
	if err := r.c.WritePacket(append(make([]byte, 4), payload...)); err != nil {
		t.Fatal(err)
	}
}

func (r *rawConn) writeRaw(t testing.TB, b []byte) {
	t.Helper()
	if _, err := r.c.Conn.Write(b); err != nil {
		t.Fatal(err)
	}
	r.c.ResetSequence()
	r.c.Sequence = 1
}

func (r *rawConn) read(t testing.TB) []byte {
	t.Helper()
	p, err := r.c.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *rawConn) tryRead() ([]byte, error) {
	return r.c.ReadPacket()
}

func (r *rawConn) deprecateEOF() bool { return r.caps&gomysql.CLIENT_DEPRECATE_EOF != 0 }

// expectOK reads an OK packet and returns its status flags.
func (r *rawConn) expectOK(t testing.TB) uint16 {
	t.Helper()
	p := r.read(t)
	if p[0] != 0x00 {
		t.Fatalf("want OK, got %x", p)
	}
	i := 1
	for range 2 {
		_, _, n := gomysql.LengthEncodedInt(p[i:])
		i += n
	}
	return binary.LittleEndian.Uint16(p[i:])
}

// readResultSet reads a result set after its column count and returns the
// rows (raw payloads) and the terminator's status flags.
func (r *rawConn) readResultSet(t testing.TB, first []byte) (cols int, rows [][]byte, status uint16) {
	t.Helper()
	n, _, _ := gomysql.LengthEncodedInt(first)
	for range n {
		r.read(t)
	}
	if !r.deprecateEOF() {
		if p := r.read(t); p[0] != 0xfe {
			t.Fatalf("want EOF after columns, got %x", p)
		}
	}
	for {
		p := r.read(t)
		if p[0] == 0xff {
			t.Fatalf("error in rows: %s", p[9:])
		}
		if p[0] == 0xfe && len(p) < 0xffffff {
			return int(n), rows, terminatorStatus(p, r.deprecateEOF())
		}
		rows = append(rows, p)
	}
}

func terminatorStatus(p []byte, deprecateEOF bool) uint16 {
	if !deprecateEOF {
		return binary.LittleEndian.Uint16(p[3:])
	}
	i := 1
	for range 2 {
		_, _, n := gomysql.LengthEncodedInt(p[i:])
		i += n
	}
	return binary.LittleEndian.Uint16(p[i:])
}

// query runs a text query and returns the first column of each row of its
// single result set.
func (r *rawConn) query(t testing.TB, sql string) []string {
	t.Helper()
	r.command(t, append([]byte{gomysql.COM_QUERY}, sql...))
	p := r.read(t)
	if p[0] == 0xff {
		t.Fatalf("%s: %s", sql, p[9:])
	}
	if p[0] == 0x00 {
		return nil
	}
	_, rows, _ := r.readResultSet(t, p)
	var out []string
	for _, row := range rows {
		v, _, _, _ := gomysql.LengthEncodedString(row)
		out = append(out, string(v))
	}
	return out
}

func errCode(p []byte) int {
	if len(p) < 3 || p[0] != 0xff {
		return -1
	}
	return int(binary.LittleEndian.Uint16(p[1:]))
}

// isClosed reports whether err (from rawConn, which flattens error
// chains) says the connection was closed.
func isClosed(err error) bool {
	return err != nil && (errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "EOF") ||
		strings.Contains(err.Error(), "connection reset"))
}

// prepare prepares sql and returns the statement id and its parameter and
// column counts, reading the definitions.
func (r *rawConn) prepare(t testing.TB, sql string) (id uint32, params, cols int) {
	t.Helper()
	r.command(t, append([]byte{gomysql.COM_STMT_PREPARE}, sql...))
	p := r.read(t)
	if p[0] != 0x00 {
		t.Fatalf("prepare %s: %x", sql, p)
	}
	id = binary.LittleEndian.Uint32(p[1:])
	cols = int(binary.LittleEndian.Uint16(p[5:]))
	params = int(binary.LittleEndian.Uint16(p[7:]))
	for _, n := range []int{params, cols} {
		for range n {
			r.read(t)
		}
		if n > 0 && !r.deprecateEOF() {
			if p := r.read(t); p[0] != 0xfe {
				t.Fatalf("want EOF after definitions, got %x", p)
			}
		}
	}
	return id, params, cols
}

// TestMySQLRawCommands drives commands go-sql-driver never sends, with and
// without CLIENT_DEPRECATE_EOF, checking every answer and that the session
// stays in step after each.
func TestMySQLRawCommands(t *testing.T) {
	db := testenv.StartMariaDB(t)
	for _, checked := range []bool{false, true} {
		t.Run(fmt.Sprintf("checked=%v", checked), func(t *testing.T) {
			var opts myProxyOpts
			ic := &checkInterceptor{}
			if checked {
				opts.Interceptor = ic
				defer ic.verify(t)
			}
			testRawCommands(t, db, startMyProxy(t, db, opts))
		})
	}
}

func testRawCommands(t *testing.T, db *testenv.MariaDB, p *myProxy) {
	for _, caps := range []uint32{rawDefaultCaps, rawDefaultCaps &^ gomysql.CLIENT_DEPRECATE_EOF} {
		t.Run(fmt.Sprintf("deprecate_eof=%v", caps&gomysql.CLIENT_DEPRECATE_EOF != 0), func(t *testing.T) {
			r := rawConnect(t, p.Addr, db.User, db.Password, db.Database, caps)
			r.query(t, `CREATE TABLE IF NOT EXISTS raw_t (id INT PRIMARY KEY, v VARCHAR(20), b BLOB)`)
			r.query(t, `REPLACE INTO raw_t VALUES (1, 'one', NULL), (2, 'two', NULL), (3, 'three', NULL)`)
			check := func(t *testing.T) {
				t.Helper()
				if got := r.query(t, `SELECT 'in step'`); len(got) != 1 || got[0] != "in step" {
					t.Fatalf("session out of step: %q", got)
				}
			}

			t.Run("ping-initdb-statistics-setoption", func(t *testing.T) {
				r.command(t, []byte{gomysql.COM_PING})
				r.expectOK(t)
				r.command(t, append([]byte{gomysql.COM_INIT_DB}, db.Database...))
				r.expectOK(t)
				r.command(t, []byte{gomysql.COM_STATISTICS})
				if s := r.read(t); !bytes.Contains(s, []byte("Uptime")) {
					t.Fatalf("statistics: %q", s)
				}
				r.command(t, []byte{gomysql.COM_SET_OPTION, 0, 0}) // MYSQL_OPTION_MULTI_STATEMENTS_ON
				if s := r.read(t); s[0] != 0xfe && s[0] != 0x00 {
					t.Fatalf("set option: %x", s)
				}
				check(t)
			})
			t.Run("field-list", func(t *testing.T) {
				r.command(t, append([]byte{gomysql.COM_FIELD_LIST}, "raw_t\x00"...))
				n := 0
				for {
					p := r.read(t)
					if p[0] == 0xfe || p[0] == 0xff {
						break
					}
					n++
				}
				if n != 3 {
					t.Fatalf("field list: %d columns", n)
				}
				check(t)
			})
			t.Run("cursor-fetch", func(t *testing.T) {
				id, _, cols := r.prepare(t, `SELECT id, v FROM raw_t ORDER BY id`)
				// COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY.
				exec := []byte{gomysql.COM_STMT_EXECUTE}
				exec = binary.LittleEndian.AppendUint32(exec, id)
				exec = append(exec, gomysql.CURSOR_TYPE_READ_ONLY, 1, 0, 0, 0)
				r.command(t, exec)
				first := r.read(t)
				if n, _, _ := gomysql.LengthEncodedInt(first); int(n) != cols {
					t.Fatalf("execute with cursor: %x", first)
				}
				for range cols {
					r.read(t)
				}
				// MariaDB ends the metadata with an EOF, or with an OK
				// (header 0xfe) under CLIENT_DEPRECATE_EOF.
				if p := r.read(t); p[0] != 0xfe || terminatorStatus(p, r.deprecateEOF())&gomysql.SERVER_STATUS_CURSOR_EXISTS == 0 {
					t.Fatalf("execute with cursor ended with %x", p)
				}
				var got []byte
				for {
					fetch := []byte{gomysql.COM_STMT_FETCH}
					fetch = binary.LittleEndian.AppendUint32(fetch, id)
					fetch = binary.LittleEndian.AppendUint32(fetch, 2)
					r.command(t, fetch)
					var last uint16
					for {
						p := r.read(t)
						if p[0] == 0xfe && len(p) < 0xffffff {
							last = terminatorStatus(p, r.deprecateEOF())
							break
						}
						got = append(got, p[len(p)-1]) // last byte of the VARCHAR
					}
					if last&gomysql.SERVER_STATUS_LAST_ROW_SEND != 0 {
						break
					}
				}
				if string(got) != "eoe" {
					t.Fatalf("fetched rows ending in %q", got)
				}
				closeStmt := binary.LittleEndian.AppendUint32([]byte{gomysql.COM_STMT_CLOSE}, id)
				r.command(t, closeStmt) // no response
				check(t)
			})
			t.Run("long-data-and-reset", func(t *testing.T) {
				id, params, _ := r.prepare(t, `UPDATE raw_t SET b = ? WHERE id = 1`)
				if params != 1 {
					t.Fatalf("%d params", params)
				}
				for _, chunk := range []string{"long ", "data"} {
					ld := binary.LittleEndian.AppendUint32([]byte{gomysql.COM_STMT_SEND_LONG_DATA}, id)
					ld = append(ld, 0, 0) // parameter 0
					r.command(t, append(ld, chunk...))
				}
				exec := binary.LittleEndian.AppendUint32([]byte{gomysql.COM_STMT_EXECUTE}, id)
				exec = append(exec, 0, 1, 0, 0, 0, 0, 1, gomysql.MYSQL_TYPE_BLOB, 0) // null bitmap, new params bound, type
				r.command(t, exec)
				r.expectOK(t)
				if got := r.query(t, `SELECT b FROM raw_t WHERE id = 1`); len(got) != 1 || got[0] != "long data" {
					t.Fatalf("long data stored as %q", got)
				}
				r.command(t, binary.LittleEndian.AppendUint32([]byte{gomysql.COM_STMT_RESET}, id))
				r.expectOK(t)
				check(t)
			})
			t.Run("reset-connection", func(t *testing.T) {
				r.query(t, `SET @v = 'kept?'`)
				r.command(t, []byte{gomysql.COM_RESET_CONNECTION})
				r.expectOK(t)
				if got := r.query(t, `SELECT COALESCE(@v, 'reset')`); len(got) != 1 || got[0] != "reset" {
					t.Fatalf("after COM_RESET_CONNECTION: %q", got)
				}
			})
			t.Run("change-user", func(t *testing.T) {
				// COM_CHANGE_USER with a native password answered to the
				// handshake's scramble is refused or switched by the server:
				// send an empty answer so the server asks again
				// (AuthSwitchRequest), then answer its new scramble.
				r.changeUser(t, db.User, db.Password, db.Database)
				if got := r.query(t, `SELECT CURRENT_USER()`); len(got) != 1 || !bytes.HasPrefix([]byte(got[0]), []byte(db.User+"@")) {
					t.Fatalf("after COM_CHANGE_USER: %q", got)
				}
			})
			t.Run("unknown-command", func(t *testing.T) {
				r.command(t, []byte{0xee})
				if p := r.read(t); errCode(p) != 1047 {
					t.Fatalf("unknown command answered %x", p)
				}
				check(t)
			})
			t.Run("multi-result-infile-refused", func(t *testing.T) {
				// LOCAL INFILE: the server asks, the client sends an empty
				// packet (no data), the server answers OK.
				r.command(t, append([]byte{gomysql.COM_QUERY}, "LOAD DATA LOCAL INFILE '/nonexistent' INTO TABLE raw_t"...))
				p := r.read(t)
				if p[0] != 0xfb {
					t.Fatalf("LOAD DATA LOCAL answered %x", p)
				}
				r.send(t, nil)
				if p := r.read(t); p[0] != 0x00 && p[0] != 0xff {
					t.Fatalf("after empty infile data: %x", p)
				}
				check(t)
			})
			t.Run("pipelined", func(t *testing.T) {
				// Three commands in one write; the answers come in order.
				var out []byte
				for _, q := range []string{"SELECT 'a'", "SELECT 'b'", "SELECT 'c'"} {
					payload := append([]byte{gomysql.COM_QUERY}, q...)
					out = append(out, byte(len(payload)), 0, 0, 0)
					out = append(out, payload...)
				}
				r.writeRaw(t, out)
				for _, want := range []string{"a", "b", "c"} {
					r.c.Sequence = 1
					first := r.read(t)
					_, rows, _ := r.readResultSet(t, first)
					if v, _, _, _ := gomysql.LengthEncodedString(rows[0]); string(v) != want {
						t.Fatalf("pipelined answer %q, want %q", v, want)
					}
				}
				check(t)
			})
			t.Run("large-query", func(t *testing.T) {
				// A COM_QUERY above 16 MiB arrives in two packets.
				admin := adminDB(t, db)
				if _, err := admin.ExecContext(testCtx(t), `SET GLOBAL max_allowed_packet = 64*1024*1024`); err != nil {
					t.Fatal(err)
				}
				r2 := rawConnect(t, p.Addr, db.User, db.Password, db.Database, caps)
				q := "SELECT LENGTH('" + string(bytes.Repeat([]byte("x"), 1<<24)) + "')"
				if got := r2.query(t, q); len(got) != 1 || got[0] != fmt.Sprint(1<<24) {
					t.Fatalf("large query: %q", got)
				}
			})
		})
	}
}

// TestMySQLUnofferedCapabilities: a client that sets capabilities the proxy
// did not offer (mysql2 sets CLIENT_QUERY_ATTRIBUTES whatever the server
// says) logs in, as on the server, which ignores them; they are masked
// upstream, so the session runs without them (no compression, full result
// metadata, COM_QUERY without attributes), through the relay alone and
// through the encryption layer.
func TestMySQLUnofferedCapabilities(t *testing.T) {
	db := testenv.StartMariaDB(t)
	const mysqlOnly = gomysql.CLIENT_QUERY_ATTRIBUTES | gomysql.CLIENT_OPTIONAL_RESULTSET_METADATA |
		gomysql.CLIENT_COMPRESS | gomysql.CLIENT_ZSTD_COMPRESSION_ALGORITHM | gomysql.MULTI_FACTOR_AUTHENTICATION
	// MariaDB progress reports, COM_MULTI, bulk operations, metadata
	// caching, bulk unit results.
	const mariaExt = uint32(1<<0 | 1<<1 | 1<<2 | 1<<4 | 1<<5)
	cases := []struct {
		name      string
		caps, ext uint32
	}{
		{"mysql client", rawDefaultCaps | mysqlOnly, 0},
		{"mariadb client", (rawDefaultCaps | mysqlOnly) &^ gomysql.CLIENT_LONG_PASSWORD, mariaExt},
	}
	for _, checked := range []bool{false, true} {
		var opts myProxyOpts
		if checked {
			opts.Interceptor = &checkInterceptor{}
		}
		p := startMyProxy(t, db, opts)
		for _, tc := range cases {
			t.Run(fmt.Sprintf("checked=%v/%s", checked, tc.name), func(t *testing.T) {
				r := rawLogin(t, p.Addr, db.User, db.Password, db.Database, tc.caps, tc.ext, false)
				// Unmasked, the raw client would expect no column
				// definitions only if the server sent the metadata flag;
				// query reads them, so a result set without them (or a
				// compressed one) fails here.
				r.caps &^= mysqlOnly
				if got := r.query(t, `SELECT CONCAT('in', ' step')`); len(got) != 1 || got[0] != "in step" {
					t.Fatalf("query: %q", got)
				}
				if got := r.query(t, `SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'COMPRESSION'`); len(got) != 1 || got[0] != "OFF" {
					t.Fatalf("session compression %q, want OFF", got)
				}
				id, _, _ := r.prepare(t, `SELECT ?`)
				exec := []byte{gomysql.COM_STMT_EXECUTE}
				exec = binary.LittleEndian.AppendUint32(exec, id)
				exec = append(exec, 0, 1, 0, 0, 0, 0, 1, gomysql.MYSQL_TYPE_LONGLONG, 0)
				exec = binary.LittleEndian.AppendUint64(exec, 42)
				r.command(t, exec)
				first := r.read(t)
				if first[0] == 0xff {
					t.Fatalf("execute: %s", first[9:])
				}
				if _, rows, _ := r.readResultSet(t, first); len(rows) != 1 {
					t.Fatalf("execute: %d rows", len(rows))
				}
			})
		}
	}
}
