package proxy

import "fmt"

// LimitError says which of a listener's limits a connection is over. Its
// message names the YAML setting so that an operator knows what to raise.
type LimitError struct {
	Setting string // e.g. "max_connections"
	Limit   int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("dbproxy: too many connections (limits.%s = %d)", e.Setting, e.Limit)
}
