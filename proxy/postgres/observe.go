package postgres

import "bytes"

// serverRefused counts a login the server refused with ErrorResponse body
// as a failed authentication when its SQLSTATE is of class 28
// (invalid_authorization_specification, invalid_password).
func (s *session) serverRefused(body []byte) {
	if bytes.HasPrefix(errorField(body, 'C'), []byte("28")) {
		s.h.Obs.AuthFailed()
	}
}

// proxyRefused counts a login the proxy itself refused (err is the *Error
// sent) as a failed authentication when its SQLSTATE is of class 28.
func (s *session) proxyRefused(e *Error) {
	if len(e.Code) == 5 && e.Code[:2] == "28" {
		s.h.Obs.AuthFailed()
	}
}

// errorField returns field typ of an ErrorResponse body, nil if absent.
func errorField(body []byte, typ byte) []byte {
	for len(body) > 0 && body[0] != 0 {
		t := body[0]
		v, rest, ok := bytes.Cut(body[1:], []byte{0})
		if !ok {
			return nil
		}
		if t == typ {
			return v
		}
		body = rest
	}
	return nil
}
