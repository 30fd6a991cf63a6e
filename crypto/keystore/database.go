package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/mysqllog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultTable is the table OpenDatabase uses when none is named.
const DefaultTable = "dbproxy_keys"

// Database is a keystore in a table of a PostgreSQL or MySQL/MariaDB
// database, shared by every proxy instance pointed at it. The table is
// created if missing:
//
//	PostgreSQL: name text, version bigint, algorithm text,
//	            created_at timestamptz, master_key_id text, wrapped bytea,
//	            PRIMARY KEY (name, version)
//	MySQL:      name varbinary(255), version bigint, algorithm varchar(32),
//	            created_at datetime(6) (UTC), master_key_id varchar(2048),
//	            wrapped varbinary(4096), PRIMARY KEY (name, version)
//
// (MySQL's name is binary so that names compare byte for byte, with no
// case folding or trailing-space padding.) Create relies on the primary
// key: INSERT ... ON CONFLICT DO NOTHING on PostgreSQL, a plain INSERT
// whose duplicate-key error becomes ErrExists on MySQL (INSERT IGNORE
// would also turn truncation into a warning).
type Database struct {
	table  string
	target string // driver, host, port and database, for errors; never the password
	b      dbBackend
}

var _ Store = (*Database)(nil)

type dbBackend interface {
	// records returns the rows of one key, or of all keys if all is set.
	records(ctx context.Context, name string, all bool) ([]Record, error)
	// insert reports whether r was inserted (false: the key existed).
	insert(ctx context.Context, r Record) (bool, error)
	// update reports whether (name, version) was found.
	update(ctx context.Context, name string, version uint32, masterKeyID string, wrapped []byte) (bool, error)
	close() error
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// OpenDatabase connects to the database named by dsn and creates the table
// if it is missing. dsn is "postgres://..." or "postgresql://..." (a pgx
// connection URL) or "mysql://user@tcp(host:port)/db" (a go-sql-driver
// DSN after the scheme). password, when not empty, replaces any password
// in dsn; it never appears in errors. table must be a plain identifier
// (letters, digits, underscore); empty means DefaultTable. The MySQL
// driver's own messages go to log (nil: discarded), never to stderr.
func OpenDatabase(ctx context.Context, dsn, password, table string, log *slog.Logger) (*Database, error) {
	if table == "" {
		table = DefaultTable
	}
	if !identRE.MatchString(table) {
		return nil, fmt.Errorf("open keystore database: table name %q is not a plain identifier", table)
	}
	var (
		b      dbBackend
		target string
		err    error
	)
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		b, target, err = openPostgres(ctx, dsn, password, table)
	case strings.HasPrefix(dsn, "mysql://"):
		b, target, err = openMySQL(ctx, strings.TrimPrefix(dsn, "mysql://"), password, table, log)
	default:
		return nil, errors.New("open keystore database: dsn must start with postgres://, postgresql:// or mysql://")
	}
	if err != nil {
		return nil, fmt.Errorf("open keystore database %s table %q: %w", target, table, err)
	}
	return &Database{table: table, target: target, b: b}, nil
}

func (d *Database) errorf(format string, args ...any) error {
	return fmt.Errorf("keystore %s table %q: "+format, append([]any{d.target, d.table}, args...)...)
}

// List returns all records, sorted by name then version.
func (d *Database) List(ctx context.Context) ([]Record, error) {
	recs, err := d.b.records(ctx, "", true)
	if err != nil {
		return nil, d.errorf("list: %w", err)
	}
	sortRecords(recs)
	return recs, nil
}

// Get returns all versions of the key name, ascending.
func (d *Database) Get(ctx context.Context, name string) ([]Record, error) {
	recs, err := d.b.records(ctx, name, false)
	if err != nil {
		return nil, d.errorf("get data key %q: %w", name, err)
	}
	sortRecords(recs)
	return recs, nil
}

// Create inserts r unless (r.Name, r.Version) exists.
func (d *Database) Create(ctx context.Context, r Record) error {
	r, err := checkRecord(r)
	if err != nil {
		return d.errorf("create: %w", err)
	}
	inserted, err := d.b.insert(ctx, r)
	if err != nil {
		return d.errorf("create data key %q v%d: %w", r.Name, r.Version, err)
	}
	if !inserted {
		return d.errorf("create data key %q v%d: %w", r.Name, r.Version, ErrExists)
	}
	return nil
}

