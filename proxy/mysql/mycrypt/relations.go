package mycrypt

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// Relations implements mysqlsql.RelationSource: the views (with their
// definitions) and triggers the catalog user can see, in every database.
// A view whose definition the user may not read (no SHOW VIEW privilege)
// comes back with an empty Definition, which the planner treats as a view
// over an encrypted table.
func (c *Catalog) Relations(ctx context.Context) (mysqlsql.Relations, error) {
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	var rel mysqlsql.Relations
	rows, err := c.db.QueryContext(ctx, "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(VIEW_DEFINITION, '') FROM information_schema.VIEWS")
	if err != nil {
		return rel, fmt.Errorf("read views: %w", err)
	}
	for rows.Next() {
		var v mysqlsql.View
		if err := rows.Scan(&v.Database, &v.Name, &v.Definition); err != nil {
			_ = rows.Close()
			return rel, fmt.Errorf("read views: %w", err)
		}
		rel.Views = append(rel.Views, v)
	}
	if err := rows.Close(); err != nil {
		return rel, fmt.Errorf("read views: %w", err)
	}
	if err := rows.Err(); err != nil {
		return rel, fmt.Errorf("read views: %w", err)
	}
	rows, err = c.db.QueryContext(ctx, "SELECT TRIGGER_SCHEMA, TRIGGER_NAME, EVENT_OBJECT_SCHEMA, EVENT_OBJECT_TABLE, "+
		"COALESCE(ACTION_STATEMENT, '') FROM information_schema.TRIGGERS")
	if err != nil {
		return rel, fmt.Errorf("read triggers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t mysqlsql.Trigger
		if err := rows.Scan(&t.Database, &t.Name, &t.TableDatabase, &t.Table, &t.Statement); err != nil {
			return rel, fmt.Errorf("read triggers: %w", err)
		}
		rel.Triggers = append(rel.Triggers, t)
	}
	if err := rows.Err(); err != nil {
		return rel, fmt.Errorf("read triggers: %w", err)
	}
	return rel, nil
}

// triggerWarner passes the server's relations to the planner and logs a
// warning, once per table, for each trigger that fires on an encrypted
// table or whose body names one: its writes never pass through the proxy
// (a value it stores in an encrypted column is plaintext unless the
// database-side guard rejects it).
type triggerWarner struct {
	src   mysqlsql.RelationSource
	rules *rules.Set
	log   *slog.Logger

	mu     sync.Mutex
	warned map[string]bool
}

func newTriggerWarner(src mysqlsql.RelationSource, set *rules.Set, log *slog.Logger) *triggerWarner {
	return &triggerWarner{src: src, rules: set, log: log, warned: map[string]bool{}}
}

func (w *triggerWarner) Relations(ctx context.Context) (mysqlsql.Relations, error) {
	rel, err := w.src.Relations(ctx)
	if err != nil {
		return rel, err
	}
	for _, t := range rel.Triggers {
		on := w.rules.Table(t.TableDatabase, "", t.Table) != nil
		if !on && !w.rules.MayTouch(t.Statement) {
			continue
		}
		key := strings.ToLower(t.TableDatabase + "." + t.Table)
		w.mu.Lock()
		seen := w.warned[key]
		w.warned[key] = true
		w.mu.Unlock()
		if seen {
			continue
		}
		reason := "the trigger's body names an encrypted table"
		if on {
			reason = "the trigger fires on an encrypted table"
		}
		w.log.Warn("a trigger writes without the proxy: values it stores in encrypted columns are not encrypted by the proxy",
			"database", t.TableDatabase, "table", t.Table, "trigger", t.Name, "reason", reason)
	}
	return rel, nil
}
