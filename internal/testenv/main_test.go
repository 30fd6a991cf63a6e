package testenv_test

import (
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestMain runs the package's tests under the harness's Main (shared
// servers are stopped at the end).
func TestMain(m *testing.M) { testenv.Main(m) }
