package mysql

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// firstPacket connects to the listener's upstream hosts in order (see
// proxy.Upstream.Hosts) until one sends its first packet (its greeting,
// or an ERR), and returns that packet with the connection recorded as the
// session's server. The server's leg has its own deadline, which the
// hosts share: never earlier than the client's, and a full handshake
// timeout from now when the client has used part of its own already. When
// every host is skipped the client gets ERR 2003, and the log names each
// host and why.
func (s *session) firstPacket(ctx context.Context) (uint8, []byte, error) {
	deadline := time.Now().Add(s.h.HandshakeTimeout)
	if s.deadline.After(deadline) {
		deadline = s.deadline
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var ue proxy.UpstreamError
	hosts := s.h.Up.Hosts()
	for i, host := range hosts {
		seq, p, err := s.firstPacketOf(ctx, host, len(hosts)-i, deadline)
		var skip *proxy.HostSkipped
		if !errors.As(err, &skip) {
			return seq, p, err
		}
		ue.Add(host, skip.Err)
	}
	// The client, not yet authenticated, is not told the hosts and why
	// each failed (internal names and addresses): the log is.
	s.log.LogAttrs(ctx, slog.LevelWarn, "could not connect to the database server", slog.String("tried", ue.Tried()))
	return 0, nil, fatalf(codeConnectHost, stateGeneral,
		fmt.Sprintf("dbproxy could not connect to the database server (%d host(s) tried; the proxy's log says why)", len(ue.Hosts)), &ue)
}

// firstPacketOf dials host, one of left hosts still to try, within its
// share of the connect timeout (proxy.Upstream.HostContext), and reads
// its first packet; the connection's deadline is then the server leg's
// (deadline). A host that cannot be reached is skipped; so is one that
// closes or stays silent for its share of the time, when another host is
// left.
func (s *session) firstPacketOf(ctx context.Context, host *proxy.UpstreamHost, left int, deadline time.Time) (uint8, []byte, error) {
	hctx, cancel := s.h.Up.HostContext(ctx, left)
	defer cancel()
	conn, err := s.h.Up.DialHost(hctx, host)
	if err != nil {
		return 0, nil, &proxy.HostSkipped{Err: err}
	}
	s.upHost = host
	if !s.SetServer(conn, conn) {
		_ = conn.Close()
		return 0, nil, errHandled
	}
	first := deadline
	if dl, ok := hctx.Deadline(); ok && left > 1 && dl.Before(first) {
		first = dl
	}
	_ = conn.SetDeadline(first)
	s.sbr = bufio.NewReaderSize(conn, 1024)
	seq, p, err := s.readServer()
	if err != nil {
		if left > 1 {
			_ = conn.Close()
			return 0, nil, &proxy.HostSkipped{Err: err}
		}
		return 0, nil, err
	}
	_ = conn.SetDeadline(deadline)
	return seq, p, nil
}