// Replace swaps the wrapped bytes and master key id of (name, version).
func (d *Database) Replace(ctx context.Context, name string, version uint32, masterKeyID string, wrapped []byte) error {
	if err := checkWrap(masterKeyID, wrapped); err != nil {
		return d.errorf("replace data key %q v%d: %w", name, version, err)
	}
	found, err := d.b.update(ctx, name, version, masterKeyID, wrapped)
	if err != nil {
		return d.errorf("replace data key %q v%d: %w", name, version, err)
	}
	if !found {
		return d.errorf("replace data key %q v%d: %w", name, version, ErrNotFound)
	}
	return nil
}

// Close closes the database connection(s).
func (d *Database) Close() error { return d.b.close() }

// scanRecord reads one row (name, version, algorithm, created_at,
// master_key_id, wrapped) and validates it.
func scanRecord(scan func(dest ...any) error) (Record, error) {
	var (
		r       Record
		version int64
		alg     string
	)
	if err := scan(&r.Name, &version, &alg, &r.CreatedAt, &r.MasterKeyID, &r.Wrapped); err != nil {
		return Record{}, err
	}
	if version <= 0 || version > math.MaxUint32 {
		return Record{}, fmt.Errorf("data key %q: stored version %d out of range", r.Name, version)
	}
	r.Version = uint32(version)
	if err := r.Algorithm.UnmarshalText([]byte(alg)); err != nil {
		return Record{}, fmt.Errorf("data key %q v%d: %w", r.Name, r.Version, err)
	}
	r, err := checkRecord(r)
	if err != nil {
		return Record{}, fmt.Errorf("stored record: %w", err)
	}
	return r, nil
}

func algorithmName(a crypto.Algorithm) (string, error) {
	b, err := a.MarshalText()
	return string(b), err
}

// ---- PostgreSQL (pgx, one connection) ----

// pgBackend holds one connection, used by one caller at a time: keystore
// traffic is a few statements at startup and on cache misses. A broken
// connection is replaced on the next call; a call that broke it is retried
// once on a new connection (every statement here is safe to repeat: a
// repeated Create reports ErrExists, which callers handle by reading).
type pgBackend struct {
	cfg   *pgx.ConnConfig
	table string // quoted
	sem   chan struct{}
	conn  *pgx.Conn
}

func openPostgres(ctx context.Context, dsn, password, table string) (*pgBackend, string, error) {
	cfg, err := pgx.ParseConfig(dsn) // its errors redact passwords
	if err != nil {
		return nil, "postgres", fmt.Errorf("parse dsn: %w", err)
	}
	if password != "" {
		cfg.Password = password
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "dbproxy-keystore"
	}
	target := fmt.Sprintf("postgres %s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	p := &pgBackend{cfg: cfg, table: `"` + table + `"`, sem: make(chan struct{}, 1)}
	create := `CREATE TABLE IF NOT EXISTS ` + p.table + ` (
	name text NOT NULL,
	version bigint NOT NULL,
	algorithm text NOT NULL,
	created_at timestamptz NOT NULL,
	master_key_id text NOT NULL,
	wrapped bytea NOT NULL,
	PRIMARY KEY (name, version))`
	err = p.with(ctx, func(c *pgx.Conn) error {
		// Instances creating the table at once collide in the catalog
		// (unique_violation on pg_type, duplicate_object,
		// duplicate_table) even with IF NOT EXISTS; by the time the error
		// arrives the other transaction has committed, so try again.
		var err error
		for range 3 {
			_, err = c.Exec(ctx, create)
			if !isPgCode(err, "23505", "42710", "42P07") {
				break
			}
		}
		return err
	})
	if err != nil {
		p.close()
		return nil, target, fmt.Errorf("create table: %w", err)
	}
	return p, target, nil
}

func isPgCode(err error, codes ...string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	for _, c := range codes {
		if pgErr.Code == c {
			return true
		}
	}
	return false
}

func (p *pgBackend) with(ctx context.Context, fn func(*pgx.Conn) error) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.sem }()
	for attempt := 0; ; attempt++ {
		if p.conn == nil || p.conn.IsClosed() {
			conn, err := pgx.ConnectConfig(ctx, p.cfg)
			if err != nil {
				return err
			}
			p.conn = conn
		}
		err := fn(p.conn)
		if err != nil && attempt == 0 && p.conn.IsClosed() && ctx.Err() == nil {
			continue
		}
		return err
	}
}

