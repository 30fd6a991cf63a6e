package mysqllog_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/dbproxy/dbproxy/internal/mysqllog"
)

func TestNewLogsJSON(t *testing.T) {
	var buf bytes.Buffer
	l := mysqllog.New(slog.New(slog.NewJSONHandler(&buf, nil)))
	l.Print("closing bad idle connection: ", "EOF\n")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	if line["msg"] != "closing bad idle connection: EOF" || line["component"] != "mysql-driver" || line["level"] != "WARN" {
		t.Errorf("line = %v", line)
	}
	mysqllog.New(nil).Print("discarded") // must not panic
}
