package testenv_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

func TestPostgres(t *testing.T) {
	tests := []struct {
		name         string
		opts         testenv.PGOptions
		wantAuth     bool   // a wrong password is rejected
		wantVerifier string // prefix of the stored password verifier
		wantSSL      bool   // DSN() connects over TLS
		plainRefused bool   // sslmode=disable is refused
	}{
		{name: "default", wantVerifier: "SCRAM-SHA-256$"},
		{name: "md5", opts: testenv.PGOptions{Auth: "md5"}, wantAuth: true, wantVerifier: "md5"},
		{name: "scram", opts: testenv.PGOptions{Auth: "scram-sha-256"}, wantAuth: true, wantVerifier: "SCRAM-SHA-256$"},
		{name: "password", opts: testenv.PGOptions{Auth: "password"}, wantAuth: true, wantVerifier: "SCRAM-SHA-256$"},
		{name: "tls-scram", opts: testenv.PGOptions{Auth: "scram-sha-256", TLS: true}, wantAuth: true, wantVerifier: "SCRAM-SHA-256$", wantSSL: true},
		{name: "require-tls", opts: testenv.PGOptions{Auth: "md5", RequireTLS: true}, wantAuth: true, wantVerifier: "md5", wantSSL: true, plainRefused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			p := testenv.StartPostgres(t, tt.opts)
			t.Logf("StartPostgres(%+v) took %v (cold when first for these options)", tt.opts, time.Since(start))
			if p.Host != "127.0.0.1" || p.Port == 5432 || p.Port == 0 {
				t.Fatalf("server at %s, want 127.0.0.1 and a private port", p.Addr())
			}
			if p.Addr() != "127.0.0.1:"+strconv.Itoa(p.Port) {
				t.Errorf("Addr() = %q", p.Addr())
			}
			if !strings.HasPrefix(p.DataDir, "/tmp/") || p.SocketDir == "" {
				t.Errorf("DataDir %q, SocketDir %q", p.DataDir, p.SocketDir)
			}
			ctx := context.Background()
			conn := testenv.ConnectPG(t, p.DSN())
			var one int
			var db, user string
			var ssl bool
			err := conn.QueryRow(ctx, `SELECT 1, current_database(), current_user,
				(SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())`).Scan(&one, &db, &user, &ssl)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			if one != 1 || db != p.Database || user != p.User {
				t.Errorf("got (%d, %q, %q), want (1, %q, %q)", one, db, user, p.Database, p.User)
			}
			if ssl != tt.wantSSL {
				t.Errorf("ssl = %t, want %t", ssl, tt.wantSSL)
			}

			var verifier string
			super := testenv.ConnectPG(t, p.Superuser().DSN())
			if err := super.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", p.User).Scan(&verifier); err != nil {
				t.Fatalf("read verifier: %v", err)
			}
			if !strings.HasPrefix(verifier, tt.wantVerifier) {
				t.Errorf("stored verifier starts %.14q, want prefix %q", verifier, tt.wantVerifier)
			}

			wrong := *p
			wrong.Password = "wrong-password"
			c, err := pgx.Connect(ctx, wrong.DSN())
			if tt.wantAuth {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
					t.Errorf("wrong password: err = %v, want SQLSTATE 28P01", err)
				}
			} else if err != nil {
				t.Errorf("trust login with a wrong password failed: %v", err)
			}
			if c != nil {
				c.Close(ctx)
			}

			c, err = pgx.Connect(ctx, p.ConnString("disable"))
			if tt.plainRefused {
				if err == nil {
					t.Error("plain TCP login accepted on a RequireTLS server")
				}
			} else if err != nil {
				t.Errorf("plain TCP login: %v", err)
			}
			if c != nil {
				c.Close(ctx)
			}
		})
	}
}

