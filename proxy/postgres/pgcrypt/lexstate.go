package pgcrypt

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// How the server reads the bytes of a statement depends on two settings of
// the session, and the proxy must read them the same way before it plans
// (and rewrites) a statement:
//
//   - client_encoding: the server converts every Query and Parse string
//     from it to the server encoding when it receives the message, and then
//     lexes the result. In SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 and
//     JOHAB (the client-only encodings) the second byte of a character may
//     be an ASCII byte, so 0x83 0x5C is one character for the server and
//     "a byte, then a backslash" for a reader of the raw bytes: an E'…'
//     string ends at a different place. Statements that need a plan are
//     refused under those encodings and under any encoding the proxy does
//     not know; the server encodings (UTF8, SQL_ASCII, LATIN*, WIN*, EUC_*,
//     KOI8*, ISO_8859_*, MULE_INTERNAL) keep every byte of a multibyte
//     character >= 0x80 and are read as they are.
//   - standard_conforming_strings: off makes a backslash escape inside
//     '…'; statements that need a plan are refused while it is off.
//
// The server reports both (ParameterStatus) at startup and after every
// change, just before the ReadyForQuery of the request that made it: SET,
// SET LOCAL, RESET, set_config, SET NAMES, and the end of a transaction
// that undoes one. Between the moment a request that may change them is
// forwarded and its ReadyForQuery, the proxy does not know them: a statement
// queued behind it (a pipeline) that needs a plan is refused. "May change"
// is read conservatively from the text (lexChanges): a statement starting
// with SET, RESET or DISCARD (or text that cannot be split with certainty),
// any mention of client_encoding, standard_conforming_strings or
// set_config, a FunctionCall message; and, once one of those ran inside a
// transaction, a statement that may end it (COMMIT, END, ABORT, ROLLBACK
// [TO SAVEPOINT], PREPARE TRANSACTION, or CALL and DO, which may commit)
// until the transaction has ended. A simple
// Query string is converted and parsed whole when it arrives, so a SET
// inside it changes nothing for the rest of that string.
//
// A pure ASCII statement is read alike in every encoding: under a
// client-only encoding it may still be planned (when the search_path is
// pure ASCII too), and is forwarded when its plan touches no encrypted
// column (lexPlanAllowed).

// clientEncodings are the client_encoding values (as the server reports
// them) whose multibyte characters never contain a byte below 0x80: the
// server encodings of PostgreSQL.
var clientEncodings = map[string]bool{
	"SQL_ASCII": true, "UTF8": true, "MULE_INTERNAL": true,
	"EUC_JP": true, "EUC_CN": true, "EUC_KR": true, "EUC_TW": true, "EUC_JIS_2004": true,
	"LATIN1": true, "LATIN2": true, "LATIN3": true, "LATIN4": true, "LATIN5": true,
	"LATIN6": true, "LATIN7": true, "LATIN8": true, "LATIN9": true, "LATIN10": true,
	"WIN1250": true, "WIN1251": true, "WIN1252": true, "WIN1253": true, "WIN1254": true,
	"WIN1255": true, "WIN1256": true, "WIN1257": true, "WIN1258": true, "WIN866": true, "WIN874": true,
	"KOI8R": true, "KOI8U": true,
	"ISO_8859_5": true, "ISO_8859_6": true, "ISO_8859_7": true, "ISO_8859_8": true,
}

// safeEncoding reports whether statement text in client encoding enc is
// read by the server as its raw bytes read (see above).
func safeEncoding(enc string) bool { return enc == "UTF8" || clientEncodings[enc] }

var errLexPending = errorResponse(sqlplan.StateFeatureNotSupported,
	"dbproxy: statement refused: a statement ahead of it may change client_encoding or standard_conforming_strings, "+
		"which decide how the server reads it; send it after that statement's result (after a Sync)")

var errSCSOff = errorResponse(sqlplan.StateFeatureNotSupported,
	"dbproxy: statement refused: standard_conforming_strings is off")

// encodingRefusal is the refusal of a statement that needs a plan under
// client encoding enc.
func encodingRefusal(enc string) *pgproto3.ErrorResponse {
	if enc == "" {
		enc = "(not reported)"
	}
	reason := "lets the second byte of a character be an ASCII quote or backslash, so the proxy cannot read the statement as the server does"
	if !clientOnlyEncodings[enc] {
		reason = "is not known to the proxy"
	}
	return errorResponse(sqlplan.StateFeatureNotSupported,
		"dbproxy: statement refused: client_encoding "+enc+" "+reason+"; use client_encoding UTF8 for statements on encrypted tables")
}

// clientOnlyEncodings are PostgreSQL's client-only encodings.
var clientOnlyEncodings = map[string]bool{
	"SJIS": true, "SHIFT_JIS_2004": true, "BIG5": true, "GBK": true, "UHC": true, "GB18030": true, "JOHAB": true,
}

