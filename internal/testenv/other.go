//go:build !linux

package testenv

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// The harness needs Linux: parent-death signals, network namespaces and
// /proc. Elsewhere every server start fails with this error.
var errNotLinux = errors.New("testenv needs Linux (parent-death signal, network namespaces)")

type childOpts struct {
	env     []string
	logPath string
	cred    *syscall.Credential
	newNet  bool
	dir     string
}

type child struct{}

func startChild(string, []string, childOpts) (*child, error) { return nil, errNotLinux }
func (c *child) pid() int                                    { return 0 }
func (c *child) exitErr() (bool, error)                      { return true, errNotLinux }
func (c *child) stop(syscall.Signal, time.Duration)          {}

func runAs(*syscall.Credential, string, string, ...string) error { return errNotLinux }
func postgresCredential() (*syscall.Credential, error)           { return nil, errNotLinux }
func chownTree(string, *syscall.Credential) error                { return errNotLinux }

type netns struct{}

func openNetns(int) (*netns, error)                           { return nil, errNotLinux }
func (n *netns) close()                                       {}
func (n *netns) dial(string, time.Duration) (net.Conn, error) { return nil, errNotLinux }
func (n *netns) loopbackUp() error                            { return errNotLinux }
