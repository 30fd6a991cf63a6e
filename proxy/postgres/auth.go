package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy"
)

// Authentication request codes (AuthenticationXXX messages, type 'R').
const (
	authOK                = 0
	authCleartextPassword = 3
	authMD5Password       = 5
	authGSS               = 7
	authGSSContinue       = 8
	authSSPI              = 9
	authSASL              = 10
	authSASLContinue      = 11
	authSASLFinal         = 12
)

// authenticate runs the authentication exchange; see the package doc.
func (s *session) authenticate() error {
	for {
		typ, body, err := s.readServer()
		if err != nil {
			return err
		}
		switch typ {
		case 'v': // NegotiateProtocolVersion from the server itself
			s.sentNPV = true
			s.toClient(typ, body)
			continue
		case 'E':
			if err := s.unavailable(body); err != nil {
				return err
			}
			s.serverRefused(body)
			s.toClient(typ, body)
			_ = s.flushClient()
			s.log.LogAttrs(context.Background(), slog.LevelDebug, "server refused the connection")
			return errHandled
		case 'N':
			s.toClient(typ, body)
			continue
		case 'R':
		default:
			return fatalf(codeProtocolViolation, fmt.Sprintf("unexpected message %q from the server during authentication", typ), nil)
		}
		if len(body) < 4 {
			return fatalf(codeProtocolViolation, "invalid authentication request from the server", nil)
		}
		switch code := binary.BigEndian.Uint32(body); code {
		case authOK:
			s.toClient(typ, body)
			return nil
		case authSASLFinal:
			s.toClient(typ, body) // no client response follows
		case authSASL:
			if s.clientTLS {
				if err := s.terminateSCRAM(body); err != nil {
					return err
				}
				continue
			}
			// A plaintext client cannot bind to the server's certificate,
			// and libpq refuses a PLUS offer over a non-SSL connection:
			// offer it the mechanisms without channel binding.
			if err := s.relayAuthStep(typ, withoutPlus(body)); err != nil {
				return err
			}
		case authCleartextPassword:
			if err := s.cleartextAllowed(); err != nil {
				return err
			}
			if err := s.relayAuthStep(typ, body); err != nil {
				return err
			}
		case authMD5Password, authSASLContinue, authGSS, authGSSContinue, authSSPI:
			if err := s.relayAuthStep(typ, body); err != nil {
				return err
			}
		default:
			return fatalf(codeFeatureUnsupported, fmt.Sprintf("authentication method %d is not supported by dbproxy", code), nil)
		}
	}
}

// cleartextAllowed says whether a password may travel in clear from the
// client through the proxy to the server: each leg must be TLS (the
// upstream leg with a verified certificate: under prefer or require a man
// in the middle can pose as the server) or loopback. Otherwise the client
// gets FATAL 28000 naming the setting to change, before it is asked for its
// password.
func (s *session) cleartextAllowed() error {
	if !s.clientTLS && !proxy.IsLoopback(s.rawClient.RemoteAddr()) {
		hint := "connect with sslmode=require or stricter"
		if s.h.opts.TLS == nil {
			hint = "configure tls on the dbproxy listener and connect with sslmode=require or stricter"
		}
		return fatalf(codeInvalidAuthSpec,
			"the server asks for the password in clear text and dbproxy does not send it over a client connection that is neither TLS nor loopback: "+hint,
			errors.New("cleartext password refused: client leg is plaintext and not loopback"))
	}
	if !(s.serverTLS && s.h.opts.UpstreamTLS.Verified()) && !proxy.IsLoopback(s.RawServer.RemoteAddr()) {
		return fatalf(codeInvalidAuthSpec,
			"the server asks for the password in clear text and dbproxy does not send it to a server that is neither on loopback nor reached over verified TLS: set upstream_tls.mode: verify-full (or verify-ca) on the listener, or use scram-sha-256 on the server",
			fmt.Errorf("cleartext password refused: upstream sslmode %s, server not on loopback", s.h.opts.UpstreamTLS.Mode))
	}
	return nil
}

// withoutPlus returns an AuthenticationSASL body without
// SCRAM-SHA-256-PLUS:
//
//	int32 10 || (cstring mechanism)* || 0
func withoutPlus(body []byte) []byte {
	var req pgproto3.AuthenticationSASL
	if err := req.Decode(body); err != nil {
		return body // relayed as is; the client will judge it
	}
	out := binary.BigEndian.AppendUint32(nil, authSASL)
	for _, m := range req.AuthMechanisms {
		if m != mechSCRAMPlus {
			out = append(out, m...)
			out = append(out, 0)
		}
	}
	return append(out, 0)
}

// relayAuthStep forwards an authentication request to the client and the
// client's response (a 'p' message, never decoded) to the server.
func (s *session) relayAuthStep(typ byte, body []byte) error {
	cbody, err := s.askPassword(typ, body)
	if err != nil {
		return err
	}
	if err := s.writeServerMessage('p', cbody); err != nil {
		return s.upstreamLost(err)
	}
	return nil
}