func TestPostgresSharedServer(t *testing.T) {
	a := testenv.StartPostgres(t)
	b := testenv.StartPostgres(t)
	other := testenv.StartPostgres(t, testenv.PGOptions{Auth: "md5"})
	if a.Port != b.Port || a.DataDir != b.DataDir {
		t.Errorf("equal options got two servers: %s (%s) and %s (%s)", a.Addr(), a.DataDir, b.Addr(), b.DataDir)
	}
	if a.Database == b.Database || a.User == b.User {
		t.Errorf("two calls share database %q / user %q", a.Database, a.User)
	}
	if other.Port == a.Port {
		t.Errorf("md5 and trust options share server %s", a.Addr())
	}
	ctx := context.Background()
	for _, p := range []*testenv.Postgres{a, b} {
		conn := testenv.ConnectPG(t, p.DSN())
		if _, err := conn.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
			t.Errorf("%s: create table: %v", p.Database, err)
		}
	}
}

func TestPostgresSuperuser(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx := context.Background()
	plain := testenv.StartPostgres(t, testenv.PGOptions{NoSuperuser: true})
	if plain.Port != p.Port {
		t.Errorf("NoSuperuser got another server: %d vs %d", plain.Port, p.Port)
	}
	for _, tc := range []struct {
		name, dsn, wantUser, wantDB string
		wantSuper                   bool
	}{
		{"role", p.DSN(), p.User, p.Database, true},
		{"superuser", p.Superuser().DSN(), "postgres", p.Database, true},
		{"no-superuser", plain.DSN(), plain.User, plain.Database, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := testenv.ConnectPG(t, tc.dsn)
			var user, db string
			var super bool
			err := conn.QueryRow(ctx, "SELECT current_user, current_database(), rolsuper FROM pg_roles WHERE rolname = current_user").
				Scan(&user, &db, &super)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			if user != tc.wantUser || db != tc.wantDB || super != tc.wantSuper {
				t.Errorf("got user %q db %q super %t, want %q %q %t", user, db, super, tc.wantUser, tc.wantDB, tc.wantSuper)
			}
			if _, err := conn.Exec(ctx, "CREATE TABLE t_"+tc.name[:2]+" (id int)"); err != nil {
				t.Errorf("create table in own database %s: %v", db, err)
			}
		})
	}
}

