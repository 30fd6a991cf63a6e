// Package testlog gives tests a log sink they may read while the code under
// test writes to it from other goroutines. It owns nothing else; production
// code must not import it.
package testlog
