package mysql

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy"
)

// Packet framing, both directions, every phase:
//
//	uint24 payload length (little endian) || uint8 sequence id || payload
//
// A payload of exactly maxPayload (0xffffff) bytes is continued by the next
// packet; a logical packet whose length is a multiple of maxPayload ends with
// an empty packet. Sequence ids count the packets of one command exchange
// (mod 256) on each leg, starting at 0 with the command.
const (
	headerSize = 4
	maxPayload = gomysql.MaxPayloadLen // 0xffffff
)

// DefaultMaxPacketSize bounds a logical packet that the proxy must hold
// whole (handed to a hook); it is the largest max_allowed_packet a server
// accepts (1 GiB). Packets nobody needs whole stream through unbounded.
const DefaultMaxPacketSize = 1 << 30

// startupMaxPayload bounds one packet during the handshake and
// authentication; they are small (connection attributes are at most 64 KiB).
const startupMaxPayload = 1 << 20

// payloadLen decodes the length field of a header.
func payloadLen(h []byte) int { return int(h[0]) | int(h[1])<<8 | int(h[2])<<16 }

// putHeader writes a header for a physical packet of n payload bytes.
func putHeader(h []byte, n int, seq uint8) {
	h[0], h[1], h[2], h[3] = byte(n), byte(n>>8), byte(n>>16), seq
}

// appendPacket appends payload framed as one logical packet whose first
// physical packet has sequence id seq, splitting it as the protocol
// requires. It returns the sequence id that follows.
func appendPacket(dst []byte, seq uint8, payload []byte) ([]byte, uint8) {
	for {
		n := min(len(payload), maxPayload)
		dst = append(dst, byte(n), byte(n>>8), byte(n>>16), seq)
		dst = append(dst, payload[:n]...)
		seq++
		payload = payload[n:]
		if n < maxPayload {
			return dst, seq
		}
	}
}

func malformed(format string, args ...any) error {
	return &proxy.MalformedError{Msg: fmt.Sprintf(format, args...)}
}

// readPacket reads one packet of the startup phase from r into buf (grown
// as needed). Packets there are small: a continuation (payload of
// maxPayload bytes) or a payload above maxLen is malformed.
func readPacket(r *bufio.Reader, buf []byte, maxLen int) (seq uint8, payload, nbuf []byte, err error) {
	h, err := r.Peek(headerSize)
	if err != nil {
		if len(h) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, buf, err
	}
	n := payloadLen(h)
	seq = h[3]
	if n > maxLen || n == maxPayload {
		return 0, nil, buf, malformed("packet of %d bytes is too large for the connection phase", n)
	}
	_, _ = r.Discard(headerSize)
	if cap(buf) < n {
		buf = make([]byte, n, max(n, 256))
	}
	payload = buf[:n]
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, buf, err
	}
	return seq, payload, buf, nil
}

// lenEnc decodes a length-encoded integer at the start of b. ok is false if
// b is too short or starts with 0xff (not a valid prefix); null reports the
// NULL marker 0xfb.
func lenEnc(b []byte) (v uint64, n int, null, ok bool) {
	if len(b) == 0 {
		return 0, 0, false, false
	}
	switch b[0] {
	case 0xfb:
		return 0, 1, true, true
	case 0xfc:
		n = 3
	case 0xfd:
		n = 4
	case 0xfe:
		n = 9
	case 0xff:
		return 0, 0, false, false
	default:
		return uint64(b[0]), 1, false, true
	}
	if len(b) < n {
		return 0, 0, false, false
	}
	v, _, _ = gomysql.LengthEncodedInt(b[:n])
	return v, n, false, true
}

// okStatus returns the status flags of an OK packet (header 0x00 or, with
// CLIENT_DEPRECATE_EOF, 0xfe):
//
//	header || lenenc affected_rows || lenenc last_insert_id || uint16 status || uint16 warnings || ...
func okStatus(p []byte) (uint16, bool) {
	if len(p) < 1 {
		return 0, false
	}
	i := 1
	for range 2 {
		_, n, null, ok := lenEnc(p[i:])
		if !ok || null {
			return 0, false
		}
		i += n
	}
	if len(p) < i+2 {
		return 0, false
	}
	return uint16(p[i]) | uint16(p[i+1])<<8, true
}

// eofStatus returns the status flags of an EOF packet:
//
//	0xfe || uint16 warnings || uint16 status
func eofStatus(p []byte) (uint16, bool) {
	if len(p) < 5 {
		return 0, false
	}
	return uint16(p[3]) | uint16(p[4])<<8, true
}
