package main

import (
	"errors"
	"fmt"

	"github.com/dbproxy/dbproxy/config"
)

// cmdCheckConfig validates the configuration. It prints every problem as
// FILE:LINE:COL: message (all of them, not just the first) and exits 1, or
// reports OK; -v also prints the effective configuration with defaults
// filled in and secrets redacted.
func cmdCheckConfig(args []string, e env) error {
	fs, path := newFlagSet("check-config", e)
	verbose := fs.Bool("v", false, "print the effective configuration")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("check-config takes no arguments")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, fe := range errs {
				fmt.Fprintln(e.stderr, fe.Error())
			}
			fmt.Fprintf(e.stderr, "%d problem(s) found\n", len(errs))
			return errReported
		}
		return err
	}
	if *verbose {
		fmt.Fprint(e.stdout, cfg.Redacted())
	}
	fmt.Fprintf(e.stdout, "%s: OK\n", cfg.Path)
	return nil
}
