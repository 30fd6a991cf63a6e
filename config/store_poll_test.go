package config_test

import (
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/config"
)

// TestStorePoll: keys.store.poll defaults to 30s for the database store and
// to off for the file store, takes a Go duration for either, and refuses
// less than a second naming file, line and field.
func TestStorePoll(t *testing.T) {
	const db = keysYAML + `  store:
    type: database
    dsn: postgres://dbproxy@db:5432/app
`
	const file = keysYAML + `  store:
    type: file
`
	for _, tc := range []struct {
		name, src string
		want      time.Duration
	}{
		{"database default", db, config.DefaultStorePoll},
		{"database set", db + "    poll: 5s\n", 5 * time.Second},
		{"file default: off", file, 0},
		{"file set", file + "    poll: 1m\n", time.Minute},
	} {
		if got := mustParse(t, tc.src).Keys.Store.Poll; got != tc.want {
			t.Errorf("%s: poll %s, want %s", tc.name, got, tc.want)
		}
	}
	_, err := parse(t, db+"    poll: 500ms\n")
	checkErrors(t, err, []want{{"8:11", "keys.store.poll", "must be at least 1s, got 500ms"}})
	_, err = parse(t, file+"    poll: 0s\n")
	checkErrors(t, err, []want{{"7:11", "keys.store.poll", "must be at least 1s, got 0s"}})
	_, err = parse(t, file+"    poll: often\n")
	checkErrors(t, err, []want{{"7:11", "keys.store.poll", `invalid duration "often"`}})

	// The effective config shows the database default and parses back to it.
	cfg := mustParse(t, db)
	if back := mustParse(t, cfg.Redacted()); back.Keys.Store.Poll != config.DefaultStorePoll {
		t.Fatalf("Redacted round trip: poll %s\n%s", back.Keys.Store.Poll, cfg.Redacted())
	}
}
