package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy"
)

// startUpstream opens the session's upstream connection: for each host in
// the listener's order (see [proxy.Upstream.Hosts]) it dials, relays the
// authentication and reads the server's startup messages, until one host
// gives a session; as libpq, a host that refuses the login ends the
// search. When every host is skipped the client gets FATAL 08001, and the
// log names each host and why it was skipped.
func (s *session) startUpstream(ctx context.Context) error {
	var ue proxy.UpstreamError
	hosts := s.h.Up.Hosts()
	for i, host := range hosts {
		err := s.startOn(ctx, host, len(hosts)-i)
		var skip *proxy.HostSkipped
		if !errors.As(err, &skip) {
			if err == nil && s.h.Up.Target() == proxy.TargetReadWrite {
				s.h.Up.Writable(host)
			}
			return err
		}
		ue.Add(host, skip.Err)
		if !time.Now().Before(s.deadline) {
			break // limits.handshake_timeout: endStartup says so
		}
	}
	what := "the database server"
	if s.h.Up.Target() == proxy.TargetReadWrite {
		what = "a read-write database server (target_session_attrs: read-write)"
	}
	// The client, not yet authenticated, is not told the hosts and why
	// each failed (internal names and addresses): the log is.
	s.log.LogAttrs(ctx, slog.LevelWarn, "could not connect to the database server", slog.String("tried", ue.Tried()))
	return fatalf(codeUnableToConnect, fmt.Sprintf("dbproxy could not connect to %s (%d host(s) tried; the proxy's log says why)", what, len(ue.Hosts)), &ue)
}

// startOn runs the session's startup on host, one of left hosts still to
// try.
func (s *session) startOn(ctx context.Context, host *proxy.UpstreamHost, left int) error {
	s.moreHosts = left > 1
	if err := s.connectUpstream(ctx, s.deadline, host, left); err != nil {
		return err
	}
	if err := s.authenticate(); err != nil {
		return err
	}
	return s.finishStartup()
}

// checkWritable runs at the server's first ReadyForQuery, before anything
// of it reached the client. Under target_session_attrs read-write, a
// session the server reports read-only (PostgreSQL 14 and later report
// in_hot_standby and default_transaction_read_only at startup, as libpq
// reads them) is dropped: if the client took no part in this server's
// login (trust) the next host is tried ([proxy.HostSkipped]);
// otherwise its login cannot be replayed elsewhere, and it gets FATAL
// 08001 asking it to connect again. A hot standby also makes new sessions
// try the next host first. A server that reports neither (before 14)
// counts as read-write.
func (s *session) checkWritable() error {
	if s.h.Up.Target() != proxy.TargetReadWrite ||
		(s.srvParams["in_hot_standby"] != "on" && s.srvParams["default_transaction_read_only"] != "on") {
		return nil
	}
	if s.srvParams["in_hot_standby"] == "on" || !s.clientAskedReadOnly() {
		// The server's state moves new sessions to the next host; a
		// read-only the client asked for in its own startup packet does
		// not: one client must not steer where every other session starts.
		s.h.Up.ReadOnly(s.upHost)
	}
	if s.clientHeard {
		return fatalf(codeUnableToConnect, fmt.Sprintf(
			"dbproxy: the database server %s is read-only and target_session_attrs is read-write; connect again (the next attempt starts at the next host)",
			s.upHost.Addr), proxy.ErrReadOnly)
	}
	s.dropServer()
	return &proxy.HostSkipped{Err: proxy.ErrReadOnly}
}

// unavailable returns a [proxy.HostSkipped] for the ErrorResponse (body) a
// server sent in place of an authentication request when it says it
// cannot take connections now (57P03: starting up, shutting down, in
// recovery — what a failing-over server answers), the client has seen
// nothing of this server and another host is left: that host is tried, as
// after a host that is down. Otherwise it returns nil and the server's
// error goes to the client.
func (s *session) unavailable(body []byte) error {
	var e pgproto3.ErrorResponse
	if s.clientHeard || !s.moreHosts || e.Decode(body) != nil || e.Code != codeCannotConnectNow {
		return nil
	}
	s.dropServer()
	return &proxy.HostSkipped{Err: errors.New(e.Message)}
}

// dropServer ends the session's upstream connection to a host it moves
// on from, and forgets what that server sent for the client.
func (s *session) dropServer() {
	_ = s.RawServer.SetDeadline(time.Now().Add(startupErrorTimeout))
	_, _ = s.Server.Write([]byte{'X', 0, 0, 0, 4})
	_ = s.RawServer.Close()
	s.out, s.sentNPV = s.out[:0], false
	if s.proxyPID != 0 {
		s.h.keys.remove(s.proxyPID)
		s.proxyPID = 0
	}
}

// clientAskedReadOnly reports whether the client's startup packet sets
// default_transaction_read_only, as a parameter or in options.
func (s *session) clientAskedReadOnly() bool {
	if s.startup == nil {
		return false
	}
	return s.startup.param("default_transaction_read_only") != "" ||
		strings.Contains(strings.ToLower(s.startup.param("options")), "default_transaction_read_only")
}
