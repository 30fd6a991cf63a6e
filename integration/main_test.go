// Package integration runs dbproxy end to end against real databases
// started by internal/testenv.
package integration

import (
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
