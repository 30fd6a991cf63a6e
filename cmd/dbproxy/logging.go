package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/dbproxy/dbproxy/config"
)

// newLogger builds the process logger from the log section of the config:
// text to stderr by default, JSON with log.format: json.
func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// logFailure logs serve's failure through logger when the log format is
// JSON, and returns errReported, so that the process's last line is JSON
// too; with text it returns err, which main prints.
func logFailure(logger *slog.Logger, c config.Log, err error) error {
	if err == nil || c.Format != "json" {
		return err
	}
	logger.Error("serve failed", slog.Any("error", err))
	return errReported
}
