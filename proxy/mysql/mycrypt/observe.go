package mycrypt

import (
	"errors"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// observedCommand is the session's Command hook: command, with its outcome
// reported to the listener's Observer (s.obs): COM_QUERY and
// COM_STMT_EXECUTE as forwarded or rewritten, and every refusal (an ERR
// answered by the proxy) counted and logged once.
func (s *session) observedCommand(x *mysql.Exchange, payload []byte, w *mysql.Writer) error {
	err := s.command(x, payload, w)
	if err != nil {
		var me *mysql.Error
		if errors.As(err, &me) && !me.Fatal {
			s.refusal(x, payload, me)
		}
		return err
	}
	switch x.Command {
	case gomysql.COM_QUERY:
		st, _ := x.State.(*exState)
		s.statement(st != nil && st.plan != nil && !st.plan.Passthrough)
	case gomysql.COM_STMT_EXECUTE:
		st, _ := x.State.(*exState)
		s.statement(st != nil && st.plan != nil && (!st.plan.Passthrough || st.plan.HasEncryptedParams()))
	}
	return nil
}

// statement counts a statement that went upstream, rewritten or as sent.
func (s *session) statement(rewritten bool) {
	switch {
	case s.obs == nil:
	case rewritten:
		s.obs.Rewritten()
	default:
		s.obs.Forwarded()
	}
}

// planned counts how the plan of a statement text (COM_QUERY,
// COM_STMT_PREPARE) was come by.
func (s *session) planned(src sqlplan.Source) {
	if s.obs != nil {
		s.obs.Planned(src.String())
	}
}

// refusal counts and logs command x (payload), which the proxy answered
// with me instead of forwarding it.
func (s *session) refusal(x *mysql.Exchange, payload []byte, me *mysql.Error) {
	r := proxy.Refusal{SQLState: refusalState(me), Message: me.Message, Code: int(me.Code),
		Column: proxy.RefusedColumn(me.Message)}
	switch x.Command {
	case gomysql.COM_QUERY, gomysql.COM_STMT_PREPARE:
		r.Statement = payload[1:]
	case gomysql.COM_STMT_EXECUTE:
		r.Command = "COM_STMT_EXECUTE"
	case gomysql.COM_STMT_SEND_LONG_DATA:
		r.Command = "COM_STMT_SEND_LONG_DATA"
	}
	proxy.LogRefusal(s.ctx, s.log, proxy.ObserverOrNop(s.obs), r)
}

// refusalState classifies a refusal as PostgreSQL's SQLSTATEs do (see
// proxy.RefusalReason): the planner's own when it refused, else from the
// error the client gets.
func refusalState(me *mysql.Error) string {
	var r *sqlplan.Refusal
	switch {
	case errors.As(me.Cause, &r):
		return r.SQLState
	case me.Code == gomysql.ER_COLUMNACCESS_DENIED_ERROR:
		return sqlplan.StateInsufficientPrivilege
	case me.Code == codeRefused:
		return sqlplan.StateFeatureNotSupported
	}
	return me.State
}
