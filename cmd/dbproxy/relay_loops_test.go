package main

import (
	"strings"
	"testing"
)

func TestRelayLoopsEnv(t *testing.T) {
	for v, want := range map[string]int{"": 0, "0": 0, "-1": -1, "3": 3} {
		if got, err := relayLoops(v); err != nil || got != want {
			t.Errorf("relayLoops(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"x", "-2", "1025", "1.5"} {
		if _, err := relayLoops(v); err == nil || !strings.Contains(err.Error(), relayLoopsEnv) {
			t.Errorf("relayLoops(%q): %v, want an error naming %s", v, err, relayLoopsEnv)
		}
	}
}
