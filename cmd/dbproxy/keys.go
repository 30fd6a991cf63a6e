package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/keystore"
	"github.com/dbproxy/dbproxy/crypto/kms"
)

func cmdKeys(ctx context.Context, sub string, args []string, e env) error {
	fs, path := newFlagSet("keys "+sub, e)
	asJSON := false
	if sub == "list" {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	}
	database := ""
	if sub == "retire" {
		fs.StringVar(&database, "database", "", "database for rules that name none")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	wantArgs := 0
	if sub == "rotate" {
		wantArgs = 1
	}
	if sub == "retire" {
		wantArgs = 2
	}
	switch sub {
	case "init", "list", "rotate", "rewrap", "retire":
	default:
		return usagef("keys: unknown subcommand %q (init, list, rotate, rewrap, retire)", sub)
	}
	if fs.NArg() != wantArgs {
		switch wantArgs {
		case 1:
			return usagef("keys rotate: exactly one KEY argument expected")
		case 2:
			return usagef("keys retire: KEY and VERSION arguments expected")
		}
		return usagef("keys %s takes no arguments", sub)
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	// The commands print what they did on stdout; the key manager's
	// info records would say it a second time on stderr.
	logCfg := cfg.Log
	if strings.EqualFold(logCfg.Level, "info") || logCfg.Level == "" {
		logCfg.Level = "warn"
	}
	logger := newLogger(e.stderr, logCfg)

	if sub == "init" && cfg.Keys.MasterKey.Provider == "local" {
		created, err := kms.CreateLocalKeyFile(cfg.Keys.MasterKey.File)
		if err != nil {
			return fmt.Errorf("create master key file: %w", err)
		}
		if created {
			fmt.Fprintf(e.stdout, "created master key file %s\n", cfg.Keys.MasterKey.File)
		}
	}
	mgr, masterID, closeFn, err := openManager(ctx, cfg, e, logger)
	if err != nil {
		return err
	}
	defer closeFn()
	if sub == "retire" {
		return retireKey(ctx, cfg, mgr, fs.Arg(0), fs.Arg(1), database, e)
	}
	return runKeyCommand(ctx, sub, fs.Arg(0), asJSON, cfg, mgr, masterID, e)
}

// runKeyCommand runs keys sub on mgr (key: the KEY argument of rotate) and
// reports what it did on e.stdout.
func runKeyCommand(ctx context.Context, sub, key string, asJSON bool, cfg *config.Config, mgr *keys.Manager, masterID string, e env) error {
	switch sub {
	case "init":
		created, err := mgr.Init(ctx, keySpecs(cfg))
		for _, name := range created {
			fmt.Fprintf(e.stdout, "created data key %s version 1\n", name)
		}
		if err != nil {
			return err
		}
		if len(created) == 0 {
			fmt.Fprintln(e.stdout, "all data keys present; nothing to do")
		}
		return nil
	case "list":
		infos, err := mgr.List(ctx)
		if err != nil {
			return err
		}
		return printKeyList(e, infos, asJSON)
	case "rotate":
		rec, err := mgr.Rotate(ctx, key)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "data key %s: version %d is now primary (%s)\n", rec.Name, rec.Version, rec.Algorithm)
		return nil
	case "rewrap":
		n, err := mgr.Rewrap(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "re-wrapped %d data key version(s) under %s\n", n, masterID)
		return nil
	}
	return nil
}

// keySpecs lists one spec per distinct data key of the encryption rules.
// config.Load already rejected a key shared by columns of different modes.
func keySpecs(cfg *config.Config) []keys.Spec {
	seen := map[string]bool{}
	var specs []keys.Spec
	for _, c := range cfg.Columns() {
		if seen[c.Key] {
			continue
		}
		seen[c.Key] = true
		alg := crypto.AlgorithmXAESGCM
		if c.Mode == config.ModeDeterministic {
			alg = crypto.AlgorithmAESSIV
		}
		specs = append(specs, keys.Spec{Name: c.Key, Algorithm: alg})
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs
}

// openManager wires the configured master key, keystore and cache into a
// key manager. The returned func releases all of them.
func openManager(ctx context.Context, cfg *config.Config, e env, logger *slog.Logger) (*keys.Manager, string, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	addMaster := func(mk kms.MasterKey) {
		if c, ok := mk.(io.Closer); ok {
			closers = append(closers, func() { c.Close() })
		}
	}
	master, err := openMasterKey(ctx, cfg.Keys.MasterKey)
	if err != nil {
		return nil, "", nil, err
	}
	addMaster(master)
	master = e.ops.observeMaster(master, cfg.Keys.MasterKey.Provider)
	var previous []kms.MasterKey
	for _, f := range cfg.Keys.MasterKey.PreviousFiles {
		old, err := kms.OpenLocalFile(f)
		if err != nil {
			closeAll()
			return nil, "", nil, fmt.Errorf("load previous master key: %w", err)
		}
		addMaster(old)
		previous = append(previous, e.ops.observeMaster(old, config.ProviderLocal))
	}
	store, err := openStore(ctx, cfg.Keys.Store, e)
	if err != nil {
		closeAll()
		return nil, "", nil, err
	}
	closers = append(closers, func() { store.Close() })
	mgr, err := keys.New(keys.Options{
		Store:      store,
		Master:     master,
		Previous:   previous,
		MaxEntries: cfg.Keys.Cache.MaxEntries,
		TTL:        cfg.Keys.Cache.TTL,
		Logger:     logger,
		Observer:   e.ops.cacheObserver(),
	})
	if err != nil {
		closeAll()
		return nil, "", nil, err
	}
	closers = append(closers, mgr.Close)
	return mgr, master.ID(), closeAll, nil
}

// openMasterKey opens the configured master key. A local one is read from
// its file again on every wrap and unwrap (kms.LocalFile), so a removed or
// restored file takes effect at the next unwrap, as a revoked or restored
// KMS key does.
func openMasterKey(ctx context.Context, mk config.MasterKey) (kms.MasterKey, error) {
	switch mk.Provider {
	case "local":
		return kms.OpenLocalFile(mk.File)
	case "aws-kms":
		return kms.NewAWS(ctx, kms.AWSOptions{KeyID: mk.KeyID, Region: mk.Region, Endpoint: mk.Endpoint})
	default:
		return nil, fmt.Errorf("unknown master key provider %q", mk.Provider)
	}
}

func openStore(ctx context.Context, s config.Store, e env) (keystore.Store, error) {
	switch s.Type {
	case "file":
		return keystore.OpenFile(s.Path)
	case "database":
		password := ""
		if s.PasswordEnv != "" {
			password = e.getenv(s.PasswordEnv)
		}
		return keystore.OpenDatabase(ctx, s.DSN, password, s.Table)
	default:
		return nil, fmt.Errorf("unknown keystore type %q", s.Type)
	}
}

func printKeyList(e env, infos []keys.KeyInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVERSION\tPRIMARY\tALGORITHM\tCREATED\tMASTER KEY")
	for _, k := range infos {
		primary := ""
		if k.Primary {
			primary = "*"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", k.Name, k.Version, primary, k.Algorithm,
			k.CreatedAt.UTC().Format(time.RFC3339), k.MasterKeyID)
	}
	return tw.Flush()
}

// checkServeKeyFiles makes serve (and a reload) refuse a configuration
// whose local key files are missing or unreadable, naming the file: the
// keystore file (with either master key provider) and the local master key
// file with the previous ones. keys init creates the first two; the other
// keys commands check nothing here.
func checkServeKeyFiles(k config.Keys) error {
	if k.Store.Type == config.StoreFile {
		if err := readable(k.Store.Path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("keystore file %q does not exist (dbproxy keys init creates it): %w", k.Store.Path, err)
			}
			return fmt.Errorf("keystore file %q: %w", k.Store.Path, err)
		}
	}
	files := k.MasterKey.PreviousFiles
	if k.MasterKey.Provider == config.ProviderLocal {
		files = append([]string{k.MasterKey.File}, files...)
	}
	for _, f := range files {
		if err := readable(f); err != nil {
			if errors.Is(err, fs.ErrNotExist) && f == k.MasterKey.File {
				return fmt.Errorf("master key file %q does not exist (dbproxy keys init creates it): %w", f, err)
			}
			return fmt.Errorf("master key file %q: %w", f, err)
		}
	}
	return nil
}

// readable checks that path is a regular file this process can read.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	var b [1]byte
	if _, err := f.Read(b[:]); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
