package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

func TestProbeVsBouncer(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	_, errOut, code := runTool(t, pgEnv(pg, "disable"), t.TempDir(), "pgbench", "-i", "-s", "1")
	if code != 0 {
		t.Fatal(errOut)
	}
	dir, _ := os.MkdirTemp("/tmp", "bouncer")
	os.Chmod(dir, 0o777)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	bport := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ini := fmt.Sprintf("[databases]\n%s = host=127.0.0.1 port=%d dbname=%s\n[pgbouncer]\nlisten_addr=127.0.0.1\nlisten_port=%d\nauth_type=trust\nauth_file=%s/users.txt\npool_mode=session\nmax_client_conn=100\ndefault_pool_size=20\nunix_socket_dir=\nlogfile=%s/b.log\npidfile=%s/b.pid\n", pg.Database, pg.Port, pg.Database, bport, dir, dir, dir)
	os.WriteFile(filepath.Join(dir, "b.ini"), []byte(ini), 0o644)
	os.WriteFile(filepath.Join(dir, "users.txt"), []byte(fmt.Sprintf("%q %q\n", pg.User, pg.Password)), 0o644)
	cmd := exec.Command("/usr/sbin/pgbouncer", filepath.Join(dir, "b.ini"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: &syscall.Credential{Uid: 101, Gid: 104}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }()
	time.Sleep(time.Second)
	benv := pgEnv(pg, "disable")
	for i, e := range benv {
		if len(e) > 7 && e[:7] == "PGPORT=" {
			benv[i] = "PGPORT=" + strconv.Itoa(bport)
		}
	}
	for _, c := range []string{"1", "16"} {
		for i := 0; i < 2; i++ {
			args := []string{"-S", "-T", "5", "-c", c, "-j", "2"}
			out, _, _ := runTool(t, pgEnv(pg, "disable"), t.TempDir(), "pgbench", args...)
			t.Logf("direct   c=%s: %s %s", c, tpsRe.FindString(out), latency(out))
			out, e, _ := runTool(t, benv, t.TempDir(), "pgbench", args...)
			t.Logf("bouncer  c=%s: %s %s %s", c, tpsRe.FindString(out), latency(out), e[:min(len(e), 0)])
			out, _, _ = runTool(t, p.psqlEnv("disable"), t.TempDir(), "pgbench", args...)
			t.Logf("dbproxy  c=%s: %s %s", c, tpsRe.FindString(out), latency(out))
			runtime.GOMAXPROCS(2)
			out, _, _ = runTool(t, p.psqlEnv("disable"), t.TempDir(), "pgbench", args...)
			t.Logf("dbproxy1 c=%s: %s %s", c, tpsRe.FindString(out), latency(out))
			runtime.GOMAXPROCS(2)
		}
	}
}
