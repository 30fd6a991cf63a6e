package pgmsg

var (
	errDescribe = &MalformedError{Message: "Describe"}
	errClose    = &MalformedError{Message: "Close"}
)

// Target is a view of a Describe or Close message body: the prepared
// statement (ObjectStatement) or portal (ObjectPortal) it names.
type Target struct {
	Object byte
	Name   []byte
}

// ParseDescribe decodes a Describe body.
func ParseDescribe(body []byte) (Target, error) { return parseTarget(body, errDescribe) }

// ParseClose decodes a Close body.
func ParseClose(body []byte) (Target, error) { return parseTarget(body, errClose) }

func parseTarget(body []byte, bad error) (Target, error) {
	t, err := decode(body, bad, func(r *reader) Target { return Target{Object: r.byte(), Name: r.cstring()} })
	if err == nil && t.Object != ObjectStatement && t.Object != ObjectPortal {
		return Target{}, bad
	}
	return t, err
}

// AppendDescribe appends a whole Describe message of a statement or portal.
func AppendDescribe(dst []byte, object byte, name []byte) []byte {
	return appendTarget(dst, TypeDescribe, object, name)
}

// AppendClose appends a whole Close message of a statement or portal.
func AppendClose(dst []byte, object byte, name []byte) []byte {
	return appendTarget(dst, TypeClose, object, name)
}

func appendTarget(dst []byte, typ, object byte, name []byte) []byte {
	start := len(dst)
	dst = append(Begin(dst, typ), object)
	return End(AppendCString(dst, name), start)
}
