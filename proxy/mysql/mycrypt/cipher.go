package mycrypt

import (
	"bytes"
	"errors"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy/mysql"
)

// keyError is the client's error for a value that could not be encrypted
// or decrypted: when the session's Guard refused the use of the column's
// key, a column access denied error (1143, SQLSTATE 42000) naming the
// column; otherwise failed(msg, err).
func keyError(msg string, err error) *mysql.Error {
	var r *fieldcrypt.RefusedError
	if errors.As(err, &r) {
		return &mysql.Error{Code: gomysql.ER_COLUMNACCESS_DENIED_ERROR, State: "42000",
			Message: "dbproxy: statement refused: " + r.Error(), Cause: err}
	}
	return failed(msg, err)
}

// followChangeUser binds the session's cipher to the user and database a
// COM_CHANGE_USER payload names, from this command on: the Guard and the
// Monitor see the new user. A malformed payload keeps the user and clears
// the database (the server refuses such a command anyway).
func (s *session) followChangeUser(payload []byte) {
	c := s.cipher.Load()
	who := c.Principal()
	user, db, ok := changeUserNames(payload, s.caps)
	if ok {
		who.User = user
	}
	who.Database = db
	s.cipher.Store(c.For(who))
}

// changeUserNames reads the user and database of a COM_CHANGE_USER
// payload (see changeUserCharset for its layout); ok is false if the user
// is missing; db is "" if it is missing or malformed.
func changeUserNames(p []byte, caps uint64) (user, db string, ok bool) {
	if len(p) < 2 {
		return "", "", false
	}
	p = p[1:]
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		return "", "", false
	}
	user, p = string(p[:i]), p[i+1:]
	if caps&uint64(gomysql.CLIENT_SECURE_CONNECTION) != 0 {
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return user, "", true
		}
		p = p[1+int(p[0]):]
	} else if i = bytes.IndexByte(p, 0); i >= 0 {
		p = p[i+1:]
	} else {
		return user, "", true
	}
	if i = bytes.IndexByte(p, 0); i >= 0 {
		db = string(p[:i])
	}
	return user, db, true
}
