// Package relaytest owns the helpers the wire packages' framing and relay
// tests share (a reader that splits its input at pseudo-random points). It
// is imported by tests only and must not depend on a wire package.
package relaytest
