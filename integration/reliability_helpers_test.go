package integration

// Helpers of the reliability suite (reliability_test.go): the real dbproxy
// binary as a child process, /proc readings of it, and the report table.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testlog"
	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// Environment of the reliability suite.
const (
	// envReliability=1 runs the long suite (make reliability).
	envReliability = "DBPROXY_RELIABILITY"
	// envReliabilityReport names a file the suite writes its tables to.
	envReliabilityReport = "DBPROXY_RELIABILITY_REPORT"
)

func reliabilityLong() bool { return os.Getenv(envReliability) == "1" }

// buildDBProxy builds cmd/dbproxy into a directory of the test.
func buildDBProxy(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dbproxy")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/dbproxy/dbproxy/cmd/dbproxy").CombinedOutput()
	if err != nil {
		t.Fatalf("build cmd/dbproxy: %v\n%s", err, out)
	}
	return bin
}

// freeListenAddr returns 127.0.0.1:<port> with a port that was free.
func freeListenAddr(t testing.TB) string {
	t.Helper()
	port, err := freeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// listenerYAML is one listener of a dbproxy configuration, with TLS to its
// upstream off. catalogUser, when set, is its catalog login, whose password
// dbproxy reads from the environment variable passwordEnv.
type listenerYAML struct {
	name, protocol, listen, upstream string
	catalogUser, passwordEnv         string
}

// listenersYAML is the listeners: section of a dbproxy configuration.
func listenersYAML(ls ...listenerYAML) string {
	var b strings.Builder
	b.WriteString("listeners:\n")
	for _, l := range ls {
		if l.name != "" {
			fmt.Fprintf(&b, "  - name: %s\n    protocol: %s\n", l.name, l.protocol)
		} else {
			fmt.Fprintf(&b, "  - protocol: %s\n", l.protocol)
		}
		fmt.Fprintf(&b, "    listen: %s\n    upstream: %s\n    upstream_tls:\n      mode: disable\n", l.listen, l.upstream)
		if l.catalogUser != "" {
			fmt.Fprintf(&b, "    catalog:\n      user: %s\n      password_env: %s\n", l.catalogUser, l.passwordEnv)
		}
	}
	return b.String()
}

// localKeysYAML is the keys: section of a dbproxy configuration with a
// local master key and a file store, both in dbproxy's directory.
const localKeysYAML = `keys:
  master_key:
    provider: local
    file: master.key
  store:
    type: file
    path: keys.json
`

// dbproxyProc is `dbproxy serve` running as a child process.
type dbproxyProc struct {
	bin     string
	dir     string // holds the config, and the keys when the config names relative paths
	cfgPath string
	env     []string // added to the test's environment
	listens []string // addresses to wait for after a start
	logs    *testlog.Buffer
	cmd     *exec.Cmd
	exited  chan error
}

// newDBProxy writes cfg as dir/dbproxy.yaml (dir "" means a fresh directory
// of the test; keys are created there by keysInit); start then runs
// `dbproxy serve` and waits until every listen address accepts
// connections. It is killed when the test ends (a test that wants a clean
// exit calls stop); its logs are printed if the test failed.
func newDBProxy(t testing.TB, bin, dir, cfg string, env []string, listens ...string) *dbproxyProc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	d := &dbproxyProc{bin: bin, dir: dir, cfgPath: filepath.Join(dir, "dbproxy.yaml"), env: env, listens: listens, logs: &testlog.Buffer{}}
	d.writeConfig(t, cfg)
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("dbproxy logs (tail):\n%s", tailLines(d.logs.String(), 60))
		}
	})
	return d
}

func (d *dbproxyProc) writeConfig(t testing.TB, cfg string) {
	t.Helper()
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// keysInit runs `dbproxy keys init` on the current config.
func (d *dbproxyProc) keysInit(t testing.TB) {
	t.Helper()
	cmd := exec.Command(d.bin, "keys", "init", "--config", d.cfgPath)
	cmd.Env = append(os.Environ(), d.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dbproxy keys init: %v\n%s", err, out)
	}
}

// start launches `dbproxy serve` and waits for its listeners.
func (d *dbproxyProc) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(d.bin, "serve", "--config", d.cfgPath)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.cmd, d.exited = cmd, make(chan error, 1)
	go func(exited chan<- error) { exited <- cmd.Wait() }(d.exited)
	for _, addr := range d.listens {
		waitFor(t, "dbproxy to listen on "+addr, func() bool {
			c, err := dialTimeout(addr, time.Second)
			if err == nil {
				_ = c.Close()
			}
			return err == nil
		})
	}
}

func (d *dbproxyProc) pid() int { return d.cmd.Process.Pid }

