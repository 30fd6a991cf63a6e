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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dbproxy/dbproxy/audit"
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

	if sub == "init" {
		if err := initMasterKey(ctx, cfg.Keys.MasterKey, e); err != nil {
			return err
		}
	}
	ka := keysAudit(cfg, sub)
	e.audit = ka.auditing
	mgr, masterID, closeFn, err := openManager(ctx, cfg, e, logger)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := ka.before(ctx, sub, mgr); err != nil {
		return err
	}
	if sub == "retire" {
		err = retireKey(ctx, cfg, mgr, fs.Arg(0), fs.Arg(1), database, e)
		v, _ := strconv.ParseUint(fs.Arg(1), 10, 32)
		e.audit.emit(audit.KeyAdmin(sub, fs.Arg(0), uint32(v), err))
	} else {
		err = runKeyCommand(ctx, sub, fs.Arg(0), asJSON, cfg, mgr, masterID, e)
	}
	return ka.after(ctx, mgr, err)
}

// runKeyCommand runs keys sub on mgr (key: the KEY argument of rotate) and
// reports what it did on e.stdout.
func runKeyCommand(ctx context.Context, sub, key string, asJSON bool, cfg *config.Config, mgr *keys.Manager, masterID string, e env) error {
	switch sub {
	case "init":
		created, err := mgr.Init(ctx, keySpecs(cfg))
		for _, name := range created {
			fmt.Fprintf(e.stdout, "created data key %s version 1\n", name)
			e.audit.emit(audit.KeyAdmin(sub, name, 1, nil))
		}
		if err != nil {
			e.audit.emit(audit.KeyAdmin(sub, "", 0, err))
			return err
		}
		if len(created) == 0 {
			e.audit.emit(audit.KeyAdmin(sub, "", 0, nil))
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
		e.audit.emit(audit.KeyAdmin(sub, key, rec.Version, err))
		if err != nil {
			return err
		}
		printRotated(e, rec, mgr.Activation())
		return nil
	case "rewrap":
		n, err := mgr.Rewrap(ctx)
		ev := audit.KeyAdmin(sub, "", 0, err)
		ev.Count = uint64(n)
		e.audit.emit(ev)
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
	if cfg.Audit != nil {
		specs = append(specs, keys.Spec{Name: audit.KeyName, Algorithm: crypto.AlgorithmAESSIV})
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
	master, err := openMasterKey(ctx, cfg.Keys.MasterKey, "keys.master_key", e.getenv)
	if err != nil {
		return nil, "", nil, err
	}
	addMaster(master)
	master = e.ops.observeMaster(master, cfg.Keys.MasterKey.Provider)
	var previous []kms.MasterKey
	for _, p := range previousMasterKeys(cfg.Keys.MasterKey) {
		mk := p.MasterKey
		old, err := openMasterKey(ctx, mk, p.setting, e.getenv)
		if err != nil {
			closeAll()
			return nil, "", nil, fmt.Errorf("previous master key: %w", err)
		}
		addMaster(old)
		previous = append(previous, e.ops.observeMaster(old, mk.Provider))
	}
	store, err := openStore(ctx, cfg.Keys.Store, e, logger)
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
		Poll:       cfg.Keys.Store.Poll,
		Activation: keys.ActivationDelay(cfg.Keys.Store.Poll),
		Unwrapped:  e.audit.unwrapObserver(),
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
// KMS key does. A pkcs11 one logs in to its token with the PIN from
// pin_env or pin_file; its errors start with setting, the path of mk in
// the configuration.
func openMasterKey(ctx context.Context, mk config.MasterKey, setting string, getenv func(string) string) (kms.MasterKey, error) {
	switch mk.Provider {
	case config.ProviderLocal:
		return kms.OpenLocalFile(mk.File)
	case config.ProviderAWSKMS:
		return kms.NewAWS(ctx, kms.AWSOptions{KeyID: mk.KeyID, Region: mk.Region, Endpoint: mk.Endpoint})
	case config.ProviderPKCS11:
		opts, err := pkcs11Options(mk, setting, getenv)
		if err != nil {
			return nil, err
		}
		k, err := kms.OpenPKCS11(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", setting, err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("unknown master key provider %q", mk.Provider)
	}
}

// settingKey is a master key and its path in the configuration.
type settingKey struct {
	config.MasterKey
	setting string
}

// previousMasterKeys lists the older master keys of mk: previous_files
// (local), then previous.
func previousMasterKeys(mk config.MasterKey) []settingKey {
	var out []settingKey
	for i, f := range mk.PreviousFiles {
		out = append(out, settingKey{config.MasterKey{Provider: config.ProviderLocal, File: f}, fmt.Sprintf("keys.master_key.previous_files[%d]", i)})
	}
	for i, p := range mk.Previous {
		out = append(out, settingKey{p, fmt.Sprintf("keys.master_key.previous[%d]", i)})
	}
	return out
}

// pkcs11Options are the options of the pkcs11 master key mk, found at
// setting in the configuration, with its PIN read.
func pkcs11Options(mk config.MasterKey, setting string, getenv func(string) string) (kms.PKCS11Options, error) {
	pin, err := mk.PIN(getenv)
	if err != nil {
		field := ".pin_env"
		if mk.PINEnv == "" {
			field = ".pin_file"
		}
		return kms.PKCS11Options{}, fmt.Errorf("%s%s: %w", setting, field, err)
	}
	return kms.PKCS11Options{Module: mk.Module, TokenLabel: mk.TokenLabel, KeyLabel: mk.KeyLabel, PIN: pin}, nil
}

// initMasterKey creates the current master key when its provider can and
// it is missing: the local key file, or the pkcs11 token key.
func initMasterKey(ctx context.Context, mk config.MasterKey, e env) error {
	switch mk.Provider {
	case config.ProviderLocal:
		created, err := kms.CreateLocalKeyFile(mk.File)
		if err != nil {
			return fmt.Errorf("create master key file: %w", err)
		}
		if created {
			fmt.Fprintf(e.stdout, "created master key file %s\n", mk.File)
		}
	case config.ProviderPKCS11:
		opts, err := pkcs11Options(mk, "keys.master_key", e.getenv)
		if err != nil {
			return err
		}
		created, err := kms.CreatePKCS11Key(ctx, opts)
		if err != nil {
			return fmt.Errorf("keys.master_key: create master key: %w", err)
		}
		if created {
			fmt.Fprintf(e.stdout, "created master key %s (AES-256, sensitive, not extractable)\n", kms.PKCS11KeyID(mk.TokenLabel, mk.KeyLabel))
		}
	}
	return nil
}

func openStore(ctx context.Context, s config.Store, e env, log *slog.Logger) (keystore.Store, error) {
	switch s.Type {
	case "file":
		return keystore.OpenFile(s.Path)
	case "database":
		password := ""
		if s.PasswordEnv != "" {
			password = e.getenv(s.PasswordEnv)
		}
		return keystore.OpenDatabase(ctx, s.DSN, password, s.Table, log.With(slog.String("component", "keystore")))
	default:
		return nil, fmt.Errorf("unknown keystore type %q", s.Type)
	}
}

// printRotated says which version keys rotate added and when it becomes
// the primary one: at once without keystore poll, else after the
// activation delay, so that every replica reads it before any writes with
// it.
func printRotated(e env, rec keystore.Record, activation time.Duration) {
	if activation == 0 {
		fmt.Fprintf(e.stdout, "data key %s: version %d is now primary (%s)\n", rec.Name, rec.Version, rec.Algorithm)
		return
	}
	fmt.Fprintf(e.stdout, "data key %s: version %d added (%s); it becomes primary at %s, in %s (twice keys.store.poll, so that every replica reads it first)\n",
		rec.Name, rec.Version, rec.Algorithm, rec.CreatedAt.Add(activation).UTC().Format(time.RFC3339), activation)
	fmt.Fprintf(e.stdout, "until then new values use the current primary version; reads and lookups match version %d as soon as each replica has read it\n", rec.Version)
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
		switch {
		case k.Primary:
			primary = "*"
		case k.Pending:
			primary = "pending until " + k.PrimaryAt.UTC().Format(time.RFC3339)
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
	var files []string
	if k.MasterKey.Provider == config.ProviderLocal {
		files = append(files, k.MasterKey.File)
	}
	for _, p := range previousMasterKeys(k.MasterKey) {
		if p.Provider == config.ProviderLocal {
			files = append(files, p.File)
		}
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
