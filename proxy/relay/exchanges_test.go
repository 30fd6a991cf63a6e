package relay_test

import (
	"testing"

	"github.com/dbproxy/dbproxy/proxy/relay"
)

func TestExchanges(t *testing.T) {
	e := relay.NewExchanges(nil)
	busy, idle := 0, 0
	e.Notify(func() { busy++ }, func() { idle++ })
	if !e.Idle() || !e.Quiet() {
		t.Fatal("new count not idle")
	}
	e.Hold()
	if e.Idle() || e.Quiet() || busy != 1 {
		t.Fatalf("held: idle %v quiet %v busy %d", e.Idle(), e.Quiet(), busy)
	}
	e.Add(2, true) // the Sync: two answers owed, hold released
	if e.Idle() || !e.Quiet() || busy != 1 {
		t.Fatalf("outstanding: idle %v quiet %v busy %d", e.Idle(), e.Quiet(), busy)
	}
	if e.CloseIfIdle(false) {
		t.Fatal("closed with exchanges outstanding")
	}
	e.Done(1, false)
	if e.Idle() || idle != 0 {
		t.Fatal("idle with one exchange outstanding")
	}
	e.Done(5, false) // more answers than counted: stops at zero
	if !e.Idle() || idle != 1 {
		t.Fatalf("not idle after the last answer (idle calls %d)", idle)
	}
	e.Add(-3, false) // a correction never goes below zero
	if !e.Idle() || busy != 1 {
		t.Fatal("negative correction changed the count")
	}
	if e.CloseIfIdle(true) {
		t.Fatal("closed inside a transaction")
	}
	if !e.CloseIfIdle(false) || !e.Closing() || e.Idle() {
		t.Fatal("idle session not closed")
	}
	if e.Add(1, false) || e.Hold() {
		t.Fatal("request admitted after closing")
	}
}
