package migrate

import (
	"context"
	"database/sql"
	"fmt"

	"golang.org/x/time/rate"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// dialect is the SQL of one database for the batch loop shared by both.
type dialect interface {
	// selectBatch reads the key (as text) and the source columns of the
	// next rows: after a key (withAfter), pending ones only, locked.
	selectBatch(withAfter, pending, lock bool, limit int) string
	// afterArgs are the parameters of selectBatch's keyset condition.
	afterArgs(lastKey []string) []any
	// writeBatch writes the converted values outs (per column, per row;
	// nil = NULL or unchanged) of the rows whose keep is set.
	writeBatch(ctx context.Context, q execQuerier, b *batchRows, outs [][][]byte, keep []bool) error
	// readPlain is the canonical encoding of a plaintext value as read;
	// writePlain the value decrypt writes for a canonical encoding.
	readPlain(col *rules.ColumnRule, v []byte) ([]byte, error)
	writePlain(col *rules.ColumnRule, canon []byte) ([]byte, error)
	// holdsPlain reports whether a column of this type holds values of t.
	holdsPlain(ci columnInfo, t value.Type) bool
	createState() string
}

// execQuerier is a *sql.Tx or, under MySQL's LOCK TABLES, the *sql.Conn.
type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// run is one migration of one table.
type run struct {
	op       Op
	t        Table
	sql      statements // PostgreSQL
	dia      dialect
	info     *tableInfo
	cipher   Cipher
	o        Options
	conn     *sql.Conn
	st       *state
	total    int64
	primary  []uint32 // reencrypt: per column, its key's primary version
	limiter  *rate.Limiter
	passRows int64 // rows of the current pass, for Progress
}

// batchRows is one batch as read.
type batchRows struct {
	keys [][]string // per key column
	vals [][][]byte // per migrated column; nil = NULL
	n    int
}

// read runs q and collects its rows.
func (r *run) read(ctx context.Context, tx execQuerier, q string, args []any) (*batchRows, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrapf(err, "read a batch of %s", r.t)
	}
	defer rows.Close()
	nk, nc := len(r.info.keyCols), len(r.t.Columns)
	b := &batchRows{keys: make([][]string, nk), vals: make([][][]byte, nc)}
	dest := make([]any, nk+nc)
	keyBuf, valBuf := make([]string, nk), make([][]byte, nc)
	for i := range keyBuf {
		dest[i] = &keyBuf[i]
	}
	for i := range valBuf {
		dest[nk+i] = &valBuf[i]
	}
	for rows.Next() {
		clear(valBuf)
		if err := rows.Scan(dest...); err != nil {
			return nil, wrapf(err, "read a batch of %s", r.t)
		}
		for i := range keyBuf {
			b.keys[i] = append(b.keys[i], keyBuf[i])
		}
		for i := range valBuf {
			b.vals[i] = append(b.vals[i], valBuf[i])
		}
		b.n++
	}
	return b, wrapf(rows.Err(), "read a batch of %s", r.t)
}

// step converts the next batch of rows after r.st.lastKey (pending rows
// only, when pending) inside tx, and returns how many rows it read. With
// lock, the rows are locked (FOR UPDATE) until tx ends.
func (r *run) step(ctx context.Context, tx execQuerier, pending, lock bool) (int, error) {
	b, err := r.read(ctx, tx, r.dia.selectBatch(r.st.lastKey != nil, pending, lock, r.o.batch()), r.dia.afterArgs(r.st.lastKey))
	if err != nil || b.n == 0 {
		return 0, err
	}
	changed, outs, keep, err := r.convert(ctx, b)
	if err != nil {
		return 0, err
	}
	if changed > 0 {
		if err := r.dia.writeBatch(ctx, tx, b, outs, keep); err != nil {
			return 0, wrapf(err, "write a batch of %s", r.t)
		}
	}
	last := make([]string, len(b.keys))
	for i := range b.keys {
		last[i] = b.keys[i][b.n-1]
	}
	r.st.lastKey = last
	r.st.done += int64(b.n)
	r.passRows += int64(b.n)
	r.st.changed += int64(changed)
	return b.n, nil
}

// convert converts a batch's values, marks the rows with something to
// write (keep), and counts the values it converted.
func (r *run) convert(ctx context.Context, b *batchRows) (int, [][][]byte, []bool, error) {
	outs := make([][][]byte, len(r.t.Columns))
	keep := make([]bool, b.n)
	changed := 0
	for i, col := range r.t.Columns {
		outs[i] = make([][]byte, b.n)
		for j, v := range b.vals[i] {
			if v == nil {
				continue
			}
			conv, err := r.value(ctx, i, v)
			if err != nil {
				return 0, nil, nil, fmt.Errorf("%s, row %s: %w", col, keyString(b, j), err)
			}
			if conv != nil {
				changed++
				keep[j] = true
			}
			outs[i][j] = conv
		}
	}
	return changed, outs, keep, nil
}

// pick returns the elements of s whose keep is set.
func pick[T any](s []T, keep []bool) []T {
	out := make([]T, 0, len(s))
	for j, v := range s {
		if keep[j] {
			out = append(out, v)
		}
	}
	return out
}

func keyString(b *batchRows, row int) string {
	s := ""
	for i, k := range b.keys {
		if i > 0 {
			s += ","
		}
		s += k[row]
	}
	return "(" + s + ")"
}

// value converts one non-NULL value of column i; nil means no change
// (reencrypt: already under the primary version).
func (r *run) value(ctx context.Context, i int, v []byte) ([]byte, error) {
	col := r.t.Columns[i]
	switch r.op {
	case OpEncrypt:
		canon, err := r.dia.readPlain(col, v)
		if err != nil {
			return nil, fmt.Errorf("plaintext is not a valid %s: %w", col.Type, err)
		}
		return r.cipher.AppendStore(ctx, nil, col, canon)
	case OpDecrypt:
		canon, err := r.cipher.AppendDecrypt(ctx, nil, col, v)
		if err != nil {
			return nil, err
		}
		return r.dia.writePlain(col, canon)
	default:
		h, err := crypto.ParseHeader(v)
		if err != nil {
			return nil, err
		}
		if h.KeyVersion == r.primary[i] {
			return nil, nil
		}
		canon, err := r.cipher.AppendDecrypt(ctx, nil, col, v)
		if err != nil {
			return nil, err
		}
		return r.cipher.AppendStore(ctx, nil, col, canon)
	}
}

// batchTx runs one step in its own transaction, saving progress with it,
// then waits for the rate limit and reports progress.
func (r *run) batchTx(ctx context.Context, pending bool) (int, error) {
	tx, err := r.conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	n, err := r.step(ctx, tx, pending, true)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		if err := saveState(ctx, tx, r.op, r.t, r.st); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, wrapf(err, "commit a batch of %s", r.t)
	}
	r.report()
	if n > 0 && r.limiter != nil {
		if err := r.limiter.WaitN(ctx, min(n, r.limiter.Burst())); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (r *run) report() {
	if r.o.Progress != nil {
		r.o.Progress(Progress{Op: r.op, Table: r.t.String(), Phase: r.st.phase, Done: r.passRows, Total: r.total, Changed: r.st.changed})
	}
}

// pass pages through the table from r.st.lastKey to its end in batch
// transactions.
func (r *run) pass(ctx context.Context, pending bool) error {
	r.passRows = 0
	if !pending && r.st.lastKey != nil {
		r.passRows = r.st.done // a resumed backfill or reencrypt
	}
	for {
		n, err := r.batchTx(ctx, pending)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}
