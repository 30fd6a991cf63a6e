package pgcrypt

import (
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// appendText appends the PostgreSQL text form of a canonical plaintext.
func appendText(dst []byte, col *rules.ColumnRule, canon []byte, zone *time.Location) ([]byte, error) {
	if zone == nil {
		return value.AppendText(dst, col.Type, canon)
	}
	return value.AppendTextInZone(dst, col.Type, canon, zone)
}
