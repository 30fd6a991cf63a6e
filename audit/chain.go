package audit

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/value"
)

// MACSize is the length of a mac (HMAC-SHA256).
const MACSize = sha256.Size

// macLabel is what the audit data key deterministically encrypts to give
// the input of the MAC key derivation; macInfo is the HKDF info.
const (
	macLabel = "dbproxy audit chain MAC key"
	macInfo  = "dbproxy audit chain v1"
)

// macSuffix starts the mac member, the last of every line.
var macSuffix = []byte(`,"mac":"`)

// MACKey derives the audit MAC key from k, a version of the data key
// KeyName (AES-256-SIV): HKDF-SHA256 over k's deterministic encryption of
// a fixed label. AES-SIV is a pseudo-random function of its key, so the
// result is a secret only holders of that key version can compute, and the
// same in every process; k's bytes are never exposed.
func MACKey(k *crypto.Key) ([]byte, error) {
	if k.Algorithm() != crypto.AlgorithmAESSIV {
		return nil, fmt.Errorf("audit key %s version %d is %s, want %s", k.Name(), k.Version(), k.Algorithm(), crypto.AlgorithmAESSIV)
	}
	ikm, err := k.Encrypt(nil, []byte(macLabel), value.TypeText)
	if err != nil {
		return nil, fmt.Errorf("derive audit MAC key: %w", err)
	}
	defer clear(ikm)
	mk, err := hkdf.Key(sha256.New, ikm, nil, macInfo, MACSize)
	if err != nil {
		return nil, fmt.Errorf("derive audit MAC key: %w", err)
	}
	return mk, nil
}

// chain is the running state of a chain: the last sequence number and
// mac (zero for a chain not started).
type chain struct {
	seq uint64
	mac [MACSize]byte
}

// sealer appends events as lines, chaining them under one MAC key.
type sealer struct {
	kv  uint32
	mac hash.Hash
}

func newSealer(key []byte, kv uint32) *sealer {
	return &sealer{kv: kv, mac: hmac.New(sha256.New, key)}
}

// seal numbers e after c, appends its line to dst and advances c.
func (s *sealer) seal(dst []byte, c *chain, e *Event) ([]byte, error) {
	c.seq++
	e.Seq, e.KeyVersion = c.seq, s.kv
	body, err := json.Marshal(e)
	if err != nil {
		return dst, fmt.Errorf("encode %s event: %w", e.Type, err)
	}
	sum := lineMAC(s.mac, c.mac[:], body)
	copy(c.mac[:], sum)
	dst = append(dst, body[:len(body)-1]...)
	dst = append(dst, macSuffix...)
	dst = hex.AppendEncode(dst, sum)
	dst = append(dst, '"', '}', '\n')
	return dst, nil
}

// lineMAC is HMAC(prev || body) with h (reset first).
func lineMAC(h hash.Hash, prev, body []byte) []byte {
	h.Reset()
	h.Write(prev)
	h.Write(body)
	return h.Sum(nil)
}

// line is one parsed audit line: its event, the body its mac covers and
// the mac.
type line struct {
	ev   Event
	body []byte
	mac  [MACSize]byte
}

var errNoMAC = errors.New(`malformed line: no "mac" member at its end`)

// parseLine splits a line (without its newline) into the body its mac
// covers and the mac, and decodes the event.
func parseLine(b []byte) (line, error) {
	var l line
	i := bytes.LastIndex(b, macSuffix)
	if i < 0 || len(b) != i+len(macSuffix)+2*MACSize+2 || !bytes.HasSuffix(b, []byte(`"}`)) {
		return l, errNoMAC
	}
	if _, err := hex.Decode(l.mac[:], b[i+len(macSuffix):len(b)-2]); err != nil {
		return l, errNoMAC
	}
	l.body = append(append(make([]byte, 0, i+1), b[:i]...), '}')
	if err := json.Unmarshal(l.body, &l.ev); err != nil {
		return l, fmt.Errorf("malformed line: %w", err)
	}
	if l.ev.Seq == 0 || l.ev.Type == "" {
		return l, errors.New("malformed line: no seq or type")
	}
	return l, nil
}
