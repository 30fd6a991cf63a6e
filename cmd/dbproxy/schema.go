package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
)

// schemaTimeout bounds one `schema guard --apply` or `schema check` run
// (VALIDATE CONSTRAINT reads the whole table).
const schemaTimeout = 30 * time.Minute

// cmdSchema runs `schema guard [--apply]` and `schema check`: the
// database-side guard of encrypted columns (package schemaguard).
func cmdSchema(ctx context.Context, sub string, args []string, e env) error {
	switch sub {
	case "guard", "check":
	default:
		return usagef("schema: unknown subcommand %q (guard, check)", sub)
	}
	fs, path := newFlagSet("schema "+sub, e)
	apply := false
	if sub == "guard" {
		fs.BoolVar(&apply, "apply", false, "execute the DDL through each listener's upstream")
	}
	database := fs.String("database", "", "database for rules that name none")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if len(cfg.Encryption) == 0 {
		fmt.Fprintf(e.stderr, "%s: no encryption rules: nothing to guard\n", cfg.Path)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, schemaTimeout)
	defer cancel()
	if sub == "guard" && !apply {
		printGuardDDL(e.stdout, cfg, *database)
		return nil
	}
	bad := 0
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		for _, g := range guardGroups(cfg, lc.Protocol, *database) {
			bad += runGuardGroup(ctx, sub, lc, i, g, e)
		}
	}
	if bad > 0 {
		fmt.Fprintf(e.stderr, "%d problem(s) found\n", bad)
		return errReported
	}
	return nil
}

// runGuardGroup checks (sub "check") or applies (sub "guard") the guards of
// one group of targets behind listener lc, the i-th, reporting on e's
// outputs, and returns how many problems it reported.
func runGuardGroup(ctx context.Context, sub string, lc *config.Listener, i int, g guardGroup, e env) int {
	where := fmt.Sprintf("listener %s", listenerName(lc))
	if g.database != "" {
		where += fmt.Sprintf(", database %s", g.database)
	}
	if g.database == "" && lc.Protocol == config.ProtocolPostgres {
		for _, t := range g.targets {
			fmt.Fprintf(e.stderr, "%s: %s: the rule names no database: set database: in the rule or pass --database\n", where, t)
		}
		return len(g.targets)
	}
	db, err := openGuardDB(ctx, lc, i, e.getenv, g.database, slog.New(slog.NewTextHandler(e.stderr, nil)))
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", where, err)
		return len(g.targets)
	}
	defer db.Close()
	d := dialectOf(lc.Protocol)
	bad := 0
	if sub == "check" {
		problems, err := schemaguard.Check(ctx, db, d, g.targets)
		for _, p := range problems {
			fmt.Fprintf(e.stderr, "%s: %s\n", where, p)
		}
		bad += len(problems)
		if err != nil {
			fmt.Fprintf(e.stderr, "%s: %v\n", where, err)
			return bad + 1
		}
		fmt.Fprintf(e.stdout, "%s: %d of %d encrypted column(s) guarded\n", where, len(g.targets)-len(problems), len(g.targets))
		return bad
	}
	outcomes, _ := schemaguard.Apply(ctx, db, d, g.targets)
	for _, o := range outcomes {
		if o.Err != nil {
			fmt.Fprintf(e.stderr, "%s: %s: %v\n", where, o.Target, o.Err)
			bad++
			continue
		}
		fmt.Fprintf(e.stdout, "%s: %s: guard %s %s\n", where, o.Target, schemaguard.ConstraintName(d, o.Target.Table, o.Target.Column), o.Done)
	}
	return bad
}

func listenerName(lc *config.Listener) string {
	if lc.Name != "" {
		return lc.Name
	}
	return string(lc.Protocol)
}

func dialectOf(p config.Protocol) rules.Dialect {
	if p == config.ProtocolMySQL {
		return rules.DialectMySQL
	}
	return rules.DialectPostgres
}

// guardGroup is the targets one connection serves: PostgreSQL, one per
// database; MySQL, one for all (targets name their database).
type guardGroup struct {
	database string
	targets  []schemaguard.Target
}