func (p *pgBackend) records(ctx context.Context, name string, all bool) ([]Record, error) {
	q := `SELECT name, version, algorithm, created_at, master_key_id, wrapped FROM ` + p.table
	args := []any{}
	if !all {
		q += ` WHERE name = $1`
		args = append(args, name)
	}
	var recs []Record
	err := p.with(ctx, func(c *pgx.Conn) error {
		recs = []Record{}
		rows, err := c.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRecord(rows.Scan)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return rows.Err()
	})
	return recs, err
}

func (p *pgBackend) insert(ctx context.Context, r Record) (bool, error) {
	alg, err := algorithmName(r.Algorithm)
	if err != nil {
		return false, err
	}
	q := `INSERT INTO ` + p.table + ` (name, version, algorithm, created_at, master_key_id, wrapped)
	VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, version) DO NOTHING`
	var n int64
	err = p.with(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, q, r.Name, int64(r.Version), alg, r.CreatedAt, r.MasterKeyID, r.Wrapped)
		n = tag.RowsAffected()
		return err
	})
	return n == 1, err
}

func (p *pgBackend) update(ctx context.Context, name string, version uint32, masterKeyID string, wrapped []byte) (bool, error) {
	q := `UPDATE ` + p.table + ` SET master_key_id = $1, wrapped = $2 WHERE name = $3 AND version = $4`
	var n int64
	err := p.with(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, q, masterKeyID, wrapped, name, int64(version))
		n = tag.RowsAffected()
		return err
	})
	return n > 0, err
}

func (p *pgBackend) close() error {
	p.sem <- struct{}{}
	defer func() { <-p.sem }()
	if p.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.conn.Close(ctx)
	p.conn = nil
	return err
}

// ---- MySQL / MariaDB (database/sql) ----

type myBackend struct {
	db    *sql.DB
	table string // quoted
}

func openMySQL(ctx context.Context, dsn, password, table string, log *slog.Logger) (*myBackend, string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		// ParseDSN errors quote no part of the DSN.
		return nil, "mysql", fmt.Errorf("parse dsn: %w", err)
	}
	if password != "" {
		cfg.Passwd = password
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.ClientFoundRows = true // UPDATE reports matched rows, so a no-op Replace is "found"
	cfg.Logger = mysqllog.New(log)
	target := fmt.Sprintf("mysql %s/%s", cfg.Addr, cfg.DBName)
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, target, fmt.Errorf("parse dsn: %w", err)
	}
	m := &myBackend{db: sql.OpenDB(conn), table: "`" + table + "`"}
	m.db.SetMaxOpenConns(4)
	m.db.SetConnMaxIdleTime(5 * time.Minute)
	_, err = m.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+m.table+` (
	name VARBINARY(255) NOT NULL,
	version BIGINT NOT NULL,
	algorithm VARCHAR(32) CHARACTER SET ascii NOT NULL,
	created_at DATETIME(6) NOT NULL,
	master_key_id VARCHAR(2048) CHARACTER SET utf8mb4 NOT NULL,
	wrapped VARBINARY(4096) NOT NULL,
	PRIMARY KEY (name, version)) ENGINE=InnoDB`)
	if err != nil {
		m.db.Close()
		return nil, target, fmt.Errorf("create table: %w", err)
	}
	return m, target, nil
}

func (m *myBackend) records(ctx context.Context, name string, all bool) ([]Record, error) {
	q := `SELECT name, version, algorithm, created_at, master_key_id, wrapped FROM ` + m.table
	args := []any{}
	if !all {
		q += ` WHERE name = ?`
		args = append(args, name)
	}
	rows, err := m.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recs := []Record{}
	for rows.Next() {
		r, err := scanRecord(rows.Scan)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

func (m *myBackend) insert(ctx context.Context, r Record) (bool, error) {
	alg, err := algorithmName(r.Algorithm)
	if err != nil {
		return false, err
	}
	_, err = m.db.ExecContext(ctx, `INSERT INTO `+m.table+
		` (name, version, algorithm, created_at, master_key_id, wrapped) VALUES (?, ?, ?, ?, ?, ?)`,
		r.Name, int64(r.Version), alg, r.CreatedAt, r.MasterKeyID, r.Wrapped)
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == 1062 { // ER_DUP_ENTRY
		return false, nil
	}
	return err == nil, err
}

func (m *myBackend) update(ctx context.Context, name string, version uint32, masterKeyID string, wrapped []byte) (bool, error) {
	res, err := m.db.ExecContext(ctx, `UPDATE `+m.table+` SET master_key_id = ?, wrapped = ? WHERE name = ? AND version = ?`,
		masterKeyID, wrapped, name, int64(version))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (m *myBackend) close() error { return m.db.Close() }
