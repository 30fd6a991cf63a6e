package migrate

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// state is a run's row of the progress table.
type state struct {
	phase   string
	columns string
	lastKey []string // nil: from the start
	done    int64
	changed int64
}

// queryer is what state needs of a *sql.Conn or *sql.Tx.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readState returns the progress row of op on t, nil if there is none (or
// no progress table yet).
func readState(ctx context.Context, q queryer, op Op, t Table) (*state, error) {
	var exists bool
	check, arg := `SELECT to_regclass($1) IS NOT NULL`, []any{t.stateName()}
	if t.mysql() {
		check, arg = `SELECT COUNT(*) > 0 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, []any{t.Schema, StateTable}
	}
	if err := q.QueryRowContext(ctx, check, arg...).Scan(&exists); err != nil {
		return nil, wrapf(err, "read %s", t.stateName())
	}
	if !exists {
		return nil, nil
	}
	var st state
	var last sql.NullString
	err := q.QueryRowContext(ctx, t.ph(fmt.Sprintf(`SELECT phase, %s, last_key, rows_done, changed FROM %s WHERE op = $1 AND table_name = $2`,
		t.quote("columns"), t.stateName())),
		string(op), t.String()).Scan(&st.phase, &st.columns, &last, &st.done, &st.changed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrapf(err, "read %s", t.stateName())
	}
	if last.Valid {
		if err := json.Unmarshal([]byte(last.String), &st.lastKey); err != nil {
			return nil, fmt.Errorf("read %s: last_key: %w", t.stateName(), err)
		}
	}
	return &st, nil
}

// startState creates (or restarts) the progress row of op on t.
func startState(ctx context.Context, q queryer, op Op, t Table, phase string) error {
	query := fmt.Sprintf(`INSERT INTO %s (op, table_name, columns, phase) VALUES ($1, $2, $3, $4)
ON CONFLICT (op, table_name) DO UPDATE SET columns = EXCLUDED.columns, phase = EXCLUDED.phase, last_key = NULL,
  rows_done = 0, changed = 0, started_at = now(), updated_at = now()`, t.stateName())
	if t.mysql() {
		query = fmt.Sprintf("INSERT INTO %s (op, table_name, `columns`, phase) VALUES (?, ?, ?, ?)"+`
ON DUPLICATE KEY UPDATE `+"`columns`"+` = VALUES(`+"`columns`"+`), phase = VALUES(phase), last_key = NULL,
  rows_done = 0, changed = 0, started_at = CURRENT_TIMESTAMP(6), updated_at = CURRENT_TIMESTAMP(6)`, t.stateName())
	}
	_, err := q.ExecContext(ctx, query, string(op), t.String(), t.columnNames(), phase)
	return wrapf(err, "write %s", t.stateName())
}

// saveState records progress; it runs in the transaction of the batch it
// records, so progress and data commit together.
func saveState(ctx context.Context, q queryer, op Op, t Table, st *state) error {
	var last any
	if st.lastKey != nil {
		b, err := json.Marshal(st.lastKey)
		if err != nil {
			return err
		}
		last = string(b)
	}
	if t.mysql() {
		_, err := q.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET phase = ?, last_key = ?, rows_done = ?, changed = ?, updated_at = CURRENT_TIMESTAMP(6)
WHERE op = ? AND table_name = ?`, t.stateName()), st.phase, last, st.done, st.changed, string(op), t.String())
		return wrapf(err, "write %s", t.stateName())
	}
	_, err := q.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET phase = $3, last_key = $4, rows_done = $5, changed = $6, updated_at = now()
WHERE op = $1 AND table_name = $2`, t.stateName()), string(op), t.String(), st.phase, last, st.done, st.changed)
	return wrapf(err, "write %s", t.stateName())
}
