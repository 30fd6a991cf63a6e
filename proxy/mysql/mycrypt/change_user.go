package mycrypt

import (
	"bytes"
	"encoding/binary"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// changeUser is what the encryption layer reads of a COM_CHANGE_USER
// payload:
//
//	0x11 || cstring user || auth (uint8 length + data with
//	SECURE_CONNECTION, else cstring) || cstring database ||
//	uint16 collation || …
//
// Each field is read only if every field before it is well formed.
type changeUser struct {
	user, db     string
	userOK       bool // the user is present
	collation    uint16
	hasCollation bool
}

// parseChangeUser reads a COM_CHANGE_USER payload sent under the client
// capabilities caps.
func parseChangeUser(p []byte, caps uint64) changeUser {
	var cu changeUser
	if len(p) < 2 {
		return cu
	}
	p = p[1:]
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		return cu
	}
	cu.user, cu.userOK, p = string(p[:i]), true, p[i+1:]
	if caps&uint64(gomysql.CLIENT_SECURE_CONNECTION) != 0 {
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return cu
		}
		p = p[1+int(p[0]):]
	} else if i = bytes.IndexByte(p, 0); i >= 0 {
		p = p[i+1:]
	} else {
		return cu
	}
	if i = bytes.IndexByte(p, 0); i < 0 {
		return cu
	}
	cu.db, p = string(p[:i]), p[i+1:]
	if len(p) >= 2 {
		cu.collation, cu.hasCollation = binary.LittleEndian.Uint16(p), true
	}
	return cu
}

// charset is the character set the command asks for, "" (unknown) if it
// is absent, malformed, or not one the proxy reads safely
// (collationCharset).
func (cu changeUser) charset() string {
	if !cu.hasCollation || cu.collation > 255 {
		return ""
	}
	return collationCharset(byte(cu.collation))
}
