package main

import (
	"context"
	"net"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/metrics"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// *metrics.Listener is what the handlers and the encryption layers report
// a listener's events to.
var _ proxy.Observer = (*metrics.Listener)(nil)

// listenerMetrics returns the metrics of listener name (nil without
// admin:).
func (o *operations) listenerMetrics(name string) *metrics.Listener {
	if o == nil {
		return nil
	}
	return o.metrics.Listener(name)
}

// observe makes the handler options lo report to l (nil: nothing): its
// logins, bytes and statements, and the time each upstream connect takes
// (TCP; the TLS handshake follows in the handler).
func observe(lo *proxy.ListenerOptions, l *metrics.Listener) {
	if l == nil {
		return
	}
	lo.Observer = l
	dial := lo.Dial
	if dial == nil {
		dial = proxy.UpstreamDialer(lo.UpstreamKeepalive).DialContext
	}
	lo.Dial = timedDial(dial, l)
}

// timedDial reports the duration or failure of each dial to l.
func timedDial(dial proxy.DialFunc, l *metrics.Listener) proxy.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now()
		c, err := dial(ctx, network, addr)
		l.UpstreamConnect(time.Since(start), err)
		return c, err
	}
}

// catalogTracer reports each query of a PostgreSQL catalog connection as
// a catalog read (pgx.QueryTracer).
type catalogTracer struct{ reads *metrics.Listener }

var _ pgx.QueryTracer = catalogTracer{}

func (t catalogTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t catalogTracer) TraceQueryEnd(_ context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	t.reads.CatalogRefreshed(d.Err)
}

// countedCatalog is a MySQL listener's catalog with each read reported.
type countedCatalog struct {
	*mycrypt.Catalog
	reads *metrics.Listener
}

// countCatalog returns cat with its reads reported to reads (cat itself
// when reads is nil).
func countCatalog(cat *mycrypt.Catalog, reads *metrics.Listener) interface {
	mysqlsql.Catalog
	mycrypt.ZoneSource
	mycrypt.LexSource
} {
	if reads == nil {
		return cat
	}
	return &countedCatalog{Catalog: cat, reads: reads}
}

func (c *countedCatalog) Columns(ctx context.Context, database, table string) ([]string, error) {
	cols, err := c.Catalog.Columns(ctx, database, table)
	c.reads.CatalogRefreshed(err)
	return cols, err
}

func (c *countedCatalog) ServerTimeZone(ctx context.Context) (zone, system string, err error) {
	zone, system, err = c.Catalog.ServerTimeZone(ctx)
	c.reads.CatalogRefreshed(err)
	return zone, system, err
}

func (c *countedCatalog) ServerLexState(ctx context.Context) (sqlMode, charset, initConnect string, err error) {
	sqlMode, charset, initConnect, err = c.Catalog.ServerLexState(ctx)
	c.reads.CatalogRefreshed(err)
	return sqlMode, charset, initConnect, err
}

func (c *countedCatalog) Relations(ctx context.Context) (mysqlsql.Relations, error) {
	rels, err := c.Catalog.Relations(ctx)
	c.reads.CatalogRefreshed(err)
	return rels, err
}
