package mycrypt

import (
	"errors"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
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

// changeUserCipher returns the session's cipher bound to the user and
// database a COM_CHANGE_USER payload names. It takes effect only once the
// server accepted the change (changeUserDone): MariaDB keeps a session
// whose COM_CHANGE_USER failed, under its old user, and a cipher (and so
// an access policy) switched at the command would give that session the
// named user's rights. A malformed payload keeps the user and clears the
// database (the server refuses such a command anyway).
func (s *session) changeUserCipher(payload []byte) *fieldcrypt.Cipher {
	c := s.cipher.Load()
	who := c.Principal()
	cu := parseChangeUser(payload, s.caps)
	if cu.userOK {
		who.User = cu.user
	}
	who.Database = cu.db
	return c.For(who)
}

// changeUserDone applies the server's answer to a COM_CHANGE_USER: on OK
// the session is the new user's from now on; on ERR it stays the old
// user's, but the character set it runs under is no longer known (the
// proxy assumed the command's), so statements that need it are refused
// until the client sets one.
func (s *session) changeUserDone(st *exState, ok bool) {
	if ok {
		s.cipher.Store(st.changeUser)
		return
	}
	s.lock()
	s.lx.charset = ""
	s.mu.Unlock()
}

// checkKeyless refuses a plan that writes NULL into, or copies under the
// same key into, an encrypted column the session's access policy does not
// let it write, or copies from one it may not read (no key is used, so no
// Encrypt would ask the policy).
func (s *session) checkKeyless(plan *mysqlsql.Plan) error {
	if len(plan.Keyless) == 0 {
		return nil
	}
	c := s.cipher.Load()
	for _, w := range plan.Keyless {
		if err := c.CheckKeyless(s.ctx, w.Column, w.From); err != nil {
			return keyError("statement refused", err)
		}
	}
	return nil
}
