package mycrypt

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// Options configure an Interceptor.
type Options struct {
	// Rules are the encryption rules (rules.DialectMySQL).
	Rules *rules.Set
	// Keys is the key manager (crypto/keys.Manager); or set Encryptor to
	// share one.
	Keys      rules.Keys
	Encryptor *rules.Encryptor
	// Guard, optional, is consulted before each use of a column's key by
	// a session, and may refuse it (fieldcrypt.Guard).
	Guard fieldcrypt.Guard
	// Monitor, optional, is told of each use of a column's key by a
	// session (fieldcrypt.Monitor).
	Monitor fieldcrypt.Monitor
	// Policy, optional, decides what each session may do with each
	// encrypted column (fieldcrypt.Policy): results show the columns as
	// it says, and the uses of keys it does not allow are refused.
	Policy fieldcrypt.Policy
	// Catalog, optional, gives column orders for INSERT and REPLACE without
	// a column list into tables with encrypted columns (see [Catalog]);
	// without one such statements are refused.
	Catalog mysqlsql.Catalog
	// Zones, optional, tells the server's default time_zone, which new
	// sessions start in (see [ZoneSource]; the Catalog is one); without
	// it sessions are assumed to start in UTC.
	Zones ZoneSource
	// AllowDynamicSQL lets dynamic SQL through: PREPARE … FROM a variable,
	// EXECUTE IMMEDIATE, and stored programs whose bodies contain
	// PREPARE/EXECUTE (see mysqlsql.Options). Off by default: the proxy
	// cannot see the statements they run, so a value they store in an
	// encrypted column would be stored as plaintext.
	AllowDynamicSQL bool
	// Lex, optional, tells the server's global sql_mode, character set and
	// init_connect, which new sessions start with (see [LexSource]; the
	// Catalog is one); without it sessions are assumed to start without
	// lexing sql_modes, and strings on encrypted tables must read the same
	// under NO_BACKSLASH_ESCAPES and ANSI_QUOTES.
	Lex LexSource
	// PlanCacheSize is the number of cached plans (0: the planner's
	// default).
	PlanCacheSize int
	Logger        *slog.Logger
}

// Interceptor is the mysql.Interceptor of the encryption layer. It is safe
// for concurrent use.
type Interceptor struct {
	closers   []io.Closer // Close closes them: the catalog connections
	closeOnce sync.Once
	planner   *mysqlsql.Planner
	enc       *rules.Encryptor
	decor     fieldcrypt.Options // the Guard and Monitor of each session's cipher
	rules     *rules.Set
	log       *slog.Logger
	zone      *serverZone
	lex       *serverLex
}

// New returns an Interceptor.
func New(opts Options) (*Interceptor, error) {
	if opts.Rules == nil || opts.Rules.Dialect() != rules.DialectMySQL {
		return nil, errors.New("mycrypt: rules must be a MySQL rule set")
	}
	enc := opts.Encryptor
	if enc == nil {
		if opts.Keys == nil {
			return nil, errors.New("mycrypt: no key manager")
		}
		enc = rules.NewEncryptor(opts.Keys)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	popts := mysqlsql.Options{CacheSize: opts.PlanCacheSize, AllowDynamicSQL: opts.AllowDynamicSQL}
	if src, ok := opts.Catalog.(mysqlsql.RelationSource); ok {
		popts.Relations = newTriggerWarner(src, opts.Rules, log)
		popts.OnRelationsError = func(err error) {
			log.Warn("cannot read the server's views and triggers; the last list read stays in use", "err", err)
		}
	}
	var closers []io.Closer
	for _, src := range []any{opts.Catalog, opts.Zones, opts.Lex} {
		if c, ok := src.(io.Closer); ok && !slices.Contains(closers, c) {
			closers = append(closers, c)
		}
	}
	return &Interceptor{
		closers: closers,
		planner: mysqlsql.New(opts.Rules, opts.Catalog, popts),
		enc:     enc,
		decor:   fieldcrypt.Options{Guard: opts.Guard, Monitor: opts.Monitor, Policy: opts.Policy},
		rules:   opts.Rules,
		log:     log,
		zone:    newServerZone(opts.Zones, opts.Rules, log),
		lex:     newServerLex(opts.Lex, log),
	}, nil
}

// Close closes the Catalog, Zones and Lex sources it was given that are
// io.Closers (a [Catalog]: its connection pool), once each. Sessions still
// open must not be used afterwards: their catalog lookups fail. Close is
// for an interceptor that a reload retired and whose last session ended.
func (ic *Interceptor) Close() {
	ic.closeOnce.Do(func() {
		for _, c := range ic.closers {
			if err := c.Close(); err != nil {
				ic.log.Debug("closing the catalog connection failed", "err", err)
			}
		}
	})
}

// Error codes.
const (
	codeRefused = gomysql.ER_NOT_SUPPORTED_YET // 1235, SQLSTATE 42000
	codeFailed  = gomysql.ER_UNKNOWN_ERROR     // 1105, HY000
)

// NewSession implements mysql.Interceptor.
func (ic *Interceptor) NewSession(ctx context.Context, info mysql.SessionInfo) (*mysql.SessionHooks, error) {
	log := info.Logger
	if log == nil {
		log = ic.log
	}
	s := &session{ic: ic, ctx: ctx, db: info.Database, stmts: map[uint32]*stmt{}, log: log,
		extMeta: info.Capabilities&mysql.MariaDBExtendedMetadata != 0}
	s.cipher.Store(fieldcrypt.New(ic.enc, info.Principal, ic.decor))
	s.tz.Store(ic.zone.get(ctx))
	s.lx = newLexTrack(info.ServerVersion, info.Charset, ic.lex.get(ctx))
	s.caps = info.Capabilities
	s.sessionTrack = info.Capabilities&uint64(gomysql.CLIENT_SESSION_TRACK) != 0
	s.obs = info.Observer
	h := &mysql.SessionHooks{Command: s.observedCommand, Result: s.result}
	h.Commands.Add(gomysql.COM_QUERY, gomysql.COM_STMT_PREPARE, gomysql.COM_STMT_EXECUTE,
		gomysql.COM_STMT_SEND_LONG_DATA, gomysql.COM_STMT_CLOSE, gomysql.COM_STMT_RESET,
		gomysql.COM_INIT_DB, gomysql.COM_CHANGE_USER, gomysql.COM_RESET_CONNECTION, gomysql.COM_STMT_FETCH)
	h.Results.Add(mysql.KindOK, mysql.KindERR, mysql.KindEOF, mysql.KindColumnDef, mysql.KindParamDef,
		mysql.KindTextRow, mysql.KindBinaryRow, mysql.KindPrepareOK)
	return h, nil
}
