package testenv

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// errNotInstalled marks failures caused by missing server binaries; the
// test failure then carries the install hint.
var errNotInstalled = errors.New("server binaries not found")

// pgBinDir finds the directory holding initdb and postgres: the override,
// else the highest /usr/lib/postgresql/<version>/bin, else pg_config.
func pgBinDir() (string, error) {
	ok := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv(EnvPostgresBinDir); d != "" {
		if ok(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w: no initdb and postgres in %s=%s", errNotInstalled, EnvPostgresBinDir, d)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(version(b), version(a)) }) // highest first
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); ok(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: no initdb and postgres in /usr/lib/postgresql/*/bin or pg_config --bindir", errNotInstalled)
}

// lookBin finds the first of names on PATH or in the sbin and bin
// directories, which PATH often lacks for daemons.
func lookBin(names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
			p := filepath.Join(d, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: none of %s on PATH or in /usr/sbin, /usr/bin", errNotInstalled, strings.Join(names, ", "))
}
