package mysql

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"sync"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// Connection ids the proxy puts in its own greetings (see doc.go,
// "Connection phase") are taken from [proxyIDFirst, proxyIDLast]: a server
// numbers its threads from 1 up, one per connection, and would need three
// billion connections since its start to reach this range. A KILL naming
// such an id that the proxy does not know (another listener's, another
// proxy's, a session that ended) reaches the server unchanged, where no
// thread has it: "Unknown thread id". Each id is drawn at random from the
// range's 2^30 values, so that replicas behind one load balancer do not
// hand out the same ids: a KILL that the balancer sends to another replica
// (the mysql client's Ctrl-C opens a new connection) names a live session
// there with a chance of its live sessions over 2^30, instead of being
// likely to when every process counted from the same start.
const (
	proxyIDFirst = 0xC000_0000
	proxyIDLast  = 0xFFFF_FFFE
)

// killMaxLen bounds the COM_QUERY payloads read whole to look for a KILL
// statement to translate; a longer one is forwarded unchanged.
const killMaxLen = 128

// connIDs maps the connection ids of the proxy's greetings to the server's
// thread ids, for the sessions of one Handler. An entry lives from the
// greeting to the end of its session; its thread id is 0 until the real
// server's greeting is read.
type connIDs struct {
	mu   sync.Mutex
	real map[uint32]serverThread
	// draw returns a random uint32 (tests make it predictable); nil means
	// math/rand/v2.
	draw func() uint32
}

// reserve returns a connection id of the proxy's range that no live
// session of the handler has.
func (m *connIDs) reserve() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.real == nil {
		m.real = make(map[uint32]serverThread)
	}
	draw := m.draw
	if draw == nil {
		draw = rand.Uint32
	}
	for {
		id := proxyIDFirst + draw()%(proxyIDLast-proxyIDFirst+1)
		if _, used := m.real[id]; !used {
			m.real[id] = serverThread{}
			return id
		}
	}
}

// serverThread is a session's thread on the database server at address
// server (host:port as dialled): with several upstream hosts, thread ids
// of different servers overlap.
type serverThread struct {
	thread uint32
	server string
}

// bind records the server's thread id of the session greeted with id, and
// the server's address.
func (m *connIDs) bind(id, thread uint32, server string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.real[id]; ok {
		m.real[id] = serverThread{thread: thread, server: server}
	}
}

// release forgets id (its session ended).
func (m *connIDs) release(id uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.real, id)
}

// lookup returns the server's thread id of a live session greeted with id
// whose server is server (a KILL sent to another server would name one of
// its threads instead).
func (m *connIDs) lookup(id uint64, server string) (uint32, bool) {
	if id < proxyIDFirst || id > proxyIDLast {
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.real[uint32(id)]
	return st.thread, ok && st.thread != 0 && st.server == server
}

// killCandidate reports whether a command whose payload has n bytes and
// starts with head (at least min(n, commandHeadLen) bytes) may be a KILL
// to translate, so the relay reads it whole and calls translateKill:
// COM_PROCESS_KILL, and a short COM_QUERY whose text starts (after
// whitespace) like KILL.
func killCandidate(n int, head []byte) bool {
	switch head[0] {
	case gomysql.COM_PROCESS_KILL:
		return n == 5
	case gomysql.COM_QUERY:
		if n > killMaxLen {
			return false
		}
		t := head[1:]
		for len(t) > 0 && isSpace(t[0]) {
			t = t[1:]
		}
		const kill = "KILL"
		for i := 0; i < len(t) && i < len(kill); i++ {
			if t[i]&^0x20 != kill[i] {
				return false
			}
		}
		return true
	}
	return false
}

// translateKill returns payload (COM_PROCESS_KILL, or COM_QUERY with
// exactly KILL [HARD|SOFT] [CONNECTION|QUERY] <id> [;]) with <id> replaced
// by the server's thread id if it is the greeting id of a live session on
// the same server (server: the address the issuing session dialled); any
// other payload is returned as is (the server does not know the proxy's
// ids: "Unknown thread id").
func (m *connIDs) translateKill(payload []byte, server string) []byte {
	if len(payload) == 0 {
		return payload
	}
	switch payload[0] {
	case gomysql.COM_PROCESS_KILL:
		if len(payload) != 5 {
			return payload
		}
		thread, ok := m.lookup(uint64(binary.LittleEndian.Uint32(payload[1:])), server)
		if !ok {
			return payload
		}
		return binary.LittleEndian.AppendUint32([]byte{gomysql.COM_PROCESS_KILL}, thread)
	case gomysql.COM_QUERY:
		start, end, id, ok := parseKill(payload[1:])
		if !ok {
			return payload
		}
		thread, ok := m.lookup(id, server)
		if !ok {
			return payload
		}
		out := make([]byte, 0, len(payload)+10)
		out = append(out, payload[:1+start]...)
		out = strconv.AppendUint(out, uint64(thread), 10)
		return append(out, payload[1+end:]...)
	}
	return payload
}

// parseKill reads q as KILL [HARD|SOFT] [CONNECTION|QUERY] <id> [;] with
// any whitespace around the words (case-insensitive) and returns the
// offsets of <id> and its value. Anything else (comments, KILL QUERY ID,
// KILL USER, an id out of range) is not ok.
func parseKill(q []byte) (start, end int, id uint64, ok bool) {
	i := 0
	skip := func() int {
		j := i
		for i < len(q) && isSpace(q[i]) {
			i++
		}
		return i - j
	}
	word := func(w string) bool {
		if len(q)-i < len(w) {
			return false
		}
		for k := range len(w) {
			if q[i+k]&^0x20 != w[k] {
				return false
			}
		}
		// A word ends at whitespace.
		if i+len(w) < len(q) && !isSpace(q[i+len(w)]) {
			return false
		}
		i += len(w)
		return true
	}
	skip()
	if !word("KILL") || skip() == 0 {
		return 0, 0, 0, false
	}
	if word("HARD") || word("SOFT") {
		if skip() == 0 {
			return 0, 0, 0, false
		}
	}
	if word("CONNECTION") || word("QUERY") {
		if skip() == 0 {
			return 0, 0, 0, false
		}
	}
	start = i
	for i < len(q) && q[i] >= '0' && q[i] <= '9' {
		i++
	}
	end = i
	if end == start || end-start > 10 {
		return 0, 0, 0, false
	}
	id, err := strconv.ParseUint(string(q[start:end]), 10, 32)
	if err != nil {
		return 0, 0, 0, false
	}
	skip()
	if i < len(q) && q[i] == ';' {
		i++
		skip()
	}
	if i != len(q) {
		return 0, 0, 0, false
	}
	return start, end, id, true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// serverKey is the address of the database server the session is on, as
// connIDs tells servers apart.
func (s *session) serverKey() string {
	if s.RawServer == nil {
		return ""
	}
	return s.RawServer.RemoteAddr().String()
}
