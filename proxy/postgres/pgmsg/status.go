package pgmsg

var (
	errCommandComplete = &MalformedError{Message: "CommandComplete"}
	errParameterStatus = &MalformedError{Message: "ParameterStatus"}
	errReadyForQuery   = &MalformedError{Message: "ReadyForQuery"}
	errCopyFail        = &MalformedError{Message: "CopyFail"}
)

// ParseCommandComplete returns the command tag of a CommandComplete body
// ("INSERT 0 1", "CREATE TABLE", …).
func ParseCommandComplete(body []byte) ([]byte, error) {
	return decode(body, errCommandComplete, (*reader).cstring)
}

// ParameterStatus is a view of a ParameterStatus body: a run-time setting
// the server reports.
type ParameterStatus struct{ Name, Value []byte }

// ParseParameterStatus decodes a ParameterStatus body.
func ParseParameterStatus(body []byte) (ParameterStatus, error) {
	return decode(body, errParameterStatus, func(r *reader) ParameterStatus {
		return ParameterStatus{Name: r.cstring(), Value: r.cstring()}
	})
}

// ParseReadyForQuery returns the transaction status of a ReadyForQuery
// body (TxIdle, TxBlock or TxFailed).
func ParseReadyForQuery(body []byte) (byte, error) {
	if len(body) != 1 {
		return 0, errReadyForQuery
	}
	return body[0], nil
}

// ParseCopyFail returns the reason a CopyFail body gives.
func ParseCopyFail(body []byte) ([]byte, error) {
	return decode(body, errCopyFail, (*reader).cstring)
}

// AppendCopyFail appends a whole CopyFail message.
func AppendCopyFail(dst []byte, reason string) []byte {
	start := len(dst)
	dst = append(Begin(dst, TypeCopyFail), reason...)
	return End(append(dst, 0), start)
}
