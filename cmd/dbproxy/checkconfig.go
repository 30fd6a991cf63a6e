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
	if err := parseNoArgs(fs, args); err != nil {
		return err
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
	if _, err := configPolicy(cfg); err != nil {
		fmt.Fprintln(e.stderr, err)
		fmt.Fprintln(e.stderr, "1 problem(s) found")
		return errReported
	}
	for _, w := range catalogWarnings(cfg) {
		fmt.Fprintf(e.stderr, "%s: warning: %s\n", cfg.Path, w)
	}
	if *verbose {
		fmt.Fprint(e.stdout, cfg.Redacted())
	}
	fmt.Fprintf(e.stdout, "%s: OK\n", cfg.Path)
	return nil
}

// catalogWarnings names the listeners that will need a catalog connection
// (there are encryption rules) but have no catalog: credentials, so that
// they depend on the environment fallbacks.
func catalogWarnings(cfg *config.Config) []string {
	if len(cfg.Encryption) == 0 {
		return nil
	}
	var out []string
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		if lc.Catalog != nil {
			continue
		}
		what := "the catalog connection logs in as each session's user with PGPASSWORD or ~/.pgpass from the proxy's environment (with a password or SCRAM login and neither, every statement on an encrypted table is refused)"
		if lc.Protocol == config.ProtocolMySQL {
			what = "the catalog connection needs DBPROXY_MYSQL_CATALOG_USER/PASSWORD in the proxy's environment (without them INSERT without a column list into encrypted tables is refused and sessions are assumed to start in UTC)"
		}
		out = append(out, fmt.Sprintf("listeners[%d] (%s) has encryption rules but no catalog credentials: %s; set listeners[%d].catalog.user and password_env (or password_file)", i, listenerName(lc), what, i))
	}
	return out
}
