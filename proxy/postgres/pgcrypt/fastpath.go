package pgcrypt

import (
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// FunctionCall ('F', the fast-path interface) calls a function by OID with
// arguments the proxy cannot attribute to a column: query_to_xml or dblink
// called that way would run SQL text, with its values in clear, that never
// went through the planner. Unless dynamic SQL is allowed, only the
// large-object functions that libpq calls this way (lo_import, lo_export,
// lo_read, …) are let through.

// largeObjectFuncs are the OIDs of pg_catalog's large-object functions
// (fixed in pg_proc.dat): lo_open, lo_close, loread, lowrite, lo_lseek,
// lo_creat, lo_tell, lo_unlink, lo_truncate, lo_create, lo_lseek64,
// lo_tell64, lo_truncate64.
var largeObjectFuncs = map[uint32]bool{
	952: true, 953: true, 954: true, 955: true, 956: true, 957: true, 958: true, 964: true,
	1004: true, 715: true, 3170: true, 3171: true, 3172: true,
}

var errFunctionCall = errorResponse(sqlplan.StateInsufficientPrivilege,
	"dbproxy: statement refused: a fast-path function call (other than a large-object function) can run SQL the proxy cannot see (allow_dynamic_sql is off on this listener)")

// functionCallAllowed reports whether the FunctionCall message body may be
// forwarded.
func (s *session) functionCallAllowed(body []byte) bool {
	if s.ic.opts.AllowDynamicSQL {
		return true
	}
	fc, err := pgmsg.ParseFunctionCall(body)
	return err == nil && largeObjectFuncs[fc.Function]
}
