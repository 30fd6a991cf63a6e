package proxy

// Observer counts what happens on one listener: finished and failed
// logins, bytes relayed each way, and the statements of sessions whose
// encryption layer classifies them. The wire packages and the encryption
// layers call it from session goroutines, concurrently, on hot paths: an
// implementation must be cheap (an atomic add), safe for concurrent use
// and must not block. cmd/dbproxy passes the listener's metrics
// (package metrics); nil in [ListenerOptions] observes nothing.
type Observer interface {
	// Handshake: a client logged in; its session is about to relay.
	Handshake()
	// AuthFailed: the database (or the proxy, for its own policy)
	// refused a client's login.
	AuthFailed()
	// FromClient and FromUpstream: n bytes read from the client (to go
	// upstream) or from the database (to go to the client) by the relay.
	FromClient(n int)
	FromUpstream(n int)
	// Forwarded, Rewritten and Refused: a client statement went to the
	// database unchanged, went with values encrypted or lookups rewritten,
	// or was answered with an error without reaching it. reason is a short
	// fixed word ([RefusalReason]), never statement text.
	Forwarded()
	Rewritten()
	Refused(reason string)
	// Planned: the encryption layer planned a statement text (a simple
	// query, a Parse, a MySQL COM_QUERY or COM_STMT_PREPARE); source says
	// how: "skipped" (not parsed: it cannot touch an encrypted table, or
	// was refused unread),
	// "cached" (the same text was parsed before), "template" (the same
	// statement with other constants was) or "parsed".
	Planned(source string)
}

// nopObserver is the Observer of a listener without one.
type nopObserver struct{}

func (nopObserver) Handshake()     {}
func (nopObserver) AuthFailed()    {}
func (nopObserver) FromClient(int) {}

func (nopObserver) FromUpstream(int) {}
func (nopObserver) Forwarded()       {}
func (nopObserver) Rewritten()       {}
func (nopObserver) Refused(string)   {}
func (nopObserver) Planned(string)   {}

// ObserverOrNop returns o, or an Observer that does nothing when o is nil,
// so that callers need no nil check.
func ObserverOrNop(o Observer) Observer {
	if o == nil {
		return nopObserver{}
	}
	return o
}

// ByteCounts returns the byte counters of o for the relay's pumps (see
// relay.Pump.CountReads): nil funcs when o is nil or does nothing, so that
// a listener without metrics pays one branch per read.
func ByteCounts(o Observer) (fromClient, fromUpstream func(int)) {
	if o == nil || o == (nopObserver{}) {
		return nil, nil
	}
	return o.FromClient, o.FromUpstream
}