func (d *dbproxyProc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal dbproxy: %v", err)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *dbproxyProc) stop(t testing.TB) {
	t.Helper()
	d.signal(t, syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("dbproxy exit after SIGTERM: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("dbproxy still running a minute after SIGTERM")
	}
	d.cmd = nil
}

// stopAtCleanup makes the end of the test stop dbproxy as stop does,
// failing the test unless it exits cleanly after SIGTERM.
func (d *dbproxyProc) stopAtCleanup(t testing.TB) {
	t.Cleanup(func() {
		if d.cmd != nil {
			d.stop(t)
		}
	})
}

// reload writes cfg, sends SIGHUP and waits for dbproxy to log the outcome
// (one msg="reload… line a reload); it returns that log line, and fails the
// test if the reload failed.
func (d *dbproxyProc) reload(t testing.TB, cfg string) string {
	t.Helper()
	reloadLines := func() []string {
		var lines []string
		for _, l := range strings.Split(d.logs.String(), "\n") {
			if strings.Contains(l, `msg="reload`) {
				lines = append(lines, l)
			}
		}
		return lines
	}
	n := len(reloadLines()) + 1
	d.writeConfig(t, cfg)
	d.signal(t, syscall.SIGHUP)
	var line string
	waitFor(t, fmt.Sprintf("reload #%d to be logged", n), func() bool {
		lines := reloadLines()
		if len(lines) < n {
			return false
		}
		line = lines[n-1]
		return true
	})
	if strings.Contains(line, "reload failed") {
		t.Fatalf("reload #%d failed: %s", n, line)
	}
	return line
}

func (d *dbproxyProc) kill() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
	d.cmd = nil
}

// procRSSKB is VmRSS of pid in KiB.
func procRSSKB(t testing.TB, pid int) int64 {
	t.Helper()
	n, err := procRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n >> 10
}

// procRSS is VmRSS of pid in bytes; it does not need a testing.TB, so that
// a sampling goroutine can call it.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// peakRSS samples the RSS of pid every 10 ms while f runs and returns the
// highest value seen in bytes (including one sample after f).
func peakRSS(pid int, f func()) int64 {
	stop := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var max int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if n, err := procRSS(pid); err == nil && n > max {
				max = n
			}
			select {
			case <-stop:
				if n, err := procRSS(pid); err == nil && n > max {
					max = n
				}
				peak <- max
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	return <-peak
}

// procFDs is the number of open file descriptors of pid.
func procFDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// errKind names the kind of a client-visible error for the report:
// the SQLSTATE or MySQL error number when the server (or proxy) sent one,
// else what happened to the connection.
func errKind(err error) string {
	var pgErr *pgconn.PgError
	var myErr *driver.MySQLError
	var ne net.Error
	switch {
	case errors.As(err, &pgErr):
		return "SQLSTATE " + pgErr.Code
	case errors.As(err, &myErr):
		return "MySQL " + strconv.Itoa(int(myErr.Number))
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, driver.ErrInvalidConn),
		errors.Is(err, driver.ErrBusyBuffer): // the driver's word for a connection the server just ended
		return "connection closed"
	}
	msg := err.Error()
	for _, k := range []string{"refused", "reset", "broken pipe", "EOF", "closed", "timeout"} {
		if strings.Contains(msg, k) {
			return k
		}
	}
	return "other"
}

// kindCounts formats error counts by kind: "reset 3, SQLSTATE 57P01 1".
func kindCounts(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	kinds := make([]string, 0, len(m))
	total := 0
	for k, n := range m {
		kinds = append(kinds, k)
		total += n
	}
	sort.Slice(kinds, func(i, j int) bool {
		return m[kinds[i]] > m[kinds[j]] || m[kinds[i]] == m[kinds[j]] && kinds[i] < kinds[j]
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// reportTable logs a markdown table and appends it to the report file
// when DBPROXY_RELIABILITY_REPORT is set.
func reportTable(t testing.TB, title string, header []string, rows [][]string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n| %s |\n|%s\n", title, strings.Join(header, " | "), strings.Repeat("---|", len(header)))
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r, " | "))
	}
	b.WriteString("\n")
	t.Logf("\n%s", b.String())
	path := os.Getenv(envReliabilityReport)
	if path == "" {
		return
	}
	if !filepath.IsAbs(path) {
		// go test runs in the package directory; the Makefile names the
		// file relative to the repository root.
		path = filepath.Join("..", path)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Errorf("report: %v", err)
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fmtDuration(d time.Duration) string {
	if d < 0 {
		return "not recovered"
	}
	return d.Round(time.Millisecond).String()
}
