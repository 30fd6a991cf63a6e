package value

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// checkString reports what is wrong with s as PostgreSQL text in a UTF8
// database (valid UTF-8, no NUL), or "" if nothing is.
func checkString(s []byte) string {
	if bytes.IndexByte(s, 0) >= 0 {
		return "contains a NUL byte"
	}
	if !utf8.Valid(s) {
		return "invalid UTF-8"
	}
	return ""
}

// checkJSON reports what is wrong with s as a json document, or "".
// Like PostgreSQL's json type the document is kept as given (whitespace,
// key order and duplicate keys included) once it parses.
func checkJSON(s []byte) string {
	if !utf8.Valid(s) {
		return "invalid UTF-8"
	}
	if !json.Valid(s) {
		return "not a JSON document"
	}
	return ""
}

func appendCanonicalString(dst []byte, src []byte) ([]byte, error) {
	if d := checkString(src); d != "" {
		return dst, syntaxError(TypeText, d)
	}
	return append(dst, src...), nil
}

func appendCanonicalJSON(dst []byte, src []byte) ([]byte, error) {
	if d := checkJSON(src); d != "" {
		return dst, syntaxError(TypeJSON, d)
	}
	return append(dst, src...), nil
}
