package integration

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rewriter is a stand-in for the encryption layer: it rewrites one query
// on the way in and one column's values on the way out.
type rewriter struct{ sessions, queries, rows atomic.Int64 }

func (r *rewriter) NewSession(ctx context.Context, info postgres.SessionInfo) (*postgres.SessionHooks, error) {
	r.sessions.Add(1)
	if info.ServerParams["server_version"] == "" || info.User == "" {
		return nil, &postgres.Error{Code: "XX000", Message: "session info incomplete"}
	}
	h := &postgres.SessionHooks{}
	h.FrontendTypes.Add('Q', 'P')
	h.Frontend = func(typ byte, body []byte, w *postgres.Writer) error {
		r.queries.Add(1)
		if typ == 'Q' && strings.Contains(string(body), "'hidden'") {
			return w.Send(&pgproto3.Query{String: strings.ReplaceAll(strings.TrimSuffix(string(body), "\x00"), "'hidden'", "'revealed'")})
		}
		w.Forward(typ, body)
		return nil
	}
	h.BackendTypes.Add('D')
	h.Backend = func(typ byte, body []byte, w *postgres.Writer) error {
		var row pgproto3.DataRow
		if err := row.Decode(body); err != nil {
			return err
		}
		if len(row.Values) == 1 && string(row.Values[0]) == "ciphertext" {
			r.rows.Add(1)
			return w.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("plaintext")}})
		}
		w.Forward(typ, body)
		return nil
	}
	return h, nil
}

func TestPGInterceptor(t *testing.T) {
	pg := testenv.StartPostgres(t)
	rw := &rewriter{}
	p := startPGProxy(t, pg, proxyOpts{Interceptor: rw})
	ctx := testCtx(t)
	c := connectMode(t, p.DSN("disable"), pgx.QueryExecModeSimpleProtocol)
	var s string
	if err := c.QueryRow(ctx, `select 'hidden'`).Scan(&s); err != nil || s != "revealed" {
		t.Fatalf("rewritten query returned %q, %v", s, err)
	}
	if err := c.QueryRow(ctx, `select 'ciphertext'`).Scan(&s); err != nil || s != "plaintext" {
		t.Fatalf("rewritten row %q, %v", s, err)
	}
	// Untouched traffic still flows, including the extended protocol.
	var n int
	if err := c.QueryRow(ctx, `select count(*) from generate_series(1, 1000)`).Scan(&n); err != nil || n != 1000 {
		t.Fatalf("count %d, %v", n, err)
	}
	c2 := testenv.ConnectPG(t, p.DSN("disable"))
	if err := c2.QueryRow(ctx, `select $1::text`, "ciphertext").Scan(&s); err != nil || s != "plaintext" {
		t.Fatalf("extended protocol row %q, %v", s, err)
	}
	if rw.sessions.Load() != 2 || rw.queries.Load() < 4 || rw.rows.Load() != 2 {
		t.Fatalf("hooks saw %d sessions, %d queries, %d rows", rw.sessions.Load(), rw.queries.Load(), rw.rows.Load())
	}
}
