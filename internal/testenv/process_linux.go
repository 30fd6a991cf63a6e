package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// childOpts describes how to run one server process.
type childOpts struct {
	env     []string            // appended to a minimal environment
	logPath string              // stdout and stderr go here (appended)
	cred    *syscall.Credential // run as this user (nil: as ourselves)
	newNet  bool                // start in a new, empty network namespace
	dir     string              // working directory
}

// child is a running server process. It is in its own process group and
// receives SIGKILL when the test process dies (Pdeathsig), so a crashed or
// killed test binary never leaves servers behind. No goroutine waits on it
// while it runs (goleak-friendly): exits are noticed through /proc.
type child struct {
	cmd      *exec.Cmd
	logPath  string
	stopOnce sync.Once
}

func startChild(path string, args []string, o childOpts) (*child, error) {
	logf, err := os.OpenFile(o.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	if o.cred != nil {
		if err := os.Chown(o.logPath, int(o.cred.Uid), int(o.cred.Gid)); err != nil {
			return nil, fmt.Errorf("chown log: %w", err)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = o.dir
	cmd.Stdout, cmd.Stderr = logf, logf // *os.File: no copying goroutines
	cmd.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"TZ=UTC",
	}, o.env...)
	attr := &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: o.cred,
	}
	if o.newNet {
		attr.Cloneflags = syscall.CLONE_NEWNET
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return &child{cmd: cmd, logPath: o.logPath}, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exitErr reports whether the process has exited. It peeks at /proc
// without reaping, so stop can still Wait.
func (c *child) exitErr() (bool, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(c.pid()) + "/stat")
	if err != nil {
		return true, errors.New("process exited")
	}
	// pid (comm) state ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
		return true, errors.New("process exited")
	}
	return false, nil
}

// stop signals the process group with sig, waits up to grace, then kills
// the whole group, and reaps the process. Later calls do nothing.
func (c *child) stop(sig syscall.Signal, grace time.Duration) {
	c.stopOnce.Do(func() {
		pgid := c.pid()
		_ = syscall.Kill(-pgid, sig)
		done := make(chan struct{})
		go func() {
			_ = c.cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // stragglers of the group
	})
}

// runAs runs a short command as cred, returning its combined output on
// failure.
func runAs(cred *syscall.Credential, dir, path string, args ...string) error {
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"TZ=UTC",
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", path, err, out)
	}
	return nil
}

// postgresCredential returns the credential to run PostgreSQL with: the
// postgres system user when we are root (initdb and postgres refuse root),
// nil (ourselves) otherwise.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and PostgreSQL refuses root, but there is no postgres system user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// chownTree hands dir and everything in it to cred's user.
func chownTree(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return walkChown(dir, int(cred.Uid), int(cred.Gid))
}

func walkChown(path string, uid, gid int) error {
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	st, err := os.Lstat(path)
	if err != nil || !st.IsDir() {
		return err
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	for _, e := range ents {
		if err := walkChown(path+"/"+e.Name(), uid, gid); err != nil {
			return err
		}
	}
	return nil
}
