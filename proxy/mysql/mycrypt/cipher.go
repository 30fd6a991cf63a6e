package mycrypt

import (
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
	cu := parseChangeUser(payload, s.caps)
	if cu.userOK {
		who.User = cu.user
	}
	who.Database = cu.db
	s.cipher.Store(c.For(who))
}