func TestPostgresCleanupDropsDatabase(t *testing.T) {
	var inner *testenv.Postgres
	t.Run("inner", func(t *testing.T) { inner = testenv.StartPostgres(t) })
	outer := testenv.StartPostgres(t)
	if outer.Port != inner.Port {
		t.Fatalf("not the shared server: %d vs %d", outer.Port, inner.Port)
	}
	conn := testenv.ConnectPG(t, outer.Superuser().DSN())
	var dbs, roles int
	err := conn.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM pg_database WHERE datname = $1),
		(SELECT count(*) FROM pg_roles WHERE rolname = $2)`, inner.Database, inner.User).Scan(&dbs, &roles)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if dbs != 0 || roles != 0 {
		t.Errorf("after cleanup: %d databases %q, %d roles %q; want none", dbs, inner.Database, roles, inner.User)
	}
}

// server is what the external-DSN tests compare of two servers.
type server struct {
	external  bool
	port      int
	database  string
	addr      string
	superuser func() string // the superuser's DSN
}

func pgServer(p *testenv.Postgres) server {
	return server{p.External, p.Port, p.Database, p.Addr(), func() string { return p.Superuser().DSN() }}
}

func myServer(m *testenv.MariaDB) server {
	return server{m.External, m.Port, m.Database, m.Addr(), func() string { return m.Superuser().DSN() }}
}

// startExternal starts a server, names its superuser's DSN in the
// environment variable env and starts again: that must give a new database
// on the same server (external), which it returns.
func startExternal[S any](t *testing.T, env string, start func(testing.TB) S, info func(S) server) S {
	t.Helper()
	admin := info(start(t))
	t.Setenv(env, admin.superuser())
	s := start(t)
	if got := info(s); !got.external || got.port != admin.port || got.database == admin.database {
		t.Fatalf("got %+v, want a new database on %s", s, admin.addr)
	}
	return s
}

func TestPostgresExternalDSN(t *testing.T) {
	p := startExternal(t, testenv.EnvPostgresDSN, func(t testing.TB) *testenv.Postgres { return testenv.StartPostgres(t) }, pgServer)
	conn := testenv.ConnectPG(t, p.DSN())
	var db string
	if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&db); err != nil || db != p.Database {
		t.Fatalf("current_database() = %q, %v; want %q", db, err, p.Database)
	}
}

// fatalRecorder is a testing.TB whose Fatal records the message and ends
// the goroutine, so a harness failure can be asserted on.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatal(args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprint(args...)
	r.mu.Unlock()
	runtime.Goexit()
}
func (r *fatalRecorder) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }

func TestMissingServerFailsWithHint(t *testing.T) {
	t.Setenv(testenv.EnvPostgresDSN, "")
	t.Setenv(testenv.EnvPostgresBinDir, t.TempDir())
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testenv.StartPostgres(rec, testenv.PGOptions{Dedicated: true})
	}()
	<-done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !strings.Contains(rec.msg, "apt-get install postgresql mariadb-server") {
		t.Errorf("failure message %q lacks the install hint", rec.msg)
	}
}

func TestMariaDB(t *testing.T) {
	start := time.Now()
	m := testenv.StartMariaDB(t)
	t.Logf("StartMariaDB took %v (cold when first)", time.Since(start))
	other := testenv.StartMariaDB(t)
	if m.Host != "127.0.0.1" || m.Port == 3306 || m.Port == 0 {
		t.Fatalf("server at %s, want 127.0.0.1 and a private port", m.Addr())
	}
	if other.Port != m.Port || other.Database == m.Database || other.User == m.User {
		t.Errorf("second call: %s db %q user %q; first: %s db %q user %q", other.Addr(), other.Database, other.User, m.Addr(), m.Database, m.User)
	}
	want := fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/%s", m.User, m.Password, m.Port, m.Database)
	if m.DSN() != want {
		t.Errorf("DSN() = %q, want %q", m.DSN(), want)
	}
	ctx := context.Background()
	db := openMySQL(t, m.DSN())
	var one int
	var cur, user string
	if err := db.QueryRowContext(ctx, "SELECT 1, DATABASE(), CURRENT_USER()").Scan(&one, &cur, &user); err != nil {
		t.Fatalf("query: %v", err)
	}
	if one != 1 || cur != m.Database || !strings.HasPrefix(user, m.User+"@") {
		t.Errorf("got (%d, %q, %q), want (1, %q, %s@...)", one, cur, user, m.Database, m.User)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (id INT PRIMARY KEY, v VARBINARY(64))"); err != nil {
		t.Errorf("create table: %v", err)
	}
	// Privileges are per database: the other test's user cannot read it.
	odb := openMySQL(t, other.DSN())
	if _, err := odb.ExecContext(ctx, "SELECT * FROM `"+m.Database+"`.t"); err == nil {
		t.Error("user of another database read this one")
	}
	wrong := *m
	wrong.Password = "wrong"
	if err := openMySQL(t, wrong.DSN()).PingContext(ctx); err == nil {
		t.Error("wrong password accepted")
	}
	root := openMySQL(t, m.Superuser().DSN())
	if err := root.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&one); err != nil || one != 0 {
		t.Errorf("superuser count: %d, %v", one, err)
	}
}

func TestMariaDBExternalDSN(t *testing.T) {
	m := startExternal(t, testenv.EnvMySQLDSN, func(t testing.TB) *testenv.MariaDB { return testenv.StartMariaDB(t) }, myServer)
	var cur string
	if err := openMySQL(t, m.DSN()).QueryRow("SELECT DATABASE()").Scan(&cur); err != nil || cur != m.Database {
		t.Fatalf("DATABASE() = %q, %v; want %q", cur, err, m.Database)
	}
}

func openMySQL(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// kmsCall posts one KMS JSON request and decodes the answer.
func kmsCall(endpoint, op string, req map[string]any) (int, map[string]any, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, nil, err
	}
	hreq, err := http.NewRequest(http.MethodPost, endpoint+"/", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	hreq.Header.Set("Content-Type", "application/x-amz-json-1.1")
	hreq.Header.Set("X-Amz-Target", "TrentService."+op)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(hreq)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("decode %q: %w", raw, err)
	}
	return resp.StatusCode, out, nil
}

func TestLocalKMS(t *testing.T) {
	start := time.Now()
	k := testenv.StartLocalKMS(t)
	t.Logf("StartLocalKMS took %v", time.Since(start))
	if !strings.HasPrefix(k.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("Endpoint = %q", k.Endpoint)
	}

	code, out, err := kmsCall(k.Endpoint, "ListKeys", map[string]any{})
	if err != nil || code != http.StatusOK {
		t.Fatalf("ListKeys: %d, %v", code, err)
	}
	if !strings.Contains(fmt.Sprint(out["Keys"]), k.KeyID) {
		t.Errorf("ListKeys = %v, want key %s", out, k.KeyID)
	}

	// local-kms binds all interfaces of its own namespace only.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(k.RawPort)), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("raw local-kms port %d is reachable from the test's network namespace", k.RawPort)
	}

	plaintext := []byte("testenv plaintext")
	code, out, err = kmsCall(k.Endpoint, "Encrypt", map[string]any{
		"KeyId":     k.Alias,
		"Plaintext": base64.StdEncoding.EncodeToString(plaintext),
	})
	if err != nil || code != http.StatusOK {
		t.Fatalf("Encrypt: %d, %v, %v", code, out, err)
	}
	blob, _ := out["CiphertextBlob"].(string)
	if blob == "" || out["KeyId"] != k.KeyARN {
		t.Fatalf("Encrypt answer %v, want a blob under %s", out, k.KeyARN)
	}

	k.Stop()
	if _, _, err := kmsCall(k.Endpoint, "ListKeys", map[string]any{}); err == nil {
		t.Fatal("request succeeded while local-kms was stopped")
	}
	k.Stop() // idempotent

	k.Start()
	code, out, err = kmsCall(k.Endpoint, "Decrypt", map[string]any{"CiphertextBlob": blob})
	if err != nil || code != http.StatusOK {
		t.Fatalf("Decrypt after restart: %d, %v, %v", code, out, err)
	}
	got, _ := base64.StdEncoding.DecodeString(fmt.Sprint(out["Plaintext"]))
	if !bytes.Equal(got, plaintext) {
		t.Errorf("Decrypt after restart = %q, want %q", got, plaintext)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(k.RawPort)), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("raw local-kms port %d reachable after restart", k.RawPort)
	}
}

func TestLocalKMSInstancesAreSeparate(t *testing.T) {
	a := testenv.StartLocalKMS(t)
	b := testenv.StartLocalKMS(t)
	if a.Endpoint == b.Endpoint || a.KeyID == b.KeyID {
		t.Fatalf("two calls share endpoint %s or key %s", a.Endpoint, a.KeyID)
	}
	a.Stop()
	if code, _, err := kmsCall(b.Endpoint, "ListKeys", map[string]any{}); err != nil || code != http.StatusOK {
		t.Errorf("b after stopping a: %d, %v", code, err)
	}
}

func TestGenerateCert(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testenv.GenerateCert(t, dir, "localhost", "127.0.0.1", "db.test")
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, st.Mode())
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA file holds no certificate")
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load pair: %v", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	for _, tc := range []struct {
		serverName string
		wantErr    bool
	}{
		{"localhost", false},
		{"127.0.0.1", false},
		{"db.test", false},
		{"example.com", true},
	} {
		t.Run(tc.serverName, func(t *testing.T) {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: tc.serverName})
			if c != nil {
				c.Close()
			}
			if (err != nil) != tc.wantErr {
				t.Errorf("handshake as %s: err = %v, wantErr %t", tc.serverName, err, tc.wantErr)
			}
		})
	}
}

// Shared servers must not leave goroutines behind for tests that check for
// leaks with goleak.
func TestSharedServersLeaveNoGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	// Registered first, so it runs after every other cleanup of this test.
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	p := testenv.StartPostgres(t)
	m := testenv.StartMariaDB(t)
	testenv.ConnectPG(t, p.DSN()).Close(context.Background())
	if err := openMySQL(t, m.DSN()).Ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// Per-call cost on a running shared server: create role and database (the
// drops run at cleanup, outside the timing). Run with a small -benchtime,
// e.g. -benchtime=20x: every iteration leaves a database until the end.
func BenchmarkStartPostgresWarm(b *testing.B) {
	testenv.StartPostgres(b) // start the shared server outside the loop
	for b.Loop() {
		testenv.StartPostgres(b)
	}
}

func BenchmarkStartMariaDBWarm(b *testing.B) {
	testenv.StartMariaDB(b)
	for b.Loop() {
		testenv.StartMariaDB(b)
	}
}
