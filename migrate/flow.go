package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// maxCatchUp bounds the catch-up passes before the swap; the swap
// converts whatever is still pending under its lock anyway.
const maxCatchUp = 5

// shadowFlow runs encrypt or decrypt from the recorded phase to the end.
func (r *run) shadowFlow(ctx context.Context) (Result, error) {
	res := Result{}
	if err := r.backfill(ctx); err != nil {
		return res, err
	}
	if r.st.phase == phaseCatchUp {
		if err := r.pendingIndex(ctx); err != nil {
			return res, err
		}
		if err := r.catchUp(ctx, &res); err != nil {
			return res, err
		}
		if err := r.swap(ctx, &res.SwapLock); err != nil {
			return res, err
		}
		r.st.phase = phaseSwapped
		r.report()
	}
	if r.st.phase == phaseSwapped {
		for _, q := range r.sql.validate() {
			if _, err := r.conn.ExecContext(ctx, q); err != nil {
				return res, wrapf(err, "validate the guard (the guard is in place NOT VALID and rejects new plaintext)")
			}
		}
		r.st.phase = phaseDone
		if err := saveState(ctx, r.conn, r.op, r.t, r.st); err != nil {
			return res, err
		}
		r.report()
	}
	res.Rows, res.Changed = r.st.done, r.st.changed
	return res, nil
}

// backfill runs (or resumes) the backfill pass when that is the recorded
// phase; the phase is catch-up after it.
func (r *run) backfill(ctx context.Context) error {
	if r.st.phase != phaseBackfill {
		return nil
	}
	r.report()
	if err := r.pass(ctx, false); err != nil {
		return err
	}
	r.st.phase, r.st.lastKey = phaseCatchUp, nil
	return nil
}

// unfinishedOther refuses a run whose columns differ from those of the
// unfinished run st records.
func (r *run) unfinishedOther(st *state) error {
	if st == nil || st.phase == phaseDone || st.columns == r.t.columnNames() {
		return nil
	}
	return fmt.Errorf("an unfinished %s of columns %s is recorded in %s: finish it first (run it again with --columns %s)",
		r.op, st.columns, r.t.stateName(), st.columns)
}

// catchUp runs passes over the pending rows until one finds less than a
// batch, maxCatchUp at most.
func (r *run) catchUp(ctx context.Context, res *Result) error {
	for res.Passes < maxCatchUp {
		r.st.lastKey = nil
		res.Passes++
		if err := r.pass(ctx, true); err != nil {
			return err
		}
		if r.passRows < int64(r.o.batch()) {
			break
		}
	}
	return nil
}

// pendingIndex builds the partial index of pending rows, concurrently
// (writes go on). An invalid one left by a run killed while building it is
// dropped and built again.
func (r *run) pendingIndex(ctx context.Context) error {
	var valid sql.NullBool
	err := r.conn.QueryRowContext(ctx, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, r.t.schema(), r.sql.pendingIndex()).Scan(&valid)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return wrapf(err, "read the pending-rows index")
	}
	if valid.Valid && valid.Bool {
		return nil
	}
	if valid.Valid {
		if _, err := r.conn.ExecContext(ctx, r.sql.dropPendingIndex()); err != nil {
			return wrapf(err, "drop the invalid pending-rows index")
		}
	}
	_, err = r.conn.ExecContext(ctx, r.sql.createPendingIndex())
	return wrapf(err, "build the pending-rows index")
}

// swap converts the rows still pending and replaces the source columns by
// their shadows, in one transaction under ACCESS EXCLUSIVE.
func (r *run) swap(ctx context.Context, held *time.Duration) error {
	var locked time.Time
	err := r.withLock(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", r.t.qualified())); err != nil {
			return wrapf(err, "lock the table for the swap")
		}
		locked = time.Now()
		r.st.lastKey = nil
		for {
			n, err := r.step(ctx, tx, true, false)
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
		}
		for _, q := range r.sql.swap() {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return wrapf(err, "swap")
			}
		}
		r.st.phase, r.st.lastKey = phaseSwapped, nil
		return saveState(ctx, tx, r.op, r.t, r.st)
	})
	if err == nil {
		*held = time.Since(locked) // the commit is in it
	}
	return err
}

// reencrypt pages through the table once, rewriting values under older
// key versions.
func (r *run) reencrypt(ctx context.Context, st *state) (Result, error) {
	for _, c := range r.t.Columns {
		ci, ok := r.info.columns[c.Column]
		if !ok {
			return Result{}, fmt.Errorf("column %s not found", c)
		}
		if !ci.cipher {
			return Result{}, fmt.Errorf("column %s is %s, not a ciphertext type: it is not encrypted (migrate encrypt first)", c, ci.typ)
		}
	}
	if r.o.DryRun {
		if r.t.mysql() {
			r.printMySQLPlan(st)
		} else {
			r.printPlan(r.o.Plan, st)
		}
		return Result{}, nil
	}
	r.primary = make([]uint32, len(r.t.Columns))
	for i, c := range r.t.Columns {
		v, err := r.o.Versions.PrimaryVersion(ctx, c.Key)
		if err != nil {
			return Result{}, err
		}
		r.primary[i] = v
	}
	if st == nil || st.phase == phaseDone || st.columns != r.t.columnNames() {
		if _, err := r.conn.ExecContext(ctx, r.dia.createState()); err != nil {
			return Result{}, wrapf(err, "create %s", r.t.stateName())
		}
		if err := startState(ctx, r.conn, r.op, r.t, phaseBackfill); err != nil {
			return Result{}, err
		}
		st = &state{phase: phaseBackfill}
	}
	r.st = st
	r.report()
	if err := r.pass(ctx, false); err != nil {
		return Result{}, err
	}
	r.st.phase = phaseDone
	if err := saveState(ctx, r.conn, r.op, r.t, r.st); err != nil {
		return Result{}, err
	}
	r.report()
	return Result{Rows: r.st.done, Changed: r.st.changed}, nil
}
