package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/migrate"
	"github.com/dbproxy/dbproxy/rules"
)

// migrateFlags are the flags of every migrate subcommand.
type migrateFlags struct {
	table, columns, key, database, listener string
	batch                                   int
	rate                                    float64
	dryRun, asJSON                          bool
}

// cmdMigrate runs `migrate encrypt|decrypt|reencrypt` (package migrate,
// docs/migrate.md).
func cmdMigrate(ctx context.Context, sub string, args []string, e env) error {
	op := migrate.Op(sub)
	switch op {
	case migrate.OpEncrypt, migrate.OpDecrypt, migrate.OpReencrypt:
	default:
		return usagef("migrate: unknown subcommand %q (encrypt, decrypt, reencrypt)", sub)
	}
	fs, path := newFlagSet("migrate "+sub, e)
	var f migrateFlags
	fs.StringVar(&f.table, "table", "", "table ([schema.]table)")
	if op == migrate.OpReencrypt {
		fs.StringVar(&f.key, "key", "", "only columns of this data key")
	} else {
		fs.StringVar(&f.columns, "columns", "", "comma-separated columns (default: every encrypted column of the table)")
	}
	fs.IntVar(&f.batch, "batch", 1000, "rows per batch transaction")
	fs.Float64Var(&f.rate, "rate", 0, "at most this many rows per second (0: unthrottled)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the plan and the SQL, change nothing")
	fs.BoolVar(&f.asJSON, "json", false, "progress and result as JSON lines")
	fs.StringVar(&f.database, "database", "", "database for rules that name none")
	fs.StringVar(&f.listener, "listener", "", "listener whose upstream and catalog login to use (default: the only one)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if f.table == "" && op != migrate.OpReencrypt {
		return usagef("migrate %s: --table is required", sub)
	}
	if f.batch <= 0 || f.rate < 0 {
		return usagef("migrate %s: --batch must be positive and --rate not negative", sub)
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	lc, index, err := migrateListener(cfg, f.listener)
	if err != nil {
		return err
	}
	targets, err := migrateTargets(cfg, op, f, dialectOf(lc.Protocol))
	if err != nil {
		return err
	}
	mgr, _, closeFn, err := openManager(ctx, cfg, e, newLogger(e.stderr, config.Log{Level: "warn"}))
	if err != nil {
		return err
	}
	defer closeFn()
	enc := rules.NewEncryptor(mgr)
	for _, tg := range targets {
		if err := runMigration(ctx, op, f, lc, index, tg, enc, mgr, e); err != nil {
			return err
		}
	}
	return nil
}

// migrateTarget is one table to migrate and the database it is in.
type migrateTarget struct {
	database string
	table    migrate.Table
}

func runMigration(ctx context.Context, op migrate.Op, f migrateFlags, lc *config.Listener, index int, tg migrateTarget,
	enc migrate.Cipher, versions migrate.Versions, e env) error {
	db, err := openGuardDB(ctx, lc, index, e.getenv, tg.database, slog.New(slog.NewTextHandler(e.stderr, nil)))
	if err != nil {
		return fmt.Errorf("migrate %s %s: %w", op, tg.table, err)
	}
	defer db.Close()
	prog := newProgressSink(e, f.asJSON)
	o := migrate.Options{Batch: f.batch, Rate: f.rate, DryRun: f.dryRun, Plan: e.stdout, Progress: prog.update, Versions: versions}
	res, err := runOp(ctx, op, db, enc, tg.table, o)
	prog.finish()
	if err != nil {
		return err
	}
	if f.dryRun {
		return nil
	}
	return printResult(e, op, tg, res, f.asJSON)
}

func runOp(ctx context.Context, op migrate.Op, db *sql.DB, enc migrate.Cipher, t migrate.Table, o migrate.Options) (migrate.Result, error) {
	switch op {
	case migrate.OpEncrypt:
		return migrate.Encrypt(ctx, db, enc, t, o)
	case migrate.OpDecrypt:
		return migrate.Decrypt(ctx, db, enc, t, o)
	default:
		return migrate.Reencrypt(ctx, db, enc, t, o)
	}
}

func printResult(e env, op migrate.Op, tg migrateTarget, res migrate.Result, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"op": op, "database": tg.database, "table": tg.table.String(),
			"result": "done", "skipped": res.Skipped, "rows": res.Rows, "changed": res.Changed, "passes": res.Passes,
			"swap_lock_ms": res.SwapLock.Milliseconds()})
	}
	where := tg.table.String()
	if tg.database != "" && tg.table.Dialect != rules.DialectMySQL { // MySQL: the table is qualified by its database
		where = tg.database + ": " + where
	}
	if res.Skipped {
		fmt.Fprintf(e.stdout, "migrate %s %s: nothing to do (%s)\n", op, where, res.Message)
		return nil
	}
	fmt.Fprintf(e.stdout, "migrate %s %s: %d rows, %d values converted", op, where, res.Rows, res.Changed)
	if op != migrate.OpReencrypt {
		fmt.Fprintf(e.stdout, ", %d catch-up pass(es), columns swapped", res.Passes)
		if res.SwapLock > 0 {
			fmt.Fprintf(e.stdout, " (table locked %s)", res.SwapLock.Round(time.Millisecond))
		}
	}
	fmt.Fprintln(e.stdout)
	switch op {
	case migrate.OpEncrypt:
		fmt.Fprintln(e.stdout, "the guard is in place; now put these rules into serve's configuration and reload it (SIGHUP): see docs/migrate.md")
	case migrate.OpDecrypt:
		fmt.Fprintln(e.stdout, "now remove these rules from serve's configuration and reload it (SIGHUP): see docs/migrate.md")
	}
	return nil
}

