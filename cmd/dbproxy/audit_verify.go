package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dbproxy/dbproxy/audit"
	"github.com/dbproxy/dbproxy/config"
)

// cmdAudit runs dbproxy audit SUB: verify FILE... checks the chain of the
// audit files given in order (rotated files first) with the audit key of
// the configured keystore. It prints a summary line and exits 0, or names
// the first bad line and exits 1.
func cmdAudit(ctx context.Context, sub string, args []string, e env) error {
	if sub != "verify" {
		return usagef("audit: unknown subcommand %q (verify)", sub)
	}
	fs, path := newFlagSet("audit verify", e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("audit verify: at least one FILE expected (rotated files first)")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if cfg.Keys.MasterKey.Provider == "" {
		return fmt.Errorf("audit verify: %s has no keys: section; the audit key is kept in the keystore", cfg.Path)
	}
	logCfg := cfg.Log
	logCfg.Level = "warn"
	mgr, _, closeFn, err := openManager(ctx, cfg, e, newLogger(e.stderr, logCfg))
	if err != nil {
		return err
	}
	defer closeFn()
	sum, err := audit.Verify(fs.Args(), func(v uint32) ([]byte, error) {
		k, err := mgr.Version(ctx, audit.KeyName, v)
		if err != nil {
			return nil, err
		}
		return audit.MACKey(k)
	})
	var bad *audit.BadLineError
	if errors.As(err, &bad) {
		fmt.Fprintf(e.stderr, "dbproxy: audit verify: FAILED at %s\n", bad)
		return errReported
	}
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	fmt.Fprintln(e.stdout, verifySummary(sum))
	return nil
}

// verifySummary is the line audit verify prints for a chain that verified.
func verifySummary(s audit.Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "OK: %d events in %d file(s), sequence %d..%d, last mac %s", s.Events, s.Files, s.FirstSeq, s.LastSeq, s.LastMAC)
	if s.Continues {
		fmt.Fprintf(&b, "; continues an earlier file not given (from sequence %d)", s.FirstSeq-1)
	}
	if s.Dropped > 0 {
		fmt.Fprintf(&b, "; %d event(s) dropped by the writer", s.Dropped)
	}
	return b.String()
}
