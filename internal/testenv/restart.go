package testenv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Kill ends the server with SIGKILL to its whole process group (the
// postmaster and every backend), as a crash or the OOM killer would, and
// returns once the postmaster is gone. The data directory and port are
// kept for Restart. Only for a server of this test alone
// (PGOptions.Dedicated): killing a shared server would break other tests,
// so the test fails instead.
func (p *Postgres) Kill(t testing.TB) {
	t.Helper()
	needDedicated(t, "Postgres.Kill", "PGOptions", p.srv != nil && p.dedicated)
	killGroup(p.srv.proc)
}

// Kill ends mariadbd with SIGKILL, as a crash would, and returns once it is
// gone. The data directory and port are kept for Restart. Only for a
// server of this test alone (MariaDBOptions.Dedicated).
func (m *MariaDB) Kill(t testing.TB) {
	t.Helper()
	needDedicated(t, "MariaDB.Kill", "MariaDBOptions", m.srv != nil && m.dedicated)
	killGroup(m.srv.proc)
}

// Restart starts a killed server again on the same data directory and
// port (PostgreSQL runs crash recovery) and returns once it accepts logins.
func (p *Postgres) Restart(t testing.TB) {
	t.Helper()
	needDedicated(t, "Postgres.Restart", "PGOptions", p.srv != nil && p.dedicated)
	restartServer(t, "PostgreSQL", p.srv.restart)
}

func (s *pgServer) restart(ctx context.Context) error {
	return restartChild(ctx, &s.proc, s.bin, []string{"-D", s.dataDir, "-p", strconv.Itoa(s.port)},
		childOpts{logPath: s.logPath, cred: s.cred, dir: s.dir}, s.waitReady)
}

// Restart starts a killed server again on the same data directory and port
// (InnoDB runs crash recovery) and returns once it accepts logins.
func (m *MariaDB) Restart(t testing.TB) {
	t.Helper()
	needDedicated(t, "MariaDB.Restart", "MariaDBOptions", m.srv != nil && m.dedicated)
	restartServer(t, "MariaDB", m.srv.restart)
}

func (s *mariaDBServer) restart(ctx context.Context) error {
	return restartChild(ctx, &s.proc, s.bin, s.args, childOpts{logPath: s.logPath, dir: s.dir}, s.waitReady)
}

// needDedicated fails the test unless the server was started here for this
// test alone (ok): killing a shared server would break other tests.
func needDedicated(t testing.TB, what, opts string, ok bool) {
	t.Helper()
	if !ok {
		t.Fatalf("testenv: %s needs a server started here with %s{Dedicated: true}", what, opts)
	}
}

// restartServer runs restart within the start timeout; name is the
// server's for the failure message.
func restartServer(t testing.TB, name string, restart func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := restart(ctx); err != nil {
		t.Fatalf("testenv: restart %s: %v", name, err)
	}
}

// killGroup sends SIGKILL to the process group of proc, reaps it, and
// waits (up to 10 s) until no process of the group is left.
func killGroup(proc *child) {
	proc.stop(syscall.SIGKILL, 10*time.Second)
	pgid := proc.pid()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// restartChild starts bin with args as a server process, stores it in
// *procp and waits for it with ready; when the new process exits at once
// (the old one's shared memory or port not yet released), it tries again.
func restartChild(ctx context.Context, procp **child, bin string, args []string, o childOpts, ready func(context.Context) error) error {
	const attempts = 5
	logPath := o.logPath
	for attempt := 1; ; attempt++ {
		proc, err := startChild(bin, args, o)
		if err != nil {
			return err
		}
		*procp = proc
		err = ready(ctx)
		if err == nil {
			return nil
		}
		exited, _ := proc.exitErr()
		proc.stop(syscall.SIGKILL, 10*time.Second)
		tail := logTail(logPath)
		transient := strings.Contains(tail, "still in use") || strings.Contains(tail, "already in use") ||
			strings.Contains(tail, "Bind on TCP/IP port") || strings.Contains(tail, "could not create any TCP/IP sockets")
		if !exited || !transient || attempt == attempts {
			return logError(fmt.Sprintf("restart (attempt %d)", attempt), err, logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// launch is one way of starting a server child on a TCP port.
type launch struct {
	name      string       // the server, for errors: "postgres", "mariadbd"
	logPath   string       // where the child writes its log
	stop      func(*child) // how to end an attempt that did not come up
	portTaken []string     // log texts saying another process bound the port first
	start     func(port int) (*child, error)
	ready     func(ctx context.Context) error
}

// startOnFreePort starts l on a port from freePort and waits until it is
// ready. When the log says the port was taken between freePort and the
// server's bind, it tries another port: three attempts in all.
func startOnFreePort(ctx context.Context, l launch) error {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		proc, err := l.start(port)
		if err != nil {
			return err
		}
		err = l.ready(ctx)
		if err == nil {
			return nil
		}
		l.stop(proc)
		if attempt < attempts && logSaysAny(logTail(l.logPath), l.portTaken) {
			continue
		}
		return logError(fmt.Sprintf("%s on port %d not ready", l.name, port), err, l.logPath)
	}
}

func logSaysAny(tail string, texts []string) bool {
	for _, s := range texts {
		if strings.Contains(tail, s) {
			return true
		}
	}
	return false
}
