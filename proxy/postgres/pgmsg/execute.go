package pgmsg

var errExecute = &MalformedError{Message: "Execute"}

// Execute is a view of an Execute message body.
type Execute struct {
	Portal []byte
	// MaxRows is the most rows to return, 0 for all of them.
	MaxRows uint32
}

// ParseExecute decodes an Execute body.
func ParseExecute(body []byte) (Execute, error) {
	return decode(body, errExecute, func(r *reader) Execute {
		return Execute{Portal: r.cstring(), MaxRows: r.uint32()}
	})
}
