//go:build race

package pgcrypt_test

const raceEnabled = true