// guardGroups returns the encrypted columns of cfg as guard targets for a
// listener of protocol p. Rules without database: take defaultDB (the
// --database flag; "" leaves them without one). PostgreSQL names are
// folded as the proxy folds them; MySQL names are kept as written (the
// guard looks them up without regard to case).
func guardGroups(cfg *config.Config, p config.Protocol, defaultDB string) []guardGroup {
	byDB := map[string][]schemaguard.Target{}
	for _, c := range cfg.Columns() {
		mode := rules.ModeRandomized
		if c.Mode == config.ModeDeterministic {
			mode = rules.ModeDeterministic
		}
		db := c.Database
		if db == "" {
			db = defaultDB
		}
		t := schemaguard.Target{Database: db, Mode: mode, Type: c.Type}
		if p == config.ProtocolMySQL {
			t.Table, t.Column = unquoteName(c.Table), unquoteName(c.Column)
		} else {
			t.Schema, t.Table, t.Column = foldPG(c.Schema), foldPG(c.Table), foldPG(c.Column)
			if t.Schema == "" {
				t.Schema = "public"
			}
		}
		key := db
		if p == config.ProtocolMySQL {
			key = ""
		}
		byDB[key] = append(byDB[key], t)
	}
	keys := make([]string, 0, len(byDB))
	for k := range byDB {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]guardGroup, 0, len(keys))
	for _, k := range keys {
		out = append(out, guardGroup{database: k, targets: byDB[k]})
	}
	return out
}

// unquoteName strips the double quotes a configured name may carry.
func unquoteName(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return s
}

// foldPG folds a configured name as PostgreSQL folds an identifier and as
// the rules package does: quoted names are kept, others lower-cased
// (ASCII).
func foldPG(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return unquoteName(s)
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// printGuardDDL writes the guard DDL of every protocol the listeners speak.
func printGuardDDL(w io.Writer, cfg *config.Config, defaultDB string) {
	seen := map[config.Protocol]bool{}
	for i := range cfg.Listeners {
		p := cfg.Listeners[i].Protocol
		if seen[p] {
			continue
		}
		seen[p] = true
		d := dialectOf(p)
		fmt.Fprintf(w, "-- dbproxy guard: %s (listener %s)\n", p, listenerName(&cfg.Listeners[i]))
		for _, g := range guardGroups(cfg, p, defaultDB) {
			if p == config.ProtocolPostgres {
				if g.database == "" {
					fmt.Fprintln(w, "-- in each database the rules apply to (they name none)")
				} else {
					fmt.Fprintf(w, "\\connect %s\n", pgxIdent(g.database))
				}
			}
			for _, t := range g.targets {
				fmt.Fprintf(w, "-- %s (%s, %s)\n", t, t.Mode, t.Type)
				for _, q := range schemaguard.ScriptStatements(d, t) {
					fmt.Fprintf(w, "%s;\n", q)
				}
			}
		}
	}
}

func pgxIdent(s string) string { return schemaguard.QuoteIdent(rules.DialectPostgres, s) }

// openGuardDB opens a database/sql pool over the catalog login of
// listener index to database (PostgreSQL) or to the server (MySQL).
func openGuardDB(ctx context.Context, lc *config.Listener, index int, getenv func(string) string, database string, log *slog.Logger) (*sql.DB, error) {
	l := newCatalogLogin(lc, index, getenv)
	if lc.Protocol == config.ProtocolMySQL {
		user, pw, err := l.mysqlUser()
		if err != nil {
			return nil, err
		}
		if user == "" {
			return nil, fmt.Errorf("no catalog credentials: %s", l.hint())
		}
		db, err := mysqlCatalogDB(l, user, pw, log)
		if err != nil {
			return nil, l.failed(user, err)
		}
		db.SetMaxOpenConns(1)
		return db, nil
	}
	cc, user, err := l.pgConfigAs(database, "", true)
	if err != nil {
		return nil, l.failed(user, err)
	}
	db := stdlib.OpenDB(*cc)
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, l.failed(user, err)
	}
	return db, nil
}

// checkGuards logs a warning per encrypted column of the listener that is
// not guarded as `schema check` expects (serve, at start). It never fails
// anything. Rules that name no database are not checked (the proxy cannot
// tell which databases they will meet).
func checkGuards(ctx context.Context, lc *config.Listener, index int, getenv func(string) string, log *slog.Logger, cfg *config.Config) {
	d := dialectOf(lc.Protocol)
	for _, g := range guardGroups(cfg, lc.Protocol, "") {
		var targets []schemaguard.Target
		for _, t := range g.targets {
			if t.Database != "" {
				targets = append(targets, t)
			}
		}
		if len(targets) == 0 {
			continue
		}
		db, err := openGuardDB(ctx, lc, index, getenv, g.database, log)
		if err != nil {
			log.Warn("could not check the guards of encrypted columns", slog.Any("error", err))
			continue
		}
		problems, err := schemaguard.Check(ctx, db, d, targets)
		_ = db.Close()
		for _, p := range problems {
			log.Warn("encrypted column not guarded by the database: "+p.Message+" (see docs/guard.md)", slog.String("column", p.Target.String()))
		}
		if err != nil {
			log.Warn("could not check the guards of encrypted columns", slog.Any("error", err))
		}
	}
}
