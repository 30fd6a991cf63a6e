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
// goroutine). The common single lookup needs no allocation: its entry and
// plaintext live inline. The zero value is ready to use.
type Matches struct {
	list []matched
	one  [1]matched
	buf  [64]byte
	nbuf int
}

// RecordMatch remembers that cts are the ciphertexts (one per live key
// version) sent for a lookup of canon on col. cts is kept: it must be
// memory nobody reuses (what Encryptor.EncryptForMatch returns, not
// AppendMatch into a scratch buffer); canon is copied. Lookups on
// randomized columns and those beyond the bound are ignored.
func (m *Matches) RecordMatch(col *ColumnRule, canon []byte, cts [][]byte) {
	if col == nil || !col.Deterministic || len(cts) == 0 || len(m.list) >= maxMatches {
		return
	}
	var c []byte
	if n := m.nbuf + len(canon); n <= len(m.buf) {
		c = m.buf[m.nbuf:n:n]
		copy(c, canon)
		m.nbuf = n
	} else {
		c = bytes.Clone(canon)
	}
	if m.list == nil {
		m.list = m.one[:0]
	}
	m.list = append(m.list, matched{rule: col, cts: cts, canon: c})
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
