// Package relay is the engine of a relayed session, shared by the wire
// protocols (proxy/postgres, proxy/mysql): a [Pump] per direction that
// reads from one socket into a pooled buffer, walks the frame headers and
// writes every run of untouched frames straight from that buffer, handing
// a protocol's [Framer] only what it must see.
//
// A [Framer] is a protocol's knowledge of one direction of a session: how
// a frame header reads, which messages go to a hook whole, which are
// forwarded or dropped, and what the session learns from them. The pump
// is the rest: buffering, partial frames, messages that stream through in
// pieces, assembling hooked messages larger than the buffer, giving the
// buffer back while the source is idle (so an idle session holds none),
// and the rule "one write per read".
//
// It owns the pump and the frame-level vocabulary ([Action],
// [ErrTooLarge]). It must not know any wire protocol (message types,
// sequence ids, status flags): that stays in the framers of
// proxy/postgres and proxy/mysql. Parking idle legs on the server's poller
// is proxy.Relay's, which runs two pumps.
package relay
