package pgcrypt

import (
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// TestSearchPathFromReport: with a server that reports search_path
// (PostgreSQL 18), the proxy takes it from ParameterStatus instead of
// asking, once every request sent before has been answered and as long as
// the role "$user" stands for is known.
func TestSearchPathFromReport(t *testing.T) {
	newSession := func(path string) *session {
		s := &session{}
		s.searchPath.reported, s.searchPath.reportedPath = true, path
		s.batch.starting = true
		return s
	}
	status := func(s *session, name, val string) {
		s.parameterStatus([]byte(name + "\x00" + val + "\x00"))
	}

	s := newSession("tenant, public")
	var w postgres.Writer
	if err := s.ensureSearchPath(&w); err != nil || !s.searchPath.known || s.searchPath.current != "tenant, public" || len(w.Bytes()) != 0 {
		t.Fatalf("start: known %v %q, sent %q (%v)", s.searchPath.known, s.searchPath.current, w.Bytes(), err)
	}
	// SET search_path: unknown until the request is answered.
	s.searchPathChanged(pgsql.EffectSearchPath)
	s.push(s.newEvent(event{kind: 'Q'}))
	if s.searchPathFromReport() {
		t.Fatal("taken from the report while a request is in flight")
	}
	status(s, "search_path", "public")
	s.pop()
	if !s.searchPathFromReport() || s.searchPath.current != "public" {
		t.Fatalf("after the answer: %q", s.searchPath.current)
	}

	// "$user" needs the role: read once by the hidden query, then kept
	// until a statement may change the role.
	s = newSession(`"$user", public`)
	if s.searchPathFromReport() {
		t.Fatal(`"$user" substituted without knowing the role`)
	}
	s.searchPath.user, s.searchPath.userKnown = `a"b`, true
	if !s.searchPathFromReport() || s.searchPath.current != `"a""b", public` {
		t.Fatalf("with the role known: %q", s.searchPath.current)
	}
	s.searchPathChanged(pgsql.EffectSearchPath)
	if !s.searchPath.userKnown {
		t.Fatal("SET search_path forgot the role")
	}
	s.searchPathChanged(pgsql.EffectSearchPath | pgsql.EffectRole)
	if s.searchPath.userKnown || s.searchPathFromReport() {
		t.Fatal("SET ROLE kept the role")
	}
	// The end of a transaction that changed it may undo a SET ROLE.
	s.searchPath.userKnown = true
	s.searchPathChanged(pgsql.EffectSearchPath)
	s.noteReady([]byte{'I'})
	s.batch.starting = false // ensureSearchPath only settles the stale mark
	if err := s.ensureSearchPath(&w); err != nil || s.searchPath.userKnown {
		t.Fatalf("after the transaction: role known %v (%v)", s.searchPath.userKnown, err)
	}

	// A function changed it: no statement told, the report does.
	s = newSession("tenant")
	if err := s.ensureSearchPath(&w); err != nil || s.searchPath.current != "tenant" {
		t.Fatal(err)
	}
	status(s, "search_path", "public")
	if err := s.ensureSearchPath(&w); err != nil || s.searchPath.current != "public" || len(w.Bytes()) != 0 {
		t.Fatalf("after a report: %q, sent %q (%v)", s.searchPath.current, w.Bytes(), err)
	}

	// A server that does not report it (before PostgreSQL 18).
	s = newSession("public")
	s.searchPath.reported = false
	if s.searchPathFromReport() {
		t.Fatal("taken from a report the server does not send")
	}
}
