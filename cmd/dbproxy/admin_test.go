package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestAdminEndToEnd runs `dbproxy serve` with an admin listener in front
// of a real PostgreSQL: /metrics counts connections, key cache use, master
// key calls and reloads during a small workload, and /readyz follows the
// master key file and the keystore file going away and coming back.
func TestAdminEndToEnd(t *testing.T) {
	pg := testenv.StartPostgres(t)
	addr, adminAddr := freeAddr(t), freeAddr(t)
	cfgPath := adminConfig(t, adminAddr, catalogListenerYAML("pg", "postgres", addr, pg.Addr(), pg.User, "CATALOG_PASSWORD"))
	logs := serveInBackground(t, cfgPath, func(k string) string {
		if k == "CATALOG_PASSWORD" {
			return pg.Password
		}
		return ""
	})
	a := adminClient{t: t, base: "http://" + adminAddr}
	a.waitReady(200, "ready\n")
	if status, body := a.get("/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", status, body)
	}
	a.waitMetric(`dbproxy_connections_total{listener="pg"}`, 0)

	// A small workload: two sessions, encrypted writes and lookups.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u := url.URL{Scheme: "postgres", User: url.UserPassword(pg.User, pg.Password), Host: addr, Path: "/" + pg.Database, RawQuery: "sslmode=disable"}
	for i := range 2 {
		c, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatalf("connect through serve: %v", err)
		}
		a.waitMetric(`dbproxy_connections_open{listener="pg"}`, 1)
		if i == 0 {
			if _, err := c.Exec(ctx, `CREATE TABLE users (id serial PRIMARY KEY, email bytea, ssn bytea, salary bytea)`); err != nil {
				t.Fatal(err)
			}
		}
		email := fmt.Sprintf("user%d@example.com", i)
		if _, err := c.Exec(ctx, `INSERT INTO users (email, ssn, salary) VALUES ($1, $2, $3)`, email, "123-45-6789", int64(i)); err != nil {
			t.Fatalf("insert: %v", err)
		}
		var ssn string
		if err := c.QueryRow(ctx, `SELECT ssn FROM users WHERE email = $1`, email).Scan(&ssn); err != nil || ssn != "123-45-6789" {
			t.Fatalf("lookup: %q %v", ssn, err)
		}
		c.Close(ctx)
	}
	a.waitMetric(`dbproxy_connections_total{listener="pg"}`, 2)
	a.waitMetric(`dbproxy_connections_open{listener="pg"}`, 0)
	m := a.metrics()
	for _, name := range []string{
		`dbproxy_key_cache_misses_total`,
		`dbproxy_key_cache_hits_total`,
		`dbproxy_master_key_request_duration_seconds_count{op="unwrap",provider="local"}`,
		// Every key use of the sessions' field ciphers: stored values,
		// the WHERE email = $1 lookups and the decrypted ssn.
		`dbproxy_key_operations_total{key="public.users.email",op="encrypt"}`,
		`dbproxy_key_operations_total{key="public.users.email",op="lookup"}`,
		`dbproxy_key_operations_total{key="public.users.ssn",op="decrypt"}`,
	} {
		if v, ok := metricValue(m, name); !ok || v < 1 {
			t.Errorf("%s = %v (present %v), want at least 1", name, v, ok)
		}
	}
	for _, name := range []string{`go_goroutines`, `process_resident_memory_bytes`, `dbproxy_build_info{`} {
		if !strings.Contains(m, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// Reloads (SIGHUP, which serve is listening for) are counted, failed
	// ones too.
	sighup := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	sighup()
	a.waitMetric(`dbproxy_reloads_total{outcome="success"}`, 1)
	a.waitMetric(`dbproxy_config_last_reload_successful`, 1)
	good, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, append(good, "no_such_setting: 1\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	sighup()
	a.waitMetric(`dbproxy_reloads_total{outcome="failure"}`, 1)
	a.waitMetric(`dbproxy_config_last_reload_successful`, 0)
	if err := os.WriteFile(cfgPath, good, 0o600); err != nil {
		t.Fatal(err)
	}

	// Readiness follows the master key file and the keystore file.
	dir := filepath.Dir(cfgPath)
	for _, f := range []struct{ file, check string }{{"master.key", "master_key: "}, {"keys.json", "keystore: "}} {
		path := filepath.Join(dir, f.file)
		if err := os.Rename(path, path+".away"); err != nil {
			t.Fatal(err)
		}
		a.waitReady(503, f.check)
		if err := os.Rename(path+".away", path); err != nil {
			t.Fatal(err)
		}
		a.waitReady(200, "ready\n")
	}
	if !strings.Contains(logs.String(), `"msg":"admin listening"`) {
		t.Errorf("logs are not JSON or lack the admin listener:\n%s", logs.String())
	}
}

// TestAdminReadinessWithAWSKMS: with an AWS KMS master key, /readyz fails
// while KMS is down and passes again when it is back, and the KMS calls
// are timed under provider aws-kms.
func TestAdminReadinessWithAWSKMS(t *testing.T) {
	k := testenv.StartLocalKMS(t)
	k.Setenv(t)
	adminAddr := freeAddr(t)
	cfgPath := writeConfig(t, unreachableWithAdmin(t, adminAddr)+`keys:
  master_key:
`+awsKMSMasterKey(k)+`encryption:
  - table: users
    columns:
      - name: email
        type: text
`)
	serveInBackground(t, cfgPath, func(string) string { return "" })
	a := adminClient{t: t, base: "http://" + adminAddr}
	a.waitReady(200, "ready\n")
	const unwraps = `dbproxy_master_key_request_duration_seconds_count{op="unwrap",provider="aws-kms"}`
	if v, ok := metricValue(a.metrics(), unwraps); !ok || v < 1 {
		t.Errorf("%s = %v (present %v), want at least 1", unwraps, v, ok)
	}
	k.Stop()
	a.waitReady(503, "master_key: ")
	k.Start()
	a.waitReady(200, "ready\n")
}

// TestAdminListenerInUse: serve does not start when its admin address is
// taken, and with log.format json even that failure is a JSON line.
func TestAdminListenerInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfgPath := writeConfig(t, unreachableWithAdmin(t, taken.Addr().String())+`log:
  format: json
`)
	code, out, errs := runCLI(t, nil, "serve", "--config", cfgPath)
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	var last struct{ Level, Msg, Error string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last line of stderr is not JSON: %v\n%s", err, errs)
	}
	if code != 1 || last.Level != "ERROR" || last.Msg != "serve failed" || !strings.Contains(last.Error, "admin listener") ||
		!strings.Contains(last.Error, "address already in use") {
		t.Errorf("exit %d, last line %+v\n%s%s", code, last, out, errs)
	}
}

// adminClient asks serve's admin listener.
type adminClient struct {
	t    *testing.T
	base string
}

func (a adminClient) get(path string) (int, string) {
	a.t.Helper()
	resp, err := http.Get(a.base + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (a adminClient) metrics() string {
	a.t.Helper()
	status, body := a.get("/metrics")
	if status != 200 {
		a.t.Fatalf("/metrics = %d %s", status, body)
	}
	return body
}

// waitReady waits until /readyz answers status with a body containing
// want (readiness results are reused for a second).
func (a adminClient) waitReady(status int, want string) {
	a.t.Helper()
	var got int
	var body string
	for range 100 {
		if got, body = a.get("/readyz"); got == status && strings.Contains(body, want) {
			return
		}
		time.Sleep(50 * time.Millisecond) // waiting for serve and the readiness cache, not asserting a duration
	}
	a.t.Fatalf("/readyz = %d %q, want %d with %q", got, body, status, want)
}

// waitMetric waits until the metric's value is want.
func (a adminClient) waitMetric(name string, want float64) {
	a.t.Helper()
	var v float64
	var ok bool
	for range 100 {
		if v, ok = metricValue(a.metrics(), name); ok && v == want {
			return
		}
		time.Sleep(50 * time.Millisecond) // waiting for the server to count, not asserting a duration
	}
	a.t.Fatalf("%s = %v (present %v), want %v", name, v, ok, want)
}

// metricValue finds the sample of name (with its labels, as exposed) in
// a text exposition.
func metricValue(exposition, name string) (float64, bool) {
	for line := range strings.Lines(exposition) {
		rest, found := strings.CutPrefix(line, name+" ")
		if !found {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// adminConfig writes a config of the given listeners (catalogListenerYAML),
// an admin listener on adminAddr, JSON logs and localConfig's keys and
// rules, and returns its path.
func adminConfig(t *testing.T, adminAddr string, listeners ...string) string {
	return writeConfig(t, "\nlisteners:\n"+strings.Join(listeners, "")+fmt.Sprintf(`admin:
  listen: %s
log:
  format: json
`, adminAddr)+localConfig)
}

// catalogListenerYAML is one entry of a listeners section: listener name
// of protocol on addr in front of upstream without TLS, reading the
// database catalog as user with the password in environment variable
// passwordEnv.
func catalogListenerYAML(name, protocol, addr, upstream, user, passwordEnv string) string {
	return fmt.Sprintf(`  - name: %s
    protocol: %s
    listen: %s
    upstream: %s
    upstream_tls: {mode: disable}
    catalog: {user: %s, password_env: %s}
`, name, protocol, addr, upstream, user, passwordEnv)
}

// unreachableWithAdmin is the YAML of a PostgreSQL listener on a free port
// whose upstream refuses connections, and an admin listener on adminAddr.
func unreachableWithAdmin(t *testing.T, adminAddr string) string {
	return fmt.Sprintf(`
listeners:
  - protocol: postgres
    listen: %s
    upstream: 127.0.0.1:1
admin:
  listen: %s
`, freeAddr(t), adminAddr)
}
