package postgres

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Request codes of the untyped startup-phase packets:
//
//	int32 length (including itself) || int32 code || payload
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102

	protocolVersion30 = 3 << 16
	// maxStartupPacket is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	maxStartupPacket = 10000
)

// startupLengthError is a startup packet whose length word is out of
// range. The server answers it by closing the connection without a message
// (it only logs it), and so does the proxy.
type startupLengthError struct{ length int }

func (e *startupLengthError) Error() string {
	return fmt.Sprintf("invalid length of startup packet (%d)", e.length)
}

// terminateLength is the length word a Terminate message ('X', int32 4)
// reads as when a client sends it before any startup packet, as
// node-postgres does when a connection is ended right after it was opened.
const terminateLength = 'X' << 24

// readStartupPacket reads one startup-phase packet from r. It returns the
// request code and the payload after it; payload aliases buf when buf is
// large enough and is valid until buf is reused.
func readStartupPacket(r io.Reader, buf []byte) (code uint32, payload []byte, err error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return 0, nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:4])))
	if n < 8 || n > maxStartupPacket {
		return 0, nil, &startupLengthError{length: n}
	}
	if _, err := io.ReadFull(r, hdr[4:8]); err != nil {
		return 0, nil, eofIsUnexpected(err)
	}
	code = binary.BigEndian.Uint32(hdr[4:8])
	if cap(buf) < n-8 {
		buf = make([]byte, n-8)
	}
	payload = buf[:n-8]
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, eofIsUnexpected(err)
	}
	return code, payload, nil
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// startupMessage is a decoded StartupMessage:
//
//	int32 length || int32 version (major<<16 | minor) || (cstring name || cstring value)* || 0
type startupMessage struct {
	version uint32
	// params holds name, value pairs in the client's order.
	params []string
}

// parseStartupMessage decodes the payload that followed a version code.
func parseStartupMessage(version uint32, payload []byte) (*startupMessage, error) {
	m := &startupMessage{version: version}
	for {
		if len(payload) == 0 {
			return nil, errors.New("startup packet: missing terminator")
		}
		if payload[0] == 0 {
			if len(payload) != 1 {
				return nil, errors.New("startup packet: bytes after terminator")
			}
			break
		}
		name, rest, ok := cutCString(payload)
		if !ok {
			return nil, errors.New("startup packet: unterminated parameter name")
		}
		value, rest, ok := cutCString(rest)
		if !ok {
			return nil, fmt.Errorf("startup packet: parameter %q has no value", name)
		}
		m.params = append(m.params, name, value)
		payload = rest
	}
	if m.param("user") == "" {
		return nil, errors.New("no PostgreSQL user name specified in startup packet")
	}
	return m, nil
}

func cutCString(b []byte) (s string, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// param returns the value of the named parameter, or "".
func (m *startupMessage) param(name string) string {
	for i := 0; i+1 < len(m.params); i += 2 {
		if m.params[i] == name {
			return m.params[i+1]
		}
	}
	return ""
}

// database is the database the client asked for (defaulting to the user
// name, as the server does).
func (m *startupMessage) database() string {
	if db := m.param("database"); db != "" {
		return db
	}
	return m.param("user")
}

// appendStartupMessage encodes a StartupMessage with the given version and
// parameters.
func appendStartupMessage(dst []byte, version uint32, params []string) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, version)
	for _, p := range params {
		dst = append(dst, p...)
		dst = append(dst, 0)
	}
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

// appendRequest encodes a payload-less request such as SSLRequest.
func appendRequest(dst []byte, code uint32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 8)
	return binary.BigEndian.AppendUint32(dst, code)
}

// appendCancelRequest encodes a CancelRequest:
//
//	int32 length || int32 80877102 || int32 process ID || secret key
func appendCancelRequest(dst []byte, pid uint32, secret []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(12+len(secret)))
	dst = binary.BigEndian.AppendUint32(dst, cancelRequestCode)
	dst = binary.BigEndian.AppendUint32(dst, pid)
	return append(dst, secret...)
}
