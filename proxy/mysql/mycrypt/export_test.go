package mycrypt

import (
	"log/slog"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// NewTriggerWarnerForTest exposes the trigger warner.
func NewTriggerWarnerForTest(src mysqlsql.RelationSource, set *rules.Set, log *slog.Logger) mysqlsql.RelationSource {
	return newTriggerWarner(src, set, log)
}
