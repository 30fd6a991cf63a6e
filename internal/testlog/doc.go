// Package testlog owns Buffer, the sink tests give a logger (or a process's
// output, or a connection's traffic) when they read what was written while
// other goroutines still write to it.
//
// It is for tests only: no production package imports it, and it knows
// nothing of the proxy.
package testlog
