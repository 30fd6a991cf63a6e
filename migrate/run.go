package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/time/rate"
)

// Encrypt moves the plaintext columns of t into ciphertext (see the
// package doc).
func Encrypt(ctx context.Context, db *sql.DB, c Cipher, t Table, o Options) (Result, error) {
	return migrate(ctx, db, c, t, o, OpEncrypt)
}

// Decrypt moves the ciphertext columns of t back to plaintext columns of
// their rule's type.
func Decrypt(ctx context.Context, db *sql.DB, c Cipher, t Table, o Options) (Result, error) {
	return migrate(ctx, db, c, t, o, OpDecrypt)
}

// Reencrypt rewrites every value of t's columns whose ciphertext is not
// under its key's primary version (o.Versions says which that is).
func Reencrypt(ctx context.Context, db *sql.DB, c Cipher, t Table, o Options) (Result, error) {
	if o.Versions == nil && !o.DryRun {
		return Result{}, errors.New("reencrypt: no key versions")
	}
	return migrate(ctx, db, c, t, o, OpReencrypt)
}

// sessionSettings make PostgreSQL's text output what package value reads.
var sessionSettings = []string{
	"SET DateStyle = ISO, YMD", "SET TimeZone = 'UTC'", "SET IntervalStyle = postgres",
	"SET extra_float_digits = 3", "SET bytea_output = hex", "SET application_name = 'dbproxy migrate'",
	"SET statement_timeout = 0",
}

func migrate(ctx context.Context, db *sql.DB, c Cipher, t Table, o Options, op Op) (Result, error) {
	if len(t.Columns) == 0 {
		return Result{}, fmt.Errorf("%s %s: no columns", op, t)
	}
	if t.mysql() {
		return migrateMySQL(ctx, db, c, t, o, op)
	}
	conn, release, err := session(ctx, db, op, t, o, sessionSettings, lockTable)
	if err != nil {
		return Result{}, err
	}
	defer release()
	info, err := inspect(ctx, conn, t)
	if err != nil {
		return Result{}, fmt.Errorf("%s %s: %w", op, t, err)
	}
	st := statements{op: op, t: t, info: info}
	r := &run{op: op, t: t, sql: st, dia: st, info: info, cipher: c, o: o, conn: conn}
	if o.Rate > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(o.Rate), o.batch())
	}
	res, err := r.dispatch(ctx, r.run)
	if err != nil {
		return res, fmt.Errorf("%s %s: %w", op, t, err)
	}
	return res, nil
}

// session opens the run's connection, applies settings and, unless it is
// a dry run, takes the table's migration lock; release undoes both.
func session(ctx context.Context, db *sql.DB, op Op, t Table, o Options, settings []string,
	lock func(context.Context, *sql.Conn, Op, Table) (func(), error)) (*sql.Conn, func(), error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, nil, wrapf(err, "%s %s: connect", op, t)
	}
	for _, q := range settings {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			_ = conn.Close()
			return nil, nil, wrapf(err, "%s %s: %s", op, t, q)
		}
	}
	unlock := func() {}
	if !o.DryRun {
		if unlock, err = lock(ctx, conn, op, t); err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
	}
	return conn, func() { unlock(); _ = conn.Close() }, nil
}

// lockTable takes the session advisory lock of t's migrations, or fails
// with ErrBusy. The lock goes with the session: a killed run frees it.
func lockTable(ctx context.Context, conn *sql.Conn, op Op, t Table) (func(), error) {
	var ok bool
	key := "dbproxy migrate " + t.String()
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, key).Scan(&ok); err != nil {
		return nil, wrapf(err, "%s %s: take the migration lock", op, t)
	}
	if !ok {
		return nil, fmt.Errorf("%s %s: %w (advisory lock hashtext(%s) is held)", op, t, ErrBusy, quoteLit(key))
	}
	return func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, key)
	}, nil
}

// begin reads the recorded state and counts the table's rows; encrypt and
// decrypt refuse while another set of columns is unfinished.
func (r *run) begin(ctx context.Context) (*state, error) {
	st, err := readState(ctx, r.conn, r.op, r.t)
	if err != nil {
		return nil, err
	}
	if err := r.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+r.t.qualified()).Scan(&r.total); err != nil {
		return nil, wrapf(err, "count rows")
	}
	if r.op == OpReencrypt {
		return st, nil
	}
	return st, r.unfinishedOther(st)
}

// dispatch reads the recorded state and runs reencrypt, or flow for
// encrypt and decrypt.
func (r *run) dispatch(ctx context.Context, flow func(context.Context, *state) (Result, error)) (Result, error) {
	st, err := r.begin(ctx)
	if err != nil {
		return Result{}, err
	}
	if r.op == OpReencrypt {
		return r.reencrypt(ctx, st)
	}
	return flow(ctx, st)
}

// run runs encrypt or decrypt on PostgreSQL from the recorded state.
func (r *run) run(ctx context.Context, st *state) (Result, error) {
	resume := st != nil && st.phase != phaseDone
	if !resume || st.phase == phaseBackfill || st.phase == phaseCatchUp {
		skip, err := r.checkColumns(resume)
		if err != nil || skip {
			return Result{Skipped: skip, Message: "columns already in the target form"}, err
		}
	}
	if r.o.DryRun {
		r.printPlan(r.o.Plan, st)
		return Result{}, nil
	}
	if !resume {
		if err := r.setup(ctx); err != nil {
			return Result{}, err
		}
		st = &state{phase: phaseBackfill}
	}
	r.st = st
	return r.shadowFlow(ctx)
}