// migrateListener picks the listener whose upstream and catalog login
// the migration uses.
func migrateListener(cfg *config.Config, name string) (*config.Listener, int, error) {
	var found []int
	for i := range cfg.Listeners {
		if name == "" || listenerName(&cfg.Listeners[i]) == name {
			found = append(found, i)
		}
	}
	switch {
	case len(found) == 0 && name != "":
		return nil, 0, fmt.Errorf("%s: no listener named %q", cfg.Path, name)
	case len(found) == 0:
		return nil, 0, fmt.Errorf("%s: no listener", cfg.Path)
	case len(found) > 1:
		return nil, 0, usagef("%d listeners: name one with --listener", len(found))
	}
	return &cfg.Listeners[found[0]], found[0], nil
}

// migrateTargets groups the rules selected by f into tables: PostgreSQL
// names folded as the proxy folds them; MySQL names compared without
// regard to case (the catalog gives the database's spelling), a
// qualified --table naming the database.
func migrateTargets(cfg *config.Config, op migrate.Op, f migrateFlags, d rules.Dialect) ([]migrateTarget, error) {
	fold := foldPG
	if d == rules.DialectMySQL {
		fold = strings.ToLower
	}
	wantSchema, wantTable := "", ""
	if f.table != "" {
		wantTable = fold(f.table)
		if i := strings.LastIndexByte(f.table, '.'); i > 0 && !strings.HasPrefix(f.table, `"`) {
			wantSchema, wantTable = fold(f.table[:i]), fold(f.table[i+1:])
		}
	}
	wantCols := map[string]bool{}
	for _, c := range strings.Split(f.columns, ",") {
		if c = strings.TrimSpace(c); c != "" {
			wantCols[fold(c)] = false
		}
	}
	filterCols := len(wantCols) > 0
	byTable := map[string]*migrateTarget{}
	for _, c := range cfg.Columns() {
		schema, table, column := fold(c.Schema), fold(c.Table), fold(c.Column)
		db := c.Database
		if db == "" {
			db = f.database
		}
		switch {
		case d == rules.DialectMySQL:
			schema = db
		case schema == "":
			schema = "public"
		}
		if (wantTable != "" && table != wantTable) || (wantSchema != "" && fold(schema) != wantSchema) || (f.key != "" && c.Key != f.key) {
			continue
		}
		if _, ok := wantCols[column]; filterCols && !ok {
			continue
		}
		wantCols[column] = true
		if db == "" {
			return nil, fmt.Errorf("%s: the rule of %s.%s names no database: set database: in the rule or pass --database", cfg.Path, table, column)
		}
		mode := rules.ModeRandomized
		if c.Mode == config.ModeDeterministic {
			mode = rules.ModeDeterministic
		}
		k := db + "\x00" + schema + "\x00" + table
		tg := byTable[k]
		if tg == nil {
			tg = &migrateTarget{database: db, table: migrate.Table{Dialect: d, Schema: schema, Name: table}}
			byTable[k] = tg
		}
		tg.table.Columns = append(tg.table.Columns, &rules.ColumnRule{Database: c.Database, Schema: schema, Table: table,
			Column: column, Key: c.Key, Mode: mode, Type: c.Type, Deterministic: mode == rules.ModeDeterministic})
	}
	var missing []string
	for c, seen := range wantCols {
		if !seen {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("%s: no encryption rule for column(s) %s of table %s", cfg.Path, strings.Join(missing, ", "), f.table)
	}
	out := make([]migrateTarget, 0, len(byTable))
	for _, tg := range byTable {
		out = append(out, *tg)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].database+out[i].table.String() < out[j].database+out[j].table.String()
	})
	if len(out) == 0 {
		return nil, errors.New("no encryption rule matches: add the columns to encryption: in the configuration given to migrate (see docs/migrate.md)")
	}
	if len(out) > 1 && op != migrate.OpReencrypt {
		return nil, usagef("--table %s matches tables in %d databases or schemas: qualify it or set --database", f.table, len(out))
	}
	return out, nil
}
