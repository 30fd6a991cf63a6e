package pgcrypt

import (
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// deniedResponse is the client's error when the session's Guard refused a
// use of a column's key (insufficient_privilege, naming the column); nil
// for any other error.
func deniedResponse(err error) *pgproto3.ErrorResponse {
	if err == nil {
		return nil
	}
	var r *fieldcrypt.RefusedError
	if !errors.As(err, &r) {
		return nil
	}
	return errorResponse(sqlplan.StateInsufficientPrivilege, "dbproxy: statement refused: "+r.Error())
}

// decryptFailure is the client's error when a value of col could not be
// decrypted for a result (rows or COPY TO): the Guard's refusal as
// insufficient_privilege, any other failure as data corruption.
func decryptFailure(col *rules.ColumnRule, err error) *pgproto3.ErrorResponse {
	if denied := deniedResponse(err); denied != nil {
		return denied
	}
	return errorResponse("XX001", "dbproxy: a value of column "+col.String()+" cannot be decrypted: "+err.Error())
}

// copyEncryptError is the error that fails a COPY FROM whose value of col
// could not be encrypted: the Guard's refusal as is (it names the column),
// any other error without its details.
func copyEncryptError(col *rules.ColumnRule, err error) error {
	var r *fieldcrypt.RefusedError
	if errors.As(err, &r) {
		return r
	}
	return errors.New("column " + col.String() + ": encryption failed")
}
