package migrate

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
)

// myShadowFlow runs encrypt or decrypt on MySQL from the recorded phase
// to the end: backfill, catch-up passes, swap.
func (r *run) myShadowFlow(ctx context.Context, s myStatements) (Result, error) {
	res := Result{}
	if r.st.phase == phaseBackfill {
		if err := r.backfill(ctx); err != nil {
			return res, err
		}
		if err := saveState(ctx, r.conn, r.op, r.t, r.st); err != nil {
			return res, err
		}
	}
	if r.st.phase == phaseCatchUp || r.st.phase == phaseSwapped {
		if err := r.catchUp(ctx, &res); err != nil {
			return res, err
		}
		if err := r.mySwap(ctx, s, &res.SwapLock); err != nil {
			return res, err
		}
	}
	res.Rows, res.Changed = r.st.done, r.st.changed
	return res, nil
}

// mySwap converts the rows still pending and replaces the source columns
// by their shadows under LOCK TABLES … WRITE: the pending rows, one ALTER
// TABLE (atomic: drop the source columns, rename the shadows, add or drop
// the guards), phase swapped, the triggers dropped, phase done. The
// ALTER commits on its own; a run killed after it finds no shadow column
// and finishes (myFinish), and until then the triggers name columns that
// no longer exist, so every insert and update of the table fails.
func (r *run) mySwap(ctx context.Context, s myStatements, held *time.Duration) error {
	guarded, err := r.myGuarded(ctx)
	if err != nil {
		return err
	}
	lock := fmt.Sprintf("LOCK TABLES %s WRITE, %s WRITE", r.t.qualified(), r.t.stateName())
	if err := r.myDDL(ctx, lock); err != nil {
		return wrapf(err, "lock the table for the swap")
	}
	locked := time.Now()
	defer func() { _, _ = r.conn.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES") }()
	r.st.lastKey = nil
	for {
		n, err := r.step(ctx, r.conn, true, false)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	if _, err := r.conn.ExecContext(ctx, s.swap(guarded)); err != nil {
		return wrapf(err, "swap")
	}
	if _, err := r.myFinish(ctx, s); err != nil {
		return err
	}
	*held = time.Since(locked)
	return nil
}

// myFinish records phase swapped, drops the triggers, and records done.
// It runs after the swap's ALTER TABLE, in the swap or in the run that
// resumes one killed after it.
func (r *run) myFinish(ctx context.Context, s myStatements) (Result, error) {
	r.st.phase, r.st.lastKey = phaseSwapped, nil
	if err := saveState(ctx, r.conn, r.op, r.t, r.st); err != nil {
		return Result{}, err
	}
	r.report()
	for _, q := range s.dropTriggers() {
		if err := r.myDDL(ctx, q); err != nil {
			return Result{}, wrapf(err, "drop the triggers (the columns are swapped; run again to finish)")
		}
	}
	r.st.phase = phaseDone
	if err := saveState(ctx, r.conn, r.op, r.t, r.st); err != nil {
		return Result{}, err
	}
	r.report()
	return Result{Rows: r.st.done, Changed: r.st.changed}, nil
}

// myGuarded names the columns that carry a guard now.
func (r *run) myGuarded(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	for _, c := range r.t.Columns {
		var n int
		err := r.conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = ?
AND TABLE_NAME = ? AND CONSTRAINT_NAME = ? AND CONSTRAINT_TYPE = 'CHECK'`, r.t.Schema, r.t.Name,
			schemaguard.ConstraintName(rules.DialectMySQL, r.t.Name, c.Column)).Scan(&n)
		if err != nil {
			return nil, wrapf(err, "read the constraints of %s", r.t)
		}
		out[c.Column] = n > 0
	}
	return out, nil
}

// printMySQLPlan writes what a run would do.
func (r *run) printMySQLPlan(st *state) {
	w := r.o.Plan
	if w == nil {
		w = io.Discard
	}
	s := r.dia.(myStatements)
	fmt.Fprintf(w, "-- dbproxy migrate %s %s: %d rows, key %s (%s), batches of %d\n", r.op, r.t, r.total, s.keyList(), r.info.keyName, r.o.batch())
	for _, c := range r.t.Columns {
		fmt.Fprintf(w, "--   %s: %s -> %s (key %s, %s, %s)\n", c.Column, r.info.columns[c.Column].typ, s.shadowType(c), c.Key, c.Mode, c.Type)
	}
	if st != nil && st.phase != phaseDone {
		fmt.Fprintf(w, "-- resumes an unfinished run: phase %s, %d rows done\n", st.phase, st.done)
	}
	stmt := func(q string) { fmt.Fprintf(w, "%s;\n", q) }
	if r.op != OpReencrypt {
		fmt.Fprintln(w, "-- 1. setup, each statement commits on its own")
		stmt(s.createState())
		for _, c := range r.t.Columns {
			stmt(s.addShadow(c))
		}
		for _, q := range s.createTriggers() {
			stmt(q)
		}
	}
	fmt.Fprintln(w, "-- 2. per batch, one transaction (values converted by dbproxy between the two; one UPDATE per row)")
	stmt(s.selectBatch(true, false, true, r.o.batch()))
	one := &batchRows{keys: make([][]string, len(r.info.keyCols)), n: 1}
	for i := range one.keys {
		one.keys[i] = []string{"…"}
	}
	outs := make([][][]byte, len(r.t.Columns))
	for i := range outs {
		outs[i] = [][]byte{nil}
	}
	q, _ := s.update(one, outs, []int{0})
	stmt(q + " -- one WHEN and one OR term per row of the batch")
	if r.op == OpReencrypt {
		return
	}
	fmt.Fprintln(w, "-- 3. catch-up passes over the rows the triggers marked, as 2 with")
	stmt(s.selectBatch(true, true, true, r.o.batch()))
	fmt.Fprintln(w, "-- 4. swap")
	stmt(fmt.Sprintf("LOCK TABLES %s WRITE, %s WRITE", r.t.qualified(), r.t.stateName()))
	fmt.Fprintln(w, "--    (the last pending rows are converted here)")
	stmt(s.swap(map[string]bool{}))
	for _, q := range s.dropTriggers() {
		stmt(q)
	}
	stmt("UNLOCK TABLES")
}
