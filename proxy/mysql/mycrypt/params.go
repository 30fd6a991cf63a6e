package mycrypt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
	"github.com/dbproxy/dbproxy/value"
)

const paramUnsigned = 0x8000 // in the 2-byte parameter type

// execute rewrites a COM_STMT_EXECUTE: the values bound for encrypted
// columns are encrypted (stored values) or turned into their lookup
// ciphertexts, re-typed as BLOB and sent in the server statement's parameter
// order. Statements with nothing to encrypt go through unchanged.
func (s *session) execute(x *mysql.Exchange, payload []byte, w *mysql.Writer) error {
	st, types, err := s.executedStmt(x.StmtID)
	if err != nil {
		return err
	}
	plan := st.plan
	var xs *exState
	if zone := s.executeZoneChange(st); plan.Encrypted || plan.DDL || plan.Session != nil || zone != nil {
		xs = s.execState()
		xs.plan, xs.stmt, xs.zone = plan, st, zone
		x.Watch, x.State = true, xs
	}
	if plan.Session != nil {
		s.preparedSessionChange(plan.Session)
	}
	n := len(plan.Params)
	if n == 0 || (plan.Passthrough && !plan.HasEncryptedParams()) {
		w.Packet(payload)
		return nil
	}
	// vals[i] is parameter i's value (nil: NULL); stored[i] the bounds of
	// its ciphertext in s.cmdCT; cts[i] its lookup ciphertexts. Up to 8
	// parameters need no allocation.
	var valsBuf [8][]byte
	var ctsBuf [8][][]byte
	var storedBuf [8][2]int
	vals, cts, stored := valsBuf[:0], ctsBuf[:0], storedBuf[:0]
	if n > len(valsBuf) {
		vals, cts, stored = make([][]byte, 0, n), make([][][]byte, 0, n), make([][2]int, 0, n)
	}
	vals, cts, stored = vals[:n], cts[:n], stored[:n]
	if types, err = s.splitExecute(st, types, payload, vals); err != nil {
		return err
	}
	if err := s.encryptParams(plan, types, vals, cts, stored, xs); err != nil {
		return err
	}
	out := appendExecute(w.Begin(), payload[:executeHeaderLen], plan, types, vals, cts, s.cmdCT, stored)
	w.End(out)
	return nil
}

// executedStmt finds the prepared statement a COM_STMT_EXECUTE names and the
// parameter types remembered from its last execution. A statement whose
// long data went to an encrypted parameter is refused once.
func (s *session) executedStmt(id uint32) (*stmt, []uint16, error) {
	s.lock()
	st := s.stmts[id]
	var types []uint16
	poisoned := false
	if st != nil {
		types, poisoned = st.types, st.poisoned
		st.poisoned = false
	}
	s.mu.Unlock()
	if st == nil {
		return nil, nil, &mysql.Error{Code: gomysql.ER_UNKNOWN_STMT_HANDLER, State: "HY000",
			Message: "dbproxy: unknown prepared statement handler"}
	}
	if poisoned {
		return nil, nil, refused(errors.New("dbproxy: statement refused: long data was sent for an encrypted parameter"))
	}
	return st, types, nil
}

// preparedSessionChange follows a prepared SET (or PREPARE/EXECUTE): its
// values are parameters the proxy does not see, so what it may change
// becomes unknown.
func (s *session) preparedSessionChange(c *mysqlsql.SessionChange) {
	if c.Global {
		s.ic.lex.invalidate()
	}
	s.lock()
	if c.ModeSet != mysqlsql.SettingUnchanged || c.Executes {
		s.lx.modeSt = modeUnknown
	}
	if c.CharsetSet != mysqlsql.SettingUnchanged || c.Executes {
		s.lx.charset = ""
	}
	s.mu.Unlock()
}

// splitExecute reads the NULL bitmap, the parameter types (or the types
// remembered from the last execution, which drivers may omit) and the
// values of a COM_STMT_EXECUTE into vals; nil marks NULL (a non-NULL value
// has at least its length byte or fixed-size bytes, except the empty slice,
// which is made non-nil). It returns the types in force.
func (s *session) splitExecute(st *stmt, types []uint16, payload []byte, vals [][]byte) ([]uint16, error) {
	n := len(vals)
	bm := (n + 7) / 8
	p := executeHeaderLen
	if len(payload) < p+bm+1 {
		return nil, failed("malformed COM_STMT_EXECUTE", nil)
	}
	nulls := payload[p : p+bm]
	p += bm
	bound := payload[p]
	p++
	if bound == 1 {
		if len(payload) < p+2*n {
			return nil, failed("malformed COM_STMT_EXECUTE", nil)
		}
		types = s.rememberTypes(st, types, payload[p:p+2*n])
		p += 2 * n
	}
	if len(types) != n {
		return nil, failed("COM_STMT_EXECUTE without parameter types", nil)
	}
	for i := 0; i < n; i++ {
		if nulls[i/8]&(1<<(i%8)) != 0 || byte(types[i]) == gomysql.MYSQL_TYPE_NULL {
			continue
		}
		k, err := binLen(byte(types[i]), payload, p)
		if err != nil || p+k > len(payload) {
			return nil, failed("malformed COM_STMT_EXECUTE", err)
		}
		vals[i] = payload[p : p+k : p+k]
		if vals[i] == nil {
			vals[i] = []byte{}
		}
		p += k
	}
	return types, nil
}

