package pgcrypt

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// observed is what a session reports to its listener's Observer: each
// statement's outcome, and each refusal (also logged, see refused).
// Frontend goroutine only.
type observed struct {
	obs proxy.Observer // nil: none
	// typ and body are the client message being handled (body valid
	// during the Frontend call only): the refusal log finds the statement
	// text in them.
	typ  byte
	body []byte
}

// observedFrontend is the session's Frontend hook: frontend, with the
// message at hand remembered for the refusal log.
func (s *session) observedFrontend(typ byte, body []byte, w *postgres.Writer) error {
	s.seen.typ, s.seen.body = typ, body
	err := s.frontend(typ, body, w)
	s.seen.body = nil
	return err
}

// statement counts a simple Query or a Bind that went upstream, rewritten
// (values encrypted, lookups rendered) or as the client sent it.
func (s *session) statement(rewritten bool) {
	switch {
	case s.seen.obs == nil:
	case rewritten:
		s.seen.obs.Rewritten()
	default:
		s.seen.obs.Forwarded()
	}
}

// planned counts how the plan of a statement text (a simple Query, a
// Parse, a statement prepared again) was come by.
func (s *session) planned(src sqlplan.Source) {
	if s.seen.obs != nil {
		s.seen.obs.Planned(src.String())
	}
}

// refused counts and logs the refusal e of the statement at hand, once:
// every refusal goes through refuseQuery or refuseBatch.
func (s *session) refused(e *pgproto3.ErrorResponse) {
	proxy.LogRefusal(s.ctx, s.log, proxy.ObserverOrNop(s.seen.obs), proxy.Refusal{
		Statement: s.statementText(),
		Command:   messageNames[s.seen.typ],
		SQLState:  e.Code,
		Message:   e.Message,
		Column:    proxy.RefusedColumn(e.Message),
	})
}

// messageNames name the refused messages that may carry no SQL text.
var messageNames = map[byte]string{pgmsg.TypeBind: "Bind", pgmsg.TypeExecute: "Execute",
	pgmsg.TypeDescribe: "Describe", pgmsg.TypeFunctionCall: "FunctionCall"}

// statementText returns the SQL text of the message at hand: a Query's,
// a Parse's, or the statement a Bind names; nil for other messages.
func (s *session) statementText() []byte {
	body := s.seen.body
	switch s.seen.typ {
	case pgmsg.TypeQuery:
		if len(body) > 0 {
			return body[:len(body)-1]
		}
	case pgmsg.TypeParse:
		if m, err := pgmsg.ParseParse(body); err == nil {
			return m.Query
		}
	case pgmsg.TypeBind:
		m, err := pgmsg.ParseBind(body)
		if err != nil {
			return nil
		}
		if st := s.stmts[string(m.Statement)]; st != nil {
			if st.sql != "" {
				return []byte(st.sql)
			}
			return []byte(st.text)
		}
	}
	return nil
}