// checkColumns verifies that every column is in the source form with a
// type that fits its rule (and, resuming, that its shadow exists); skip
// reports that all of them are already in the target form.
func (r *run) checkColumns(resume bool) (skip bool, err error) {
	inTarget := 0
	for _, c := range r.t.Columns {
		ci, ok := r.info.columns[c.Column]
		if !ok {
			return false, fmt.Errorf("column %s not found", c)
		}
		isBytes := ci.cipher
		source := !isBytes
		if r.op == OpDecrypt {
			source = isBytes
		}
		if !source {
			if r.op == OpEncrypt && r.dia.holdsPlain(ci, c.Type) {
				return false, fmt.Errorf("column %s: rule type %s is bytes: encrypt binary columns by copying them through the proxy", c, c.Type)
			}
			inTarget++
			continue
		}
		if r.op == OpEncrypt && !r.dia.holdsPlain(ci, c.Type) {
			return false, fmt.Errorf("column %s is %s, which does not hold the rule's type %s", c, ci.typ, c.Type)
		}
		if _, ok := r.info.columns[shadowName(c.Column)]; resume && !ok {
			return false, fmt.Errorf("column %s: shadow column %s is missing although %s records an unfinished run", c, shadowName(c.Column), r.t.stateName())
		}
		if ci.hasDef && r.op == OpEncrypt {
			return false, fmt.Errorf("column %s has a DEFAULT: the database would store it as plaintext; drop it first (ALTER TABLE … ALTER COLUMN … DROP DEFAULT)", c)
		}
	}
	if inTarget == len(r.t.Columns) {
		return true, nil
	}
	if inTarget > 0 {
		return false, errors.New("some columns are already in the target form and others not: migrate them separately (--columns)")
	}
	return false, nil
}

// setup creates the progress table and row, the shadow columns and the
// trigger, in one transaction (each statement is idempotent).
func (r *run) setup(ctx context.Context) error {
	return r.withLock(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, r.sql.createState()); err != nil {
			return wrapf(err, "create %s", r.t.stateName())
		}
		if err := startState(ctx, tx, r.op, r.t, phaseBackfill); err != nil {
			return err
		}
		for _, q := range r.sql.setup() {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return wrapf(err, "setup")
			}
		}
		return nil
	})
}

// lockWait bounds how long DDL waits for the table's lock before it gives
// up and tries again (so that it does not queue writers behind it).
const lockWait = "2s"

// withLock runs f in a transaction with a short lock_timeout, trying again
// when the lock is not granted in time.
func (r *run) withLock(ctx context.Context, f func(*sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := r.tryTx(ctx, f)
		var pe *pgconn.PgError
		if err == nil || !errors.As(err, &pe) || pe.Code != "55P03" || attempt == 30 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

func (r *run) tryTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := r.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = '"+lockWait+"'"); err != nil {
		return err
	}
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// printPlan writes what a run would do.
func (r *run) printPlan(w io.Writer, st *state) {
	if w == nil {
		w = io.Discard
	}
	s := r.sql
	fmt.Fprintf(w, "-- dbproxy migrate %s %s: %d rows, key %s (%s), batches of %d", r.op, r.t, r.total, s.keyList(), s.info.keyName, r.o.batch())
	if r.o.Rate > 0 {
		fmt.Fprintf(w, ", at most %.0f rows/s", r.o.Rate)
	}
	fmt.Fprintln(w)
	for _, c := range r.t.Columns {
		fmt.Fprintf(w, "--   %s: %s -> %s (key %s, %s, %s)\n", c.Column, s.info.columns[c.Column].typ, s.shadowType(c), c.Key, c.Mode, c.Type)
	}
	if st != nil && st.phase != phaseDone {
		fmt.Fprintf(w, "-- resumes an unfinished run: phase %s, %d rows done\n", st.phase, st.done)
	}
	stmt := func(q string) { fmt.Fprintf(w, "%s;\n", q) }
	if r.op != OpReencrypt {
		fmt.Fprintln(w, "-- 1. setup, one transaction")
		stmt(s.createState())
		for _, q := range s.setup() {
			stmt(q)
		}
	}
	fmt.Fprintln(w, "-- 2. per batch, one transaction (values converted by dbproxy between the two)")
	stmt(s.selectBatch(true, false, true, r.o.batch()))
	stmt(s.update())
	if r.op == OpReencrypt {
		return
	}
	fmt.Fprintln(w, "-- 3. the index of rows changed meanwhile, then catch-up passes over them, as 2 with")
	stmt(s.createPendingIndex())
	stmt(s.selectBatch(true, true, true, r.o.batch()))
	fmt.Fprintln(w, "-- 4. swap, one transaction")
	stmt("LOCK TABLE " + r.t.qualified() + " IN ACCESS EXCLUSIVE MODE")
	fmt.Fprintln(w, "--    (the last pending rows are converted here)")
	for _, q := range s.swap() {
		stmt(q)
	}
	if v := s.validate(); len(v) > 0 {
		fmt.Fprintln(w, "-- 5. after the swap")
		for _, q := range v {
			stmt(q)
		}
	}
}
