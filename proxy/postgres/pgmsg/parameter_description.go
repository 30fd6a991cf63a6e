package pgmsg

var errParameterDescription = &MalformedError{Message: "ParameterDescription"}

// ParseParameterDescription decodes a ParameterDescription body: the types
// of a prepared statement's parameters.
func ParseParameterDescription(body []byte) (OIDs, error) {
	return decode(body, errParameterDescription, readOIDs)
}

// AppendParameterDescriptionStart appends the start of a
// ParameterDescription message of n types (type byte, length placeholder,
// count); the caller appends the OIDs (AppendUint32), then End.
func AppendParameterDescriptionStart(dst []byte, n int) []byte {
	return AppendCount(Begin(dst, TypeParameterDescription), n)
}

// AppendParameterDescription appends a whole ParameterDescription message.
func AppendParameterDescription(dst []byte, oids []uint32) []byte {
	start := len(dst)
	dst = AppendOIDs(Begin(dst, TypeParameterDescription), oids)
	return End(dst, start)
}
