package pgmsg

var errParse = &MalformedError{Message: "Parse"}

// Parse is a view of a Parse message body: a statement to prepare.
type Parse struct {
	Name  []byte
	Query []byte
	// ParamTypes are the parameter types the client declares (0: let the
	// server infer it).
	ParamTypes OIDs
}

// ParseParse decodes a Parse body.
func ParseParse(body []byte) (Parse, error) {
	return decode(body, errParse, func(r *reader) Parse {
		return Parse{Name: r.cstring(), Query: r.cstring(), ParamTypes: readOIDs(r)}
	})
}

// AppendParseStart appends the start of a Parse message (type byte, length
// placeholder, statement name); the caller appends the query text, its NUL,
// the parameter types (AppendOIDs), then End.
func AppendParseStart(dst, name []byte) []byte {
	return AppendCString(Begin(dst, TypeParse), name)
}

// AppendParse appends a whole Parse message.
func AppendParse(dst, name, query []byte, paramTypes []uint32) []byte {
	start := len(dst)
	dst = AppendParseStart(dst, name)
	dst = AppendCString(dst, query)
	dst = AppendOIDs(dst, paramTypes)
	return End(dst, start)
}
