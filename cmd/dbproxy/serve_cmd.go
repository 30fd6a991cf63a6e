package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"syscall"

	"github.com/dbproxy/dbproxy/config"
)

// relayLoopsEnv sets the number of event loops that relay pass-through
// sessions (proxy.Server.RelayLoops): unset or 0, one per two Ps; -1, none.
const relayLoopsEnv = "DBPROXY_RELAY_LOOPS"

// relayLoops parses the value of relayLoopsEnv.
func relayLoops(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < -1 || n > 1024 {
		return 0, fmt.Errorf("%s=%q: want -1 (no event loops), 0 (the default: one per two CPUs) or a number of loops up to 1024", relayLoopsEnv, v)
	}
	return n, nil
}

// cpuProfileEnv names a file that serve writes a CPU profile of its
// whole run to (pprof format, written at exit), for performance reports:
// the admin listener deliberately serves no /debug/pprof.
const cpuProfileEnv = "DBPROXY_CPUPROFILE"

// startCPUProfile starts the profile cpuProfileEnv asks for, if any; the
// returned function stops it and closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("%s: %w", cpuProfileEnv, err)
		}
		return nil
	}, nil
}

// defaultGCPercent is the garbage collector's target for serve unless the
// GOGC environment variable says otherwise. Every query allocates a little,
// so Go's default of 100 collects often; but the heap between collections
// grows with the target, and it is resident memory: streaming 500k
// encrypted rows grew the RSS by 16 MB at 100, 34 MB at 200 and 71 MB at
// 400, and four such reads after 20 rule-changing reloads by 30, 61 and
// 154 MB (integration/memory_rss_test.go). 200 keeps most of the CPU saved
// by 400 (pgcrypt's BenchmarkSimpleSelect and BenchmarkPreparedSelect) at
// half its headroom. GOMEMLIMIT caps the heap further where memory is tight.
const defaultGCPercent = 200

func cmdServe(ctx context.Context, args []string, e env) (err error) {
	fs, path := newFlagSet("serve", e)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	logger := newLogger(e.stderr, cfg.Log)
	defer func() { err = logFailure(logger, cfg.Log, err) }()
	if e.ops, err = startOperations(cfg, logger); err != nil {
		return err
	}
	defer e.ops.stop()
	if e.getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	stopProfile, err := startCPUProfile(e.getenv(cpuProfileEnv))
	if err != nil {
		return err
	}
	defer func() {
		if perr := stopProfile(); perr != nil && err == nil {
			err = perr
		}
	}()
	if e.audit, err = openAuditing(ctx, cfg, e, logger); err != nil {
		return err
	}
	defer e.audit.close(logger)
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
	loops, err := relayLoops(e.getenv(relayLoopsEnv))
	if err != nil {
		return err
	}
	rl := &reloader{signals: reloads, ops: e.ops, audit: e.audit, loops: loops, load: func(ctx context.Context) (*config.Config, *encryption, error) {
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