// rememberTypes returns the 2-byte parameter types in raw. Drivers rebind
// the same types on every execution: the remembered slice (never modified
// once stored) is kept when it matches.
func (s *session) rememberTypes(st *stmt, types []uint16, raw []byte) []uint16 {
	n := len(raw) / 2
	same := len(types) == n
	for i := 0; same && i < n; i++ {
		same = types[i] == binary.LittleEndian.Uint16(raw[2*i:])
	}
	if same {
		return types
	}
	types = make([]uint16, n)
	for i := range types {
		types[i] = binary.LittleEndian.Uint16(raw[2*i:])
	}
	s.lock()
	st.types = types
	s.mu.Unlock()
	return types
}

// encryptParams encrypts the values bound for encrypted columns: stored
// values into one reused buffer (stored[i] are the bounds of parameter i's
// ciphertext in s.cmdCT), lookups into cts[i], one ciphertext per live key
// version. A value that is not valid for its column's type is refused.
func (s *session) encryptParams(plan *mysqlsql.Plan, types []uint16, vals [][]byte, cts [][][]byte, stored [][2]int, xs *exState) error {
	s.cmdCT = s.cmdCT[:0]
	clear(s.cmdMatches)
	s.cmdMatch, s.cmdMatches = reusable(s.cmdMatch)[:0], s.cmdMatches[:0]
	c := s.cipher.Load() // one principal for the whole command
	for i, pr := range plan.Params {
		if pr.Role == sqlplan.RolePlain || vals[i] == nil {
			continue
		}
		var err error
		loc, err := s.zoneFor(pr.Column)
		if err != nil {
			return refused(fmt.Errorf("dbproxy: statement refused: %s: %w", pr.Column, err))
		}
		s.cmdCanon, err = canonParam(s.cmdCanon[:0], pr.Column, types[i], vals[i], loc)
		if err != nil {
			return refused(fmt.Errorf("dbproxy: statement refused: %s: parameter %d is not a valid %s (%w)", pr.Column, i+1, pr.Column.Type, err))
		}
		canon := s.cmdCanon
		switch pr.Role {
		case sqlplan.RoleStore:
			start := len(s.cmdCT)
			ct, err := c.AppendStore(s.ctx, s.cmdCT, pr.Column, canon)
			if err != nil {
				return keyError("cannot encrypt a parameter for "+pr.Column.String(), err)
			}
			s.cmdCT, stored[i] = ct, [2]int{start, len(ct)}
		case sqlplan.RoleMatch:
			// A grown cmdMatch leaves the earlier lookups' ciphertexts in
			// the old array, where cts still finds them.
			n := len(s.cmdMatches)
			buf, list, err := c.AppendMatch(s.ctx, s.cmdMatch, s.cmdMatches, pr.Column, canon)
			if err != nil {
				return keyError("cannot encrypt a parameter for "+pr.Column.String(), err)
			}
			s.cmdMatch, s.cmdMatches = buf, list
			m := list[n:len(list):len(list)]
			if len(m) > mysqlsql.MatchSlots || len(m) == 0 {
				return refused(fmt.Errorf("dbproxy: statement refused: %s: %w", pr.Column, mysqlsql.ErrTooManyVersions))
			}
			cts[i] = m
			if xs != nil {
				xs.matches.RecordMatch(pr.Column, canon, m)
			}
		default:
			return failed("invalid parameter role", nil)
		}
	}
	return nil
}

// appendExecute appends the server's COM_STMT_EXECUTE: header, NULL bitmap,
// types (BLOB for ciphertext) and values in the server statement's parameter
// order (plan.ServerParams; a lookup parameter may stand there once per key
// version).
func appendExecute(out, header []byte, plan *mysqlsql.Plan, types []uint16, vals [][]byte, cts [][][]byte, ctBuf []byte, stored [][2]int) []byte {
	sps := plan.ServerParams
	if plan.Passthrough {
		sps = make([]mysqlsql.ServerParam, len(vals))
		for i := range sps {
			sps[i].Client = i
		}
	}
	m := len(sps)
	out = append(out, header...)
	bmStart := len(out)
	for i := 0; i < (m+7)/8; i++ {
		out = append(out, 0)
	}
	out = append(out, 1)
	for j, sp := range sps {
		c := sp.Client
		t := types[c]
		if vals[c] == nil {
			out[bmStart+j/8] |= 1 << (j % 8)
		} else if plan.Params[c].Role != sqlplan.RolePlain {
			t = uint16(gomysql.MYSQL_TYPE_BLOB)
		}
		out = binary.LittleEndian.AppendUint16(out, t)
	}
	for _, sp := range sps {
		c := sp.Client
		if vals[c] == nil {
			continue
		}
		if plan.Params[c].Role == sqlplan.RolePlain {
			out = append(out, vals[c]...)
			continue
		}
		var ct []byte
		if list := cts[c]; list != nil {
			ct = list[len(list)-1]
			if sp.Version < len(list) {
				ct = list[sp.Version]
			}
		} else {
			ct = ctBuf[stored[c][0]:stored[c][1]]
		}
		out = gomysql.AppendLengthEncodedInteger(out, uint64(len(ct)))
		out = append(out, ct...)
	}
	return out
}

