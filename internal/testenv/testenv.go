package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Environment variables read by the harness.
const (
	// EnvPostgresDSN names an existing PostgreSQL server by an admin DSN
	// (postgres://admin:pw@host:port/postgres?sslmode=...). When set, no
	// server is started: each StartPostgres creates a database and role on it.
	EnvPostgresDSN = "DBPROXY_TEST_PG_DSN"
	// EnvMySQLDSN names an existing MySQL/MariaDB server by an admin DSN in
	// go-sql-driver format (root:pw@tcp(host:port)/).
	EnvMySQLDSN = "DBPROXY_TEST_MYSQL_DSN"
	// EnvPostgresBinDir overrides where initdb and postgres are looked up.
	EnvPostgresBinDir = "DBPROXY_TEST_PG_BINDIR"
	// EnvLocalKMS names a local-kms binary to use instead of building the
	// pinned version into the user cache directory.
	EnvLocalKMS = "DBPROXY_TEST_LOCAL_KMS"
	// EnvTmpRoot overrides the root of the harness's temporary directories
	// (default /tmp). Every component of it must be traversable by the
	// postgres system user.
	EnvTmpRoot = "DBPROXY_TEST_TMPDIR"
)

// installHint ends every "no server available" failure.
const installHint = "install the servers with `apt-get install postgresql mariadb-server`, " +
	"or name existing ones with " + EnvPostgresDSN + " / " + EnvMySQLDSN

// mainCalled records whether the test binary runs under Main. Without it
// there is no hook at process exit, so servers are started per test and
// torn down by t.Cleanup instead of being shared.
var mainCalled atomic.Bool

// servers is the process-wide registry of shared servers. It is the one
// deliberate piece of global mutable state in this package: sharing a server
// between the tests of one binary is the point of it (see doc.go).
var servers = &registry{entries: map[string]*entry{}}

// Main runs the tests of a package and then stops every server shared
// between them. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// It does not return.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	servers.stopAll()
	removeProcessDir()
	os.Exit(code)
}

// entry is one lazily started shared resource.
type entry struct {
	once  sync.Once
	value any
	stop  func()
	err   error
}

type registry struct {
	mu      sync.Mutex
	entries map[string]*entry
	order   []*entry
	stopped bool
}

var errRegistryStopped = errors.New("testenv: shared servers already stopped (test still running after Main's m.Run returned)")

// get returns the resource registered under key, starting it with start on
// first use. Concurrent callers wait for the first one. A failed start is
// remembered: every later caller gets the same error.
func (r *registry) get(key string, start func() (any, func(), error)) (any, error) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil, errRegistryStopped
	}
	e, ok := r.entries[key]
	if !ok {
		e = &entry{}
		r.entries[key] = e
		r.order = append(r.order, e)
	}
	r.mu.Unlock()
	e.once.Do(func() { e.value, e.stop, e.err = start() })
	return e.value, e.err
}

// stopAll stops every started resource, newest first.
func (r *registry) stopAll() {
	r.mu.Lock()
	r.stopped = true
	order := r.order
	r.order, r.entries = nil, map[string]*entry{}
	r.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		e := order[i]
		// Do waits for a start in progress and marks unstarted entries done.
		e.once.Do(func() { e.err = errRegistryStopped })
		if e.stop != nil {
			e.stop()
		}
	}
}

// procDir is this process's private directory under the temp root.
var procDir struct {
	mu   sync.Mutex
	path string
}

const tmpBase = "dbproxy-testenv"

func tmpRoot() string {
	if r := os.Getenv(EnvTmpRoot); r != "" {
		return r
	}
	return "/tmp"
}

