package pgcrypt

import (
	"context"
	"errors"
	"log/slog"
	"maps"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// Exported for the black-box tests.
var (
	NumericTextToBinary = numericTextToBinary
	NumericBinaryToText = numericBinaryToText
)

// ArrayElems lists the non-NULL elements of an array value.
func ArrayElems(src []byte, format int16) ([]string, error) {
	var out []string
	err := arrayElems(src, format, func(e []byte, _ bool) error {
		out = append(out, string(e))
		return nil
	})
	return out, err
}

// BenchSession is a session without a relay or a catalog connection, for
// benchmarks and tests of the message handlers.
type BenchSession struct{ s *session }

// NewBenchSession returns a session of database db planned over cat, whose
// result-side catalog knows the relations of tables (OID -> encrypted
// columns by attribute number).
func NewBenchSession(ctx context.Context, set *rules.Set, enc *rules.Encryptor, cat pgsql.Catalog, db string,
	tables map[uint32]map[int16]*rules.ColumnRule) (*BenchSession, error) {
	ic, err := New(Options{Rules: set, Encryptor: enc,
		Connect: func(context.Context, string, string) (*pgx.Conn, error) {
			return nil, errors.New("no catalog connection")
		}})
	if err != nil {
		return nil, err
	}
	dset := set.ForDatabase(db)
	p, err := pgsql.New(pgsql.Options{Rules: dset, Database: db, Catalog: cat})
	if err != nil {
		return nil, err
	}
	c := newCatalog(db, "u", dset, ic.opts.Connect)
	for oid, cols := range tables {
		c.tables[oid] = &tableInfo{found: true, cols: cols}
	}
	c.publishLocked()
	s := &session{ic: ic, db: &dbState{planner: p, catalog: c}, rules: dset, ctx: ctx,
		log: slog.New(slog.DiscardHandler), lex: lexSettings{clientEncoding: "UTF8"},
		searchPath: searchPathState{current: "public", known: true, asked: true, // no server to ask
			answers: make(chan spAnswer, 1), preparedUnder: map[string]string{}}}
	s.cipher = fieldcrypt.New(enc, proxy.Principal{}, fieldcrypt.Options{})

	return &BenchSession{s: s}, nil
}

// Frontend handles a client message.
func (b *BenchSession) Frontend(typ byte, body []byte, w *postgres.Writer) error {
	return b.s.frontend(typ, body, w)
}

// Backend handles a server message.
func (b *BenchSession) Backend(typ byte, body []byte, w *postgres.Writer) error {
	return b.s.backend(typ, body, w)
}

// Pending returns the number of client messages awaiting a response.
func (b *BenchSession) Pending() int {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	return b.s.pending.len()
}

// PurgeCatalog acts as if DDL ran (the relations stay known).
func (b *BenchSession) PurgeCatalog() {
	c := b.s.db.catalog
	c.mu.Lock()
	saved := maps.Clone(c.tables)
	c.mu.Unlock()
	c.purge(context.Background())
	c.mu.Lock()
	maps.Copy(c.tables, saved)
	c.publishLocked()
	c.mu.Unlock()
}

// DataRow rewrites a DataRow of a result whose columns are cols, in text
// format.
func (b *BenchSession) DataRow(cols []*rules.ColumnRule, body []byte, w *postgres.Writer) error {
	b.s.result.cols, b.s.result.formats, b.s.result.failed, b.s.result.matches = cols, nil, false, nil
	return b.s.dataRow(body, w)
}