// lexRefusal returns why a statement that needs a plan cannot be read
// exactly as the server will read it now, or nil. encOnly is set when the
// only reason is client_encoding (pure ASCII text is still read alike).
func (s *session) lexRefusal() (e *pgproto3.ErrorResponse, encOnly bool) {
	s.lock()
	enc, pending, stdStringsOff := s.lex.clientEncoding, s.lex.pending, s.lex.stdStringsOff
	s.mu.Unlock()
	switch {
	case pending > 0:
		return errLexPending, false
	case stdStringsOff:
		return errSCSOff, false
	case !safeEncoding(enc):
		return encodingRefusal(enc), true
	}
	return nil, false
}

// lexCertain reports whether the session's statement text can be split
// into statements with certainty from its raw bytes (frontend goroutine).
func (s *session) lexCertain() bool {
	e, _ := s.lexRefusal()
	return e == nil
}

// isASCII reports whether text has no byte >= 0x80.
func isASCII(text []byte) bool {
	for _, c := range text {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// asciiOnly reports whether text and the search_path it is planned under
// (read from the server in the session's encoding) are pure ASCII.
func (s *session) asciiOnly(text []byte) bool {
	return isASCII(text) && isASCII([]byte(s.searchPath.current))
}

// lexPlanAllowed reports whether a plan may go ahead under a client-only
// encoding: text is pure ASCII (read alike in every encoding) and no
// statement of the plan touches an encrypted column or carries values for
// one.
func lexPlanAllowed(text []byte, plan *pgsql.Plan) bool {
	if !isASCII(text) {
		return false
	}
	if plan.Passthrough() {
		return true
	}
	for _, p := range plan.Params {
		if p.Encrypted() {
			return false
		}
	}
	for i := range plan.Statements {
		if k := plan.Statements[i].Kind; k != pgsql.KindPass && k != pgsql.KindDeallocate {
			return false
		}
	}
	return true
}

// lexChanges reports whether statement text, in which sessionWords.scan
// found the words found, may change client_encoding or
// standard_conforming_strings (see above). Frontend goroutine.
func (s *session) lexChanges(text []byte, found uint8) bool {
	if s.lex.inTx.Load() && (!s.lexCertain() || startsStatement(text, txEndWords)) {
		return true
	}
	if found&lexWordAnywhere != 0 {
		return true
	}
	return found&lexWordStart != 0 && s.mayStartWithSet(text)
}

// mayStartWithSet reports whether a statement of text may start with one of
// statementWords (SET, RESET, DISCARD): surely so when the text cannot be
// split into statements with certainty. Frontend goroutine.
func (s *session) mayStartWithSet(text []byte) bool {
	return !s.lexCertain() || startsStatement(text, statementWords)
}

// lexRequest returns the lexChange mark of a request answered by one
// ReadyForQuery (simple Query, FunctionCall, Sync) that is about to be
// queued and forwarded; own says whether the request itself may change the
// settings. It takes over the mark of the extended batch it ends (frontend
// goroutine).
func (s *session) lexRequest(own bool) bool {
	batch := s.batch.lexChange
	s.batch.lexChange = false
	if own && !batch {
		s.lexForwarded()
	}
	return own || batch
}

// lexBatch marks the current extended batch as one that may change the
// settings (an Execute of such a statement): they are unknown from now on
// until the batch's ReadyForQuery (frontend goroutine).
func (s *session) lexBatch() {
	if !s.batch.lexChange {
		s.batch.lexChange = true
		s.lexForwarded()
	}
}

// lexInTx reports whether a request that may change the settings ran in
// the current transaction.
func (s *session) lexInTx() bool { return s.lex.inTx.Load() }

// firstWordIn reports whether the first word of text, after white space
// and comments, is one of words (lower case): for a Parse, which holds
// one statement.
func firstWordIn(text []byte, words []string) bool {
	for i := 0; i < len(text); {
		switch c := text[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '(':
			i++
		case c == '-' && i+1 < len(text) && text[i+1] == '-':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(text) && text[i+1] == '*':
			return startsStatement(text[i:], words) // it skips nested comments
		default:
			return startsStatement(text[i:min(len(text), i+16)], words)
		}
	}
	return false
}

// txEndWords start the statements that may end a transaction (or roll
// back to a savepoint), undoing a SET LOCAL or a SET made in it: CALL and
// DO may run COMMIT in a procedure.
var txEndWords = []string{"commit", "end", "abort", "rollback", "prepare", "call", "do"}

// lexForwarded records that a request that may change the lexing settings
// is on its way (frontend goroutine, before it is forwarded): they are
// unknown until the ReadyForQuery of the request, which the backend
// reports through lexAnswered.
func (s *session) lexForwarded() {
	s.lock()
	s.lex.pending++
	s.lex.inTx.Store(true)
	s.mu.Unlock()
}

// lexAnswered ends a request marked by lexForwarded at its ReadyForQuery
// (backend goroutine); status is the transaction status it reports. Any
// ParameterStatus of the request has arrived by then.
func (s *session) lexAnswered(changed bool, status byte) {
	if !changed && !s.lex.inTx.Load() {
		return // nothing pending (lex.inTx is set while anything is)
	}
	s.lock()
	if changed && s.lex.pending > 0 {
		s.lex.pending--
	}
	if status == 'I' && s.lex.pending == 0 {
		s.lex.inTx.Store(false)
	}
	s.mu.Unlock()
}
