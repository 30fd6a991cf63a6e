package migrate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"golang.org/x/time/rate"
)

// Phases only the MySQL flow records.
const (
	// phaseSetup: the shadow columns and triggers are being added; no
	// shadow holds a value yet, so setup may simply run again.
	phaseSetup = "setup"
)

// mySession makes MySQL's text output what package value reads and the
// batches lock only the rows they return.
var mySession = []string{
	"SET time_zone = '+00:00'", "SET NAMES utf8mb4",
	"SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
	"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
	"SET SESSION lock_wait_timeout = 2",
}

func migrateMySQL(ctx context.Context, db *sql.DB, c Cipher, t Table, o Options, op Op) (Result, error) {
	if t.Schema == "" {
		return Result{}, fmt.Errorf("%s %s: no database", op, t.Name)
	}
	conn, release, err := session(ctx, db, op, t, o, mySession, myLockTable)
	if err != nil {
		return Result{}, err
	}
	defer release()
	info, err := inspectMySQL(ctx, conn, &t)
	if err != nil {
		return Result{}, fmt.Errorf("%s %s: %w", op, t, err)
	}
	s := myStatements{op: op, t: t, info: info}
	r := &run{op: op, t: t, dia: s, info: info, cipher: c, o: o, conn: conn}
	if o.Rate > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(o.Rate), o.batch())
	}
	res, err := r.dispatch(ctx, func(ctx context.Context, st *state) (Result, error) { return r.runMySQL(ctx, s, st) })
	if err != nil {
		return res, fmt.Errorf("%s %s: %w", op, t, err)
	}
	return res, nil
}

// myLockName is the GET_LOCK name of t's migrations (at most 64
// characters, which MySQL 5.7+ requires).
func myLockName(t Table) string {
	name := "dbproxy migrate " + t.String()
	if len(name) <= 64 {
		return name
	}
	sum := sha256.Sum256([]byte(t.String()))
	return "dbproxy migrate " + hex.EncodeToString(sum[:16])
}

// myLockTable takes the named lock of t's migrations, or fails with
// ErrBusy. The lock goes with the session: a killed run frees it.
func myLockTable(ctx context.Context, conn *sql.Conn, op Op, t Table) (func(), error) {
	var ok sql.NullInt64
	name := myLockName(t)
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, 0)`, name).Scan(&ok); err != nil {
		return nil, wrapf(err, "%s %s: take the migration lock", op, t)
	}
	if ok.Int64 != 1 {
		return nil, fmt.Errorf("%s %s: %w (GET_LOCK(%s) is held)", op, t, ErrBusy, quoteLit(name))
	}
	return func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT RELEASE_LOCK(?)`, name)
	}, nil
}

// runMySQL runs encrypt or decrypt on MySQL from the recorded state and the
// catalog.
func (r *run) runMySQL(ctx context.Context, s myStatements, st *state) (Result, error) {
	resume := st != nil && st.phase != phaseDone
	if resume && st.phase != phaseSetup && r.altered() {
		// Killed between the swap's ALTER TABLE and the end of the swap.
		if r.o.DryRun {
			r.printMySQLPlan(st)
			return Result{}, nil
		}
		r.st = st
		return r.myFinish(ctx, s)
	}
	skip, err := r.checkColumns(resume && st.phase != phaseSetup)
	if err != nil || skip {
		return Result{Skipped: skip, Message: "columns already in the target form"}, err
	}
	if r.o.DryRun {
		r.printMySQLPlan(st)
		return Result{}, nil
	}
	if !resume || st.phase == phaseSetup {
		if err := r.mySetup(ctx, s); err != nil {
			return Result{}, err
		}
		st = &state{phase: phaseBackfill}
	} else if err := r.checkTriggers(ctx, s); err != nil {
		return Result{}, err
	}
	r.st = st
	return r.myShadowFlow(ctx, s)
}

// altered reports whether the swap's ALTER TABLE committed: no shadow
// column is left and every column is in the target form.
func (r *run) altered() bool {
	for _, c := range r.t.Columns {
		ci, ok := r.info.columns[c.Column]
		if _, shadow := r.info.columns[shadowName(c.Column)]; shadow || !ok || ci.cipher != (r.op == OpEncrypt) {
			return false
		}
	}
	return true
}

// myDDL runs a DDL statement, trying again while its metadata lock is
// not granted within lock_wait_timeout (so that it does not hold up the
// writers queued behind it for long).
func (r *run) myDDL(ctx context.Context, q string) error {
	for attempt := 1; ; attempt++ {
		_, err := r.conn.ExecContext(ctx, q)
		var me *driver.MySQLError
		if err == nil || !errors.As(err, &me) || me.Number != 1205 || attempt == 30 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

// mySetup creates the progress table and row, the shadow columns and the
// triggers. Each DDL commits on its own; until phase backfill is recorded
// no shadow holds a value, so a run killed here starts setup again, and
// the triggers are simply created again.
func (r *run) mySetup(ctx context.Context, s myStatements) error {
	if err := r.myDDL(ctx, s.createState()); err != nil {
		return wrapf(err, "create %s", r.t.stateName())
	}
	if err := startState(ctx, r.conn, r.op, r.t, phaseSetup); err != nil {
		return err
	}
	for _, c := range r.t.Columns {
		if _, ok := r.info.columns[shadowName(c.Column)]; ok {
			continue
		}
		if err := r.myDDL(ctx, s.addShadow(c)); err != nil {
			return wrapf(err, "add the shadow column of %s", c.Column)
		}
	}
	for _, q := range append(s.dropTriggers(), s.createTriggers()...) {
		if err := r.myDDL(ctx, q); err != nil {
			return wrapf(err, "create the triggers")
		}
	}
	r.st = &state{phase: phaseBackfill}
	return saveState(ctx, r.conn, r.op, r.t, r.st)
}

// checkTriggers refuses to resume when a trigger is missing: rows written
// without it may hold stale shadows.
func (r *run) checkTriggers(ctx context.Context, s myStatements) error {
	tr := s.triggers()
	var n int
	err := r.conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?
AND TRIGGER_NAME IN (?, ?)`, r.t.Schema, r.t.Name, tr[0], tr[1]).Scan(&n)
	if err != nil {
		return wrapf(err, "read the triggers")
	}
	if n != 2 {
		return fmt.Errorf("trigger %s or %s is missing although %s records an unfinished run: rows written meanwhile may not be marked; "+
			"drop the dbproxy_new_ columns, delete the row of %s and start again", tr[0], tr[1], r.t.stateName(), r.t.String())
	}
	return nil
}
