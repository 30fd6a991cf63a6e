package postgres

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// Query cancellation. Clients get a proxy-issued BackendKeyData: the
// server's process ID (so that pg_backend_pid(), pg_terminate_backend and
// pg_stat_activity mean the same through the proxy as directly) with a
// random secret, never the server's secret: a CancelRequest arrives on a
// new connection, and the proxy maps the key back to the upstream session
// and sends the server's own CancelRequest on a new upstream connection.
// Should the server's process ID already be issued on this listener (two
// upstream servers behind one name), the session gets a random one.

// cancelTarget is what a proxy-issued key maps to.
type cancelTarget struct {
	secret         [4]byte             // proxy-issued secret
	host           *proxy.UpstreamHost // the session's host (TLS settings)
	addr           string              // the address the session is connected to
	upstreamPID    uint32
	upstreamSecret []byte
}

// cancelKeys maps proxy-issued process IDs to upstream sessions, for one
// listener. Entries live as long as their session.
type cancelKeys struct {
	mu sync.Mutex
	m  map[uint32]*cancelTarget
}

func newCancelKeys() *cancelKeys { return &cancelKeys{m: make(map[uint32]*cancelTarget)} }

// register issues a fresh proxy key for t and returns its process ID:
// t.upstreamPID if it is free on this listener, a random one otherwise.
func (k *cancelKeys) register(t *cancelTarget) (uint32, error) {
	var b [8]byte
	for first := true; ; first = false {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("generate cancel key: %w", err)
		}
		// A positive int32, like a real process ID.
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if first && t.upstreamPID != 0 {
			pid = t.upstreamPID
		}
		if pid == 0 {
			continue
		}
		copy(t.secret[:], b[4:])
		k.mu.Lock()
		if _, taken := k.m[pid]; !taken {
			k.m[pid] = t
			k.mu.Unlock()
			return pid, nil
		}
		k.mu.Unlock()
	}
}

func (k *cancelKeys) remove(pid uint32) {
	k.mu.Lock()
	delete(k.m, pid)
	k.mu.Unlock()
}

// lookup returns the target of a CancelRequest, or nil if the key does not
// match a live session.
func (k *cancelKeys) lookup(pid uint32, secret []byte) *cancelTarget {
	k.mu.Lock()
	t := k.m[pid]
	k.mu.Unlock()
	if t == nil || subtle.ConstantTimeCompare(t.secret[:], secret) != 1 {
		return nil
	}
	return t
}

// forwardCancel sends the upstream's CancelRequest for t on a new upstream
// connection (TLS per sslmode) and waits until the server closes it, which
// it does once the cancel has been signalled.
func (h *Handler) forwardCancel(ctx context.Context, t *cancelTarget) error {
	ctx, cancel := context.WithTimeout(ctx, h.Up.ConnectTimeout())
	defer cancel()
	conn, _, err := h.dialHost(ctx, t.host, t.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write(appendCancelRequest(nil, t.upstreamPID, t.upstreamSecret)); err != nil {
		return fmt.Errorf("send cancel request: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 1<<10))
	return nil
}
