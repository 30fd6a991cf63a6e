// Package mysqllog routes the messages of the go-sql-driver MySQL driver
// (idle connections closed by the server, broken packets) to a
// log/slog logger, so that they follow the process's log format instead
// of going to stderr as plain "[mysql] ..." lines.
//
// It owns only that adapter; it must not open connections or log
// anything of its own. The driver's messages carry no passwords or
// query values.
package mysqllog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// New returns a driver logger (for mysql.Config.Logger) that logs each
// message as a warning through l with component=mysql-driver; a nil l
// discards them.
func New(l *slog.Logger) mysql.Logger {
	if l == nil {
		return &mysql.NopLogger{}
	}
	return logger{l.With(slog.String("component", "mysql-driver"))}
}

type logger struct{ l *slog.Logger }

func (g logger) Print(v ...any) {
	g.l.LogAttrs(context.Background(), slog.LevelWarn, strings.TrimSpace(fmt.Sprint(v...)))
}