// askPassword sends the authentication request typ (body) to the client
// and returns the body of its answer, which must be a password message
// ('p'); a client that sends Terminate instead ends the session quietly.
func (s *session) askPassword(typ byte, body []byte) ([]byte, error) {
	s.toClient(typ, body)
	if err := s.flushClient(); err != nil {
		return nil, err
	}
	ctyp, cbody, err := s.readClient()
	if err != nil {
		return nil, err
	}
	if ctyp != 'p' {
		if ctyp == 'X' {
			return nil, errHandled
		}
		return nil, fatalf(codeProtocolViolation, fmt.Sprintf("expected password response, got message type %q", ctyp), nil)
	}
	return cbody, nil
}

func (s *session) writeServerMessage(typ byte, body []byte) error {
	msg := make([]byte, 0, 5+len(body))
	msg = append(msg, typ)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(body)+4))
	msg = append(msg, body...)
	_, err := s.Server.Write(msg)
	clear(msg) // may hold a password
	return err
}

// terminateSCRAM completes SCRAM-SHA-256 with the server itself, using the
// cleartext password it asks the (TLS) client for. The server's
// ErrorResponse, if any, goes to the client verbatim.
func (s *session) terminateSCRAM(body []byte) error {
	var req pgproto3.AuthenticationSASL
	if err := req.Decode(body); err != nil {
		return fatalf(codeProtocolViolation, "invalid SASL request from the server", err)
	}
	var hasSCRAM, hasPlus bool
	for _, m := range req.AuthMechanisms {
		hasSCRAM = hasSCRAM || m == mechSCRAM
		hasPlus = hasPlus || m == mechSCRAMPlus
	}
	if !hasSCRAM && !hasPlus {
		return fatalf(codeFeatureUnsupported, "the server offers no SASL mechanism dbproxy supports", nil)
	}
	var cbind []byte
	if hasPlus {
		cbind = serverChannelBinding(s.Server)
	}
	plus := cbind != nil
	if !plus && !hasSCRAM {
		return fatalf(codeFeatureUnsupported, "the server requires channel binding that dbproxy cannot provide", nil)
	}

	// Ask the client for its password. The client leg is TLS.
	ask := pgproto3.AuthenticationCleartextPassword{}
	askBody, _ := ask.Encode(nil)
	cbody, err := s.askPassword(askBody[0], askBody[5:])
	if err != nil {
		return err
	}
	password, _, ok := cutCString(cbody)
	clear(cbody)
	if !ok {
		return fatalf(codeProtocolViolation, "invalid password message", nil)
	}
	sc, err := newSCRAMClient(password, plus, cbind, s.serverTLS)
	if err != nil {
		return err
	}
	defer sc.clear()

	first := pgproto3.SASLInitialResponse{AuthMechanism: sc.mechanism, Data: sc.clientFirst()}
	if err := s.sendServer(&first); err != nil {
		return err
	}
	cont, err := s.expectSASL(authSASLContinue)
	if err != nil {
		return err
	}
	final, err := sc.clientFinal(cont)
	if err != nil {
		return fatalf(codeInvalidAuthSpec, "dbproxy: SCRAM exchange with the server failed", err)
	}
	if err := s.sendServer(&pgproto3.SASLResponse{Data: final}); err != nil {
		return err
	}
	fin, err := s.expectSASL(authSASLFinal)
	if err != nil {
		return err
	}
	if err := sc.verifyServerFinal(fin); err != nil {
		return fatalf(codeInvalidAuthSpec, "dbproxy: the database server failed SCRAM verification", err)
	}
	s.log.LogAttrs(context.Background(), slog.LevelDebug, "authenticated upstream with SCRAM",
		slog.String("mechanism", sc.mechanism))
	return nil
}

func (s *session) sendServer(msg interface{ Encode([]byte) ([]byte, error) }) error {
	b, err := msg.Encode(nil)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_, err = s.Server.Write(b)
	clear(b)
	if err != nil {
		return s.upstreamLost(err)
	}
	return nil
}

// expectSASL reads the next SASL step from the server. An ErrorResponse is
// relayed to the client (wrong password: 28P01) and ends the session.
func (s *session) expectSASL(code uint32) ([]byte, error) {
	for {
		typ, body, err := s.readServer()
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'E':
			s.serverRefused(body)
			s.toClient(typ, body)
			_ = s.flushClient()
			return nil, errHandled
		case 'N':
			s.toClient(typ, body)
			continue
		case 'R':
			if len(body) >= 4 && binary.BigEndian.Uint32(body) == code {
				return body[4:], nil
			}
		}
		return nil, fatalf(codeProtocolViolation, fmt.Sprintf("unexpected message %q from the server during SASL", typ), nil)
	}
}