// canonParam converts one binary-protocol parameter to the canonical
// encoding of col's type. The error never carries the value.
func canonParam(dst []byte, col *rules.ColumnRule, typ uint16, v []byte, loc *time.Location) ([]byte, error) {
	unsigned := typ&paramUnsigned != 0
	var num [32]byte // a number's text
	var txt []byte
	switch byte(typ) {
	case gomysql.MYSQL_TYPE_TINY:
		txt = intText(num[:0], v, 1, unsigned)
	case gomysql.MYSQL_TYPE_SHORT, gomysql.MYSQL_TYPE_YEAR:
		txt = intText(num[:0], v, 2, unsigned)
	case gomysql.MYSQL_TYPE_LONG, gomysql.MYSQL_TYPE_INT24:
		txt = intText(num[:0], v, 4, unsigned)
	case gomysql.MYSQL_TYPE_LONGLONG:
		txt = intText(num[:0], v, 8, unsigned)
	case gomysql.MYSQL_TYPE_FLOAT:
		txt = strconv.AppendFloat(num[:0], float64(math.Float32frombits(binary.LittleEndian.Uint32(v))), 'g', -1, 32)
	case gomysql.MYSQL_TYPE_DOUBLE:
		txt = strconv.AppendFloat(num[:0], math.Float64frombits(binary.LittleEndian.Uint64(v)), 'g', -1, 64)
	case gomysql.MYSQL_TYPE_DATE, gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_TIMESTAMP:
		var err error
		if txt, err = dateText(v, col.Type == value.TypeDate); err != nil {
			return dst, err
		}
	case gomysql.MYSQL_TYPE_TIME, gomysql.MYSQL_TYPE_NULL:
		return dst, errors.New("unsupported parameter type")
	default:
		s, _, _, err := readLenenc(v, 0)
		if err != nil {
			return dst, err
		}
		txt = s
	}
	out, err := value.AppendCanonicalMySQLText(dst, col.Type, txt, loc)
	if err != nil {
		return dst, errKind(err)
	}
	return out, nil
}

// intText appends to dst the little-endian integer of size bytes at the
// start of v as decimal text.
func intText(dst, v []byte, size int, unsigned bool) []byte {
	var u uint64
	for i := size - 1; i >= 0; i-- {
		u = u<<8 | uint64(v[i])
	}
	if unsigned {
		return strconv.AppendUint(dst, u, 10)
	}
	shift := 64 - 8*size // sign-extends the top bit of the value
	return strconv.AppendInt(dst, int64(u<<shift)>>shift, 10)
}

func errKind(err error) error {
	for _, k := range []error{value.ErrSyntax, value.ErrRange, value.ErrUnsupported} {
		if errors.Is(err, k) {
			return k
		}
	}
	return errors.New("invalid value")
}

// dateText renders a binary DATE/DATETIME parameter as MySQL text.
func dateText(v []byte, dateOnly bool) ([]byte, error) {
	if len(v) < 1 || int(v[0]) != len(v)-1 {
		return nil, errors.New("malformed date")
	}
	b := v[1:]
	var y, mo, d, h, mi, s int
	var us uint32
	switch len(b) {
	case 0:
		return nil, errors.New("zero date")
	case 4, 7, 11:
		y, mo, d = int(binary.LittleEndian.Uint16(b)), int(b[2]), int(b[3])
		if len(b) >= 7 {
			h, mi, s = int(b[4]), int(b[5]), int(b[6])
		}
		if len(b) == 11 {
			us = binary.LittleEndian.Uint32(b[7:])
		}
	default:
		return nil, errors.New("malformed date")
	}
	if dateOnly {
		if h != 0 || mi != 0 || s != 0 || us != 0 {
			return nil, errors.New("time part in a date")
		}
		return fmt.Appendf(nil, "%04d-%02d-%02d", y, mo, d), nil
	}
	return fmt.Appendf(nil, "%04d-%02d-%02d %02d:%02d:%02d.%06d", y, mo, d, h, mi, s, us), nil
}
