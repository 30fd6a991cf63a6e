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
	if p.srv == nil || !p.dedicated {
		t.Fatal("testenv: Postgres.Kill needs a server started here with PGOptions{Dedicated: true}")
	}
	killGroup(p.srv.proc)
}

// Restart starts a killed server again on the same data directory and
// port (PostgreSQL runs crash recovery) and returns once it accepts logins.
func (p *Postgres) Restart(t testing.TB) {
	t.Helper()
	if p.srv == nil || !p.dedicated {
		t.Fatal("testenv: Postgres.Restart needs a server started here with PGOptions{Dedicated: true}")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := p.srv.restart(ctx); err != nil {
		t.Fatalf("testenv: restart PostgreSQL: %v", err)
	}
}

func (s *pgServer) restart(ctx context.Context) error {
	return restartChild(ctx, s.logPath, func() (*child, error) {
		proc, err := startChild(s.bin, []string{"-D", s.dataDir, "-p", strconv.Itoa(s.port)},
			childOpts{logPath: s.logPath, cred: s.cred, dir: s.dir})
		if err == nil {
			s.proc = proc
		}
		return proc, err
	}, s.waitReady)
}

// Kill ends mariadbd with SIGKILL, as a crash would, and returns once it is
// gone. The data directory and port are kept for Restart. Only for a
// server of this test alone (MariaDBOptions.Dedicated).
func (m *MariaDB) Kill(t testing.TB) {
	t.Helper()
	if m.srv == nil || !m.dedicated {
		t.Fatal("testenv: MariaDB.Kill needs a server started here with MariaDBOptions{Dedicated: true}")
	}
	killGroup(m.srv.proc)
}

// Restart starts a killed server again on the same data directory and port
// (InnoDB runs crash recovery) and returns once it accepts logins.
func (m *MariaDB) Restart(t testing.TB) {
	t.Helper()
	if m.srv == nil || !m.dedicated {
		t.Fatal("testenv: MariaDB.Restart needs a server started here with MariaDBOptions{Dedicated: true}")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s := m.srv
	err := restartChild(ctx, s.logPath, func() (*child, error) {
		proc, err := startChild(s.bin, s.args, childOpts{logPath: s.logPath, dir: s.dir})
		if err == nil {
			s.proc = proc
		}
		return proc, err
	}, s.waitReady)
	if err != nil {
		t.Fatalf("testenv: restart MariaDB: %v", err)
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

// restartChild starts a server process with start and waits for it with
// ready; when the new process exits at once (the old one's shared memory
// or port not yet released), it tries again.
func restartChild(ctx context.Context, logPath string, start func() (*child, error), ready func(context.Context) error) error {
	const attempts = 5
	for attempt := 1; ; attempt++ {
		proc, err := start()
		if err != nil {
			return err
		}
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
