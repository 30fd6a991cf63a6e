package testenv

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The pinned local-kms, built into the user cache directory when missing.
const (
	localKMSModule  = "github.com/nsmithuk/local-kms"
	localKMSVersion = "v0.0.0-20260228092603-2a5e92d09ab6"
)

// LocalKMS is a private local-kms server (a real AWS KMS API server) with one
// seeded AES key. local-kms listens on all interfaces and cannot be told
// otherwise, so it runs in its own network namespace, where nothing but its
// own loopback exists; the test reaches it through an in-process forwarder on
// 127.0.0.1 (Endpoint). Stop kills the server but keeps the forwarder, so
// clients see connection failures; Start brings it back with the same data,
// keys and Endpoint.
type LocalKMS struct {
	Endpoint  string // "http://127.0.0.1:<forwarder port>"
	KeyID     string // the seeded symmetric key (SYMMETRIC_DEFAULT)
	KeyARN    string
	Alias     string // "alias/dbproxy-test", pointing at KeyID
	Region    string
	AccountID string
	// AccessKeyID and SecretAccessKey are dummy static credentials; local-kms
	// does not check signatures, but the AWS SDK wants some.
	AccessKeyID, SecretAccessKey string
	DataDir                      string // local-kms database (KMS_DATA_PATH)
	// RawPort is the port local-kms listens on inside its own network
	// namespace. It is not reachable from the test's namespace.
	RawPort int

	t        testing.TB
	bin      string
	dir      string
	logPath  string
	seedPath string
	ln       net.Listener
	wg       sync.WaitGroup // accept loop and forwarded connections

	mu   sync.RWMutex // guards proc and ns; held for reading while dialing
	proc *child
	ns   *netns

	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// StartLocalKMS starts a local-kms server for this test alone, stopped and
// removed by t.Cleanup. The binary is built on first use (go install of the
// pinned version into the user cache directory), unless
// DBPROXY_TEST_LOCAL_KMS names one.
func StartLocalKMS(t testing.TB) *LocalKMS {
	t.Helper()
	bin, err := localKMSBinary()
	if err != nil {
		t.Fatalf("testenv: local-kms: %v", err)
	}
	dir, err := newServerDir("kms")
	if err != nil {
		t.Fatalf("testenv: local-kms: %v", err)
	}
	rawPort, err := freePort() // free here too, so the isolation is observable
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("testenv: local-kms: %v", err)
	}
	k := &LocalKMS{
		KeyID:           uuid4(),
		Alias:           "alias/dbproxy-test",
		Region:          "us-east-1",
		AccountID:       "111122223333",
		AccessKeyID:     "testenv",
		SecretAccessKey: "testenv",
		DataDir:         filepath.Join(dir, "data"),
		RawPort:         rawPort,
		t:               t,
		bin:             bin,
		dir:             dir,
		logPath:         filepath.Join(dir, "local-kms.log"),
		seedPath:        filepath.Join(dir, "seed.yaml"),
		conns:           map[net.Conn]struct{}{},
	}
	k.KeyARN = fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", k.Region, k.AccountID, k.KeyID)
	seed := fmt.Sprintf(`Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: %s
          Description: dbproxy testenv key
        BackingKeys:
          - %s
Aliases:
  - AliasName: %s
    TargetKeyId: %s
`, k.KeyID, randomHex(32), k.Alias, k.KeyID)
	if err := os.WriteFile(k.seedPath, []byte(seed), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("testenv: local-kms seed: %v", err)
	}
	k.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("testenv: local-kms forwarder: %v", err)
	}
	k.Endpoint = "http://" + k.ln.Addr().String()
	k.wg.Add(1)
	go k.acceptLoop()
	t.Cleanup(k.close)
	if err := k.start(); err != nil {
		t.Fatalf("testenv: start local-kms: %v", err)
	}
	return k
}

// Start restarts a stopped server: same data directory, keys and Endpoint.
// It does nothing if the server runs.
func (k *LocalKMS) Start() {
	k.t.Helper()
	if err := k.start(); err != nil {
		k.t.Fatalf("testenv: restart local-kms: %v", err)
	}
}

// Stop kills the server. The forwarder stays, so clients of Endpoint get
// connection resets until Start. It does nothing if the server is stopped.
func (k *LocalKMS) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
	k.closeConns()
}

func (k *LocalKMS) stopLocked() {
	if k.proc == nil {
		return
	}
	k.proc.stop(syscall.SIGKILL, 10*time.Second)
	k.ns.close()
	k.proc, k.ns = nil, nil
}

