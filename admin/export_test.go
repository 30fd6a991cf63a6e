package admin

import "time"

// SetClock makes the server's readiness cache read now instead of the
// clock.
func (s *Server) SetClock(now func() time.Time) { s.ready.now = now }
