package mysql

import (
	"encoding/binary"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// serverRefused counts a login the server refused with ERR packet p as a
// failed authentication when it is an access denial (SQLSTATE 28000, or
// errors 1044, 1045 and 1698 however the server words them).
func (s *session) serverRefused(p []byte) {
	if len(p) < 3 || p[0] != gomysql.ERR_HEADER {
		return
	}
	code := binary.LittleEndian.Uint16(p[1:3])
	state := len(p) >= 9 && p[3] == '#' && string(p[4:9]) == stateAccessDenied
	if state || code == gomysql.ER_ACCESS_DENIED_ERROR || code == gomysql.ER_DBACCESS_DENIED_ERROR ||
		code == gomysql.ER_ACCESS_DENIED_NO_PASSWORD_ERROR {
		s.h.Obs.AuthFailed()
	}
}

// proxyRefused counts a login the proxy itself refused with e as a failed
// authentication when it is an access denial.
func (s *session) proxyRefused(e *Error) {
	if e.State == stateAccessDenied || e.Code == codeAccessDenied {
		s.h.Obs.AuthFailed()
	}
}
