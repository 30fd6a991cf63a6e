package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/dbproxy/dbproxy/config"
)

// defaultGCPercent is the garbage collector's target for serve unless the
// GOGC environment variable says otherwise. A proxy's live heap is small
// (relay buffers, caches) while every query allocates a little, so Go's
// default of 100 collects very often: 400 spends about a fifth less CPU per
// encrypted query (pgcrypt's BenchmarkSimpleSelect) for a peak heap of up
// to five times the live one.
const defaultGCPercent = 400

func cmdServe(ctx context.Context, args []string, e env) error {
	fs, path := newFlagSet("serve", e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("serve takes no arguments")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	logger := newLogger(e.stderr, cfg.Log)
	if e.getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	enc, err := openEncryption(ctx, cfg, e, logger)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloads := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reloads <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	rl := &reloader{signals: reloads, load: func(ctx context.Context) (*config.Config, *encryption, error) {
		next, err := config.Load(*path)
		if err != nil {
			return nil, nil, err
		}
		nextEnc, err := openEncryption(ctx, next, e, logger)
		if err != nil {
			return nil, nil, err
		}
		return next, nextEnc, nil
	}}
	return serveWith(ctx, cfg, logger, enc, rl)
}