func (k *LocalKMS) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc != nil {
		return nil
	}
	proc, err := startChild(k.bin, nil, childOpts{
		env: []string{
			"PORT=" + strconv.Itoa(k.RawPort),
			"KMS_ACCOUNT_ID=" + k.AccountID,
			"KMS_REGION=" + k.Region,
			"KMS_SEED_PATH=" + k.seedPath,
			"KMS_DATA_PATH=" + k.DataDir,
		},
		logPath: k.logPath,
		newNet:  true,
		dir:     k.dir,
	})
	if err != nil {
		return err
	}
	ns, err := openNetns(proc.pid())
	if err == nil {
		err = ns.loopbackUp()
		if err != nil {
			ns.close()
		}
	}
	if err != nil {
		proc.stop(syscall.SIGKILL, 10*time.Second)
		return err
	}
	if err := k.waitReady(proc, ns); err != nil {
		proc.stop(syscall.SIGKILL, 10*time.Second)
		ns.close()
		return logError("local-kms not ready", err, k.logPath)
	}
	k.proc, k.ns = proc, ns
	return nil
}

func (k *LocalKMS) waitReady(proc *child, ns *netns) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(k.RawPort))
	deadline := time.Now().Add(startTimeout)
	for {
		if exited, err := proc.exitErr(); exited {
			return err
		}
		conn, err := ns.dial(addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no listener on %s in its namespace: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// close is the t.Cleanup: forwarder, server, files.
func (k *LocalKMS) close() {
	_ = k.ln.Close()
	k.mu.Lock()
	k.stopLocked()
	k.mu.Unlock()
	k.connMu.Lock()
	k.closed = true
	k.connMu.Unlock()
	k.closeConns()
	k.wg.Wait()
	_ = os.RemoveAll(k.dir)
}

func (k *LocalKMS) acceptLoop() {
	defer k.wg.Done()
	for {
		c, err := k.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: back off
			continue
		}
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			k.forward(c)
		}()
	}
}

// forward relays one client connection to local-kms inside its namespace.
// While the server is stopped, the client connection is reset.
func (k *LocalKMS) forward(c net.Conn) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(k.RawPort))
	k.mu.RLock()
	var up net.Conn
	err := errors.New("local-kms stopped")
	if k.ns != nil {
		up, err = k.ns.dial(addr, 5*time.Second)
	}
	k.mu.RUnlock()
	if err != nil {
		resetConn(c)
		return
	}
	if !k.track(c, up) {
		resetConn(c)
		up.Close()
		return
	}
	defer k.untrack(c, up)
	relay(c, up, nil)
	c.Close()
	up.Close()
}

func (k *LocalKMS) track(conns ...net.Conn) bool {
	k.connMu.Lock()
	defer k.connMu.Unlock()
	if k.closed {
		return false
	}
	for _, c := range conns {
		k.conns[c] = struct{}{}
	}
	return true
}

func (k *LocalKMS) untrack(conns ...net.Conn) {
	k.connMu.Lock()
	defer k.connMu.Unlock()
	for _, c := range conns {
		delete(k.conns, c)
	}
}

func (k *LocalKMS) closeConns() {
	k.connMu.Lock()
	defer k.connMu.Unlock()
	for c := range k.conns {
		c.Close()
	}
}

// resetConn closes c with a TCP RST, as a dead server would.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

func uuid4() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// kmsBin caches the local-kms binary path for the process.
var kmsBin struct {
	once sync.Once
	path string
	err  error
}

func localKMSBinary() (string, error) {
	if p := os.Getenv(EnvLocalKMS); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("%s=%s is not a file", EnvLocalKMS, p)
		}
		return p, nil
	}
	kmsBin.once.Do(func() { kmsBin.path, kmsBin.err = buildLocalKMS() })
	return kmsBin.path, kmsBin.err
}

// buildLocalKMS returns the cached pinned binary, building it once per
// machine (under a file lock, so parallel test binaries build it once).
func buildLocalKMS() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("user cache dir: %w", err)
	}
	dir := filepath.Join(cache, "dbproxy", "bin", "local-kms@"+localKMSVersion)
	bin := filepath.Join(dir, "local-kms")
	if isFile(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	unlock, err := lockFile(dir+".lock", "build")
	if err != nil {
		return "", err
	}
	defer unlock()
	if isFile(bin) { // built by another process while we waited
		return bin, nil
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("local-kms is not built and the go command is not on PATH: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "install", localKMSModule+"@"+localKMSVersion)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-mod=mod", "GOWORK=off", "GO111MODULE=on", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", localKMSModule, localKMSVersion, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "local-kms"), bin); err != nil {
		return "", fmt.Errorf("install local-kms binary: %w", err)
	}
	return bin, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
