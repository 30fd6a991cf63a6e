package mycrypt_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
	"github.com/dbproxy/dbproxy/value"
)

type staticRelations mysqlsql.Relations

func (s staticRelations) Relations(context.Context) (mysqlsql.Relations, error) {
	return mysqlsql.Relations(s), nil
}

// TestTriggerWarnings: a trigger on an encrypted table, or whose body
// names one, is logged once per table however often the list is read;
// other triggers are not; the log carries names, never the body.
func TestTriggerWarnings(t *testing.T) {
	set, err := rules.New(rules.DialectMySQL, []rules.Spec{
		{Database: "app", Table: "users", Column: "ssn", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText},
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := mycrypt.NewTriggerWarnerForTest(staticRelations{Triggers: []mysqlsql.Trigger{
		{Database: "app", Name: "t1", TableDatabase: "app", Table: "users", Statement: "SET NEW.ssn = 'secret-body'"},
		{Database: "app", Name: "t2", TableDatabase: "app", Table: "users", Statement: "SET NEW.ssn = NEW.note"},
		{Database: "app", Name: "t3", TableDatabase: "app", Table: "notes", Statement: "INSERT INTO users (ssn) VALUES (NEW.note)"},
		{Database: "app", Name: "t4", TableDatabase: "app", Table: "notes", Statement: "SET NEW.note = UPPER(NEW.note)"},
	}}, set, slog.New(slog.NewTextHandler(&buf, nil)))
	for range 3 {
		if _, err := w.Relations(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	logs := buf.String()
	if n := strings.Count(logs, "level=WARN"); n != 2 {
		t.Fatalf("%d warnings, want 2 (users, notes):\n%s", n, logs)
	}
	if !strings.Contains(logs, "trigger=t1") || !strings.Contains(logs, "trigger=t3") || strings.Contains(logs, "t4") ||
		strings.Contains(logs, "secret-body") {
		t.Fatalf("log:\n%s", logs)
	}
}
