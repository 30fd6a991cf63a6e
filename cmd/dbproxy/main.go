// Command dbproxy is a transparent encrypting proxy for PostgreSQL and MySQL.
//
// Subcommands (README, "Command line"): serve, check-config, keys
// init|list|rotate|rewrap|retire, schema guard|check (the database-side
// guard, package schemaguard), audit verify (the audit log's chain, package
// audit), migrate encrypt|decrypt|reencrypt (package migrate), version.
// Exit codes: 0 ok, 1 runtime or validation failure, 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	// Session time zones (PostgreSQL TimeZone, MySQL time_zone) resolve
	// even where the system has no zoneinfo (distroless images).
	_ "time/tzdata"
)

// Exit codes of the README ("Command line").
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error that is the caller's fault (bad flags or
// arguments); main exits 2 for it.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

const usageText = `dbproxy - transparent encrypting proxy for PostgreSQL and MySQL

Usage:
  dbproxy serve         [--config FILE]   run all listeners until SIGINT/SIGTERM
  dbproxy check-config  [--config FILE] [-v]
  dbproxy keys init     [--config FILE]   create master key file, keystore and missing data keys
  dbproxy keys list     [--config FILE] [--json]
  dbproxy keys rotate   [--config FILE] KEY
  dbproxy keys rewrap   [--config FILE]   re-wrap every data key under the current master key
  dbproxy keys retire   [--config FILE] [--database DB] KEY VERSION
                        remove an old key version once no stored value uses it
  dbproxy schema guard  [--config FILE] [--apply] [--database DB]
                        print (--apply: install) the CHECK constraints that admit only ciphertext
  dbproxy schema check  [--config FILE] [--database DB]
                        verify every encrypted column exists, holds bytes and carries its guard
  dbproxy audit verify  [--config FILE] FILE...
                        check the HMAC chain of audit files (rotated files first)
  dbproxy migrate encrypt --table T [--columns a,b] [--batch N] [--rate ROWS/s] [--dry-run] [--json]
                        [--config FILE] [--database DB] [--listener NAME]
                        online: existing plaintext columns to ciphertext, then the guard
  dbproxy migrate decrypt --table T [--columns a,b] [...]   back to plaintext columns (rollback)
  dbproxy migrate reencrypt [--key K] [--table T] [...]     values under old key versions to the primary
  dbproxy version

--config defaults to $DBPROXY_CONFIG, else ./dbproxy.yaml.
`

// env is what a subcommand needs from the process; tests substitute it.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	ops            *operations // serve's metrics and admin listener; nil otherwise
	audit          *auditing   // where audit events go (audit: section); nil: none
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// run dispatches a subcommand and maps its error to an exit code.
func run(ctx context.Context, args []string, e env) int {
	err := dispatch(ctx, args, e)
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "dbproxy: %s\n\n%s", ue.msg, usageText)
		return exitUsage
	}
	if !errors.Is(err, errReported) {
		fmt.Fprintf(e.stderr, "dbproxy: %v\n", err)
	}
	return exitFailure
}

// errReported says the subcommand already printed what went wrong.
var errReported = errors.New("reported")

func dispatch(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		return usagef("missing subcommand")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, e)
	case "check-config":
		return cmdCheckConfig(rest, e)
	case "keys":
		if len(rest) == 0 {
			return usagef("keys: missing subcommand (init, list, rotate, rewrap, retire)")
		}
		return cmdKeys(ctx, rest[0], rest[1:], e)
	case "schema":
		if len(rest) == 0 {
			return usagef("schema: missing subcommand (guard, check)")
		}
		return cmdSchema(ctx, rest[0], rest[1:], e)
	case "audit":
		if len(rest) == 0 {
			return usagef("audit: missing subcommand (verify)")
		}
		return cmdAudit(ctx, rest[0], rest[1:], e)
	case "migrate":
		if len(rest) == 0 {
			return usagef("migrate: missing subcommand (encrypt, decrypt, reencrypt)")
		}
		return cmdMigrate(ctx, rest[0], rest[1:], e)
	case "version", "--version":
		return cmdVersion(rest, e)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usageText)
		return nil
	default:
		return usagef("unknown subcommand %q", cmd)
	}
}

// newFlagSet returns a flag set with the shared --config flag.
func newFlagSet(name string, e env) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := "dbproxy.yaml"
	if v := e.getenv("DBPROXY_CONFIG"); v != "" {
		def = v
	}
	path := fs.String("config", def, "configuration file")
	return fs, path
}

// parseFlags parses args, turning flag errors into usage errors. Flags may
// come before or after positional arguments (`keys rotate KEY --config F`);
// fs.Args() holds the positional ones afterwards, and "--" ends the flags.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return usagef("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// parseNoArgs is parseFlags for a command that takes no positional
// arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("%s takes no arguments", fs.Name())
	}
	return nil
}
