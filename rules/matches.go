package rules

import "bytes"

// maxMatches bounds the lookups a Matches remembers: every deterministic
// result cell is compared with each of them, so a long IN list would cost
// more than it saves. Lookups beyond it are decrypted as usual.
const maxMatches = 8

// matched is a set of ciphertexts one execution sent for a lookup on a
// deterministic column, and the canonical plaintext they were made from.
type matched struct {
	rule  *ColumnRule
	cts   [][]byte
	canon []byte
}

// Matches is the lookups of one execution (a query string, or a prepared
// statement's execution). A deterministic result cell that is byte for
// byte one of their ciphertexts, in a column sharing the key (SameKey:
// same key name and plaintext type; the ciphertext header carries the key
// version), is answered with the canonical plaintext the proxy encrypted
// instead of being decrypted again: equal bytes under the same key decrypt
// to the same plaintext, and the proxy produced those bytes itself. Any
// other cell is decrypted and authenticated.
//
// The protocol layers (pgcrypt, mycrypt) fill it while rewriting a
// request and read it while decrypting the response; it is not safe for
// concurrent use, so the two must be ordered (a queue's mutex, or one
// goroutine). The common single lookup needs no allocation: its entry,
// plaintext and ciphertexts (up to two key versions of a short value) live
// inline. The zero value is ready to use; a Matches must not be copied
// once it holds a lookup.
type Matches struct {
	list []matched
	one  [1]matched
	cts  [2][]byte
	ncts int
	buf  [160]byte
	nbuf int
}

// RecordMatch remembers that cts are the ciphertexts (one per live key
// version) sent for a lookup of canon on col. canon and cts are copied, so
// the caller may reuse their memory (AppendMatch into a scratch buffer).
// Lookups on randomized columns and those beyond the bound are ignored,
// and so is everything on a nil Matches.
func (m *Matches) RecordMatch(col *ColumnRule, canon []byte, cts [][]byte) {
	if m == nil || col == nil || !col.Deterministic || len(cts) == 0 || len(m.list) >= maxMatches {
		return
	}
	var kept [][]byte
	if n := m.ncts + len(cts); n <= len(m.cts) {
		kept = m.cts[m.ncts:n:n]
		m.ncts = n
	} else {
		kept = make([][]byte, len(cts))
	}
	for i, ct := range cts {
		kept[i] = m.keep(ct)
	}
	if m.list == nil {
		m.list = m.one[:0]
	}
	m.list = append(m.list, matched{rule: col, cts: kept, canon: m.keep(canon)})
}

// keep returns a copy of b, in m's inline buffer while it has room.
func (m *Matches) keep(b []byte) []byte {
	n := m.nbuf + len(b)
	if n > len(m.buf) {
		return bytes.Clone(b)
	}
	c := m.buf[m.nbuf:n:n]
	copy(c, b)
	m.nbuf = n
	return c
}

// Lookup returns the canonical plaintext of ct, a cell of column col, if
// it is one of the recorded ciphertexts of a column sharing col's key.
// m may be nil.
func (m *Matches) Lookup(col *ColumnRule, ct []byte) ([]byte, bool) {
	if m == nil || !col.Deterministic {
		return nil, false
	}
	for i := range m.list {
		e := &m.list[i]
		if !SameKey(e.rule, col) {
			continue
		}
		for _, c := range e.cts {
			if bytes.Equal(c, ct) {
				return e.canon, true
			}
		}
	}
	return nil, false
}
