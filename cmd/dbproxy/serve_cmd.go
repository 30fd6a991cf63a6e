package main

import (
	"context"

	"github.com/dbproxy/dbproxy/config"
)

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
	enc, err := openEncryption(ctx, cfg, e, logger)
	if err != nil {
		return err
	}
	if enc != nil {
		defer enc.close()
	}
	return serveWith(ctx, cfg, logger, enc)
}
