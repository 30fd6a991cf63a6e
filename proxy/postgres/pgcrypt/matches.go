package pgcrypt

import (
	"bytes"

	"github.com/dbproxy/dbproxy/proxy/postgres/pgsql"
	"github.com/dbproxy/dbproxy/rules"
)

// matched is a set of ciphertexts one execution sent for a lookup on a
// deterministic column, and the canonical plaintext they were made from.
type matched struct {
	rule  *rules.ColumnRule
	cts   [][]byte
	canon []byte
}

// maxMatches bounds the lookups remembered per execution: every
// deterministic result cell is compared with each of them, so a long IN
// list would cost more than it saves. Lookups beyond it are decrypted.
const maxMatches = 8

// matchSet is the lookups of one execution (a simple Query's string, or a
// Bind and the Executes of its portal). A deterministic result cell that
// is byte for byte one of their ciphertexts, in a column sharing the key
// (rules.SameKey: same key name and plaintext type; the ciphertext header
// carries the key version), is answered with the canonical plaintext the
// proxy encrypted instead of being decrypted again: equal bytes under the
// same key decrypt to the same plaintext, and the proxy produced those
// bytes itself. Any other cell is decrypted and authenticated.
//
// Filled by the frontend goroutine before the request is queued, read by
// the backend goroutine after it is dequeued (the queue's mutex orders
// the two); never changed afterwards. The common single lookup needs no
// allocation: its entry and plaintext live inline.
type matchSet struct {
	list []matched
	one  [1]matched
	buf  [64]byte
	nbuf int
}

var _ pgsql.MatchRecorder = (*matchSet)(nil)

// RecordMatch implements pgsql.MatchRecorder. cts is kept: it must be
// memory nobody reuses (what rules.Encryptor.EncryptForMatch returns, not
// AppendMatch into a scratch buffer).
func (m *matchSet) RecordMatch(col *rules.ColumnRule, canon []byte, cts [][]byte) {
	if col == nil || !col.Deterministic || len(cts) == 0 {
		return
	}
	if len(m.list) >= maxMatches {
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

// lookup returns the canonical plaintext of ct, a cell of column col, if
// it is one of the recorded ciphertexts of a column sharing col's key.
// m may be nil.
func (m *matchSet) lookup(col *rules.ColumnRule, ct []byte) ([]byte, bool) {
	if m == nil || !col.Deterministic {
		return nil, false
	}
	for i := range m.list {
		e := &m.list[i]
		if !rules.SameKey(e.rule, col) {
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