// processDir returns (creating on first use) a 0755 directory private to
// this test process: <root>/dbproxy-testenv/p<pid>-<random>. On creation it
// removes the directories of earlier test processes that no longer run
// (left behind when a test binary was killed).
func processDir() (string, error) {
	procDir.mu.Lock()
	defer procDir.mu.Unlock()
	if procDir.path != "" {
		return procDir.path, nil
	}
	base := filepath.Join(tmpRoot(), tmpBase)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", base, err)
	}
	// MkdirAll is subject to the umask; servers run as another user and
	// must traverse this directory.
	_ = os.Chmod(base, 0o755)
	sweepStale(base)
	dir, err := os.MkdirTemp(base, "p"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("create process dir under %s: %w", base, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("chmod %s: %w", dir, err)
	}
	procDir.path = dir
	return dir, nil
}

func removeProcessDir() {
	procDir.mu.Lock()
	defer procDir.mu.Unlock()
	if procDir.path != "" {
		_ = os.RemoveAll(procDir.path)
		procDir.path = ""
	}
}

// sweepStale removes p<pid>-* directories whose process is gone.
func sweepStale(base string) {
	ents, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() && strings.HasPrefix(name, "tmpl-build-") {
			// A template build killed halfway (live builds hold a lock and
			// finish within minutes).
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
				_ = os.RemoveAll(filepath.Join(base, name))
			}
			continue
		}
		if !e.IsDir() || !strings.HasPrefix(name, "p") {
			continue
		}
		pidStr, _, ok := strings.Cut(name[1:], "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pidStr)); err == nil || pid <= 0 {
			continue
		}
		_ = os.RemoveAll(filepath.Join(base, name))
	}
}

// newServerDir creates a 0755 directory for one server under processDir.
func newServerDir(prefix string) (string, error) {
	pd, err := processDir()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(pd, prefix+"-")
	if err != nil {
		return "", fmt.Errorf("create server dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("chmod %s: %w", dir, err)
	}
	return dir, nil
}

// inServerDir creates a directory for one server with newServerDir and
// runs start with it, removing the directory again when start fails.
func inServerDir(prefix string, start func(dir string) error) error {
	dir, err := newServerDir(prefix)
	if err != nil {
		return err
	}
	if err := start(dir); err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Callers retry when the server then fails to bind it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	return port, nil
}

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// logTail returns the last lines of a server log for failure messages.
func logTail(path string) string {
	const maxBytes, maxLines = 8 << 10, 40
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := st.Size() - maxBytes
	if off < 0 {
		off = 0
	}
	buf, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // first line is probably cut
	}
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// logError is an error carrying the tail of a server log.
func logError(msg string, err error, logPath string) error {
	return fmt.Errorf("%s: %w\n--- %s (tail) ---\n%s\n---", msg, err, logPath, logTail(logPath))
}

// serverFor returns the shared server under key (started by start on first
// use) or, for a dedicated server or a package whose TestMain does not call
// Main, a private one stopped when the test ends. what names the server in
// messages ("PostgreSQL (auth=… tls=…)", "MariaDB").
func serverFor[S interface{ stop() }](t testing.TB, key string, dedicated bool, what string, start func(context.Context) (S, error)) S {
	t.Helper()
	startNow := func() (S, error) {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		return start(ctx)
	}
	fail := func(err error) {
		t.Helper()
		msg := fmt.Sprintf("testenv: start %s: %v", what, err)
		if errors.Is(err, errNotInstalled) {
			msg += "\n" + installHint
		}
		t.Fatal(msg)
	}
	if mainCalled.Load() && !dedicated {
		v, err := servers.get(key, func() (any, func(), error) {
			s, err := startNow()
			if err != nil {
				return nil, nil, err
			}
			return s, s.stop, nil
		})
		if err != nil {
			fail(err)
		}
		return v.(S)
	}
	if !dedicated {
		t.Logf("testenv: TestMain does not call testenv.Main, so this test gets a private %s server (slow)", strings.SplitN(what, " ", 2)[0])
	}
	s, err := startNow()
	if err != nil {
		fail(err)
	}
	t.Cleanup(s.stop)
	return s
}
