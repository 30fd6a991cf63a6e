package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Initialising a data directory (initdb, mariadb-install-db) costs seconds
// on a loaded machine; copying one costs a fraction of that. So each kind of
// data directory is initialised once per machine into
// <root>/dbproxy-testenv/tmpl-<kind>-<hash of binary identity and flags>
// and copied for every server.

// binaryIdentity describes an executable well enough to notice an upgrade.
func binaryIdentity(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return path
	}
	return fmt.Sprintf("%s size=%d mtime=%d", path, st.Size(), st.ModTime().UnixNano())
}

// cachedTemplate returns the template directory for kind and identity,
// calling build(dir) to create it on first use. build receives an empty
// 0755 directory; the template is published by an atomic rename, under a
// file lock so that parallel test binaries build it once.
func cachedTemplate(kind string, identity []string, build func(dir string) error) (string, error) {
	sum := sha256.Sum256([]byte(strings.Join(identity, "\x00")))
	base := filepath.Join(tmpRoot(), tmpBase)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", base, err)
	}
	_ = os.Chmod(base, 0o755)
	final := filepath.Join(base, "tmpl-"+kind+"-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	unlock, err := lockFile(final+".lock", "template")
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(final); err == nil { // built while we waited
		return final, nil
	}
	tmp, err := os.MkdirTemp(base, "tmpl-build-")
	if err != nil {
		return "", fmt.Errorf("create template build dir: %w", err)
	}
	defer os.RemoveAll(tmp) // no-op after a successful rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := build(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("publish %s template: %w", kind, err)
	}
	return final, nil
}

// copyTree copies the regular files, directories and symlinks under src to
// dst, keeping permission bits, and gives them to owner (nil: ourselves).
func copyTree(src, dst string, owner *syscall.Credential) error {
	chown := func(path string) error {
		if owner == nil {
			return nil
		}
		return os.Lchown(path, int(owner.Uid), int(owner.Gid))
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil && !os.IsExist(err) {
				return err
			}
			if err := os.Chmod(target, info.Mode().Perm()); err != nil {
				return err
			}
			return chown(target)
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm(), owner)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
			return chown(target)
		default:
			return nil // sockets, pid files' fifos: not part of a template
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode, owner *syscall.Credential) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if owner != nil {
		if err := out.Chown(int(owner.Uid), int(owner.Gid)); err != nil {
			out.Close()
			return err
		}
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm) // the umask applied at creation
}

// lockFile takes an exclusive lock on the file path (created if need be),
// shared with other processes; what names the lock in errors. unlock
// releases it.
func lockFile(path, what string) (unlock func(), err error) {
	lock, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s lock: %w", what, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("take %s lock: %w", what, err)
	}
	return func() {
		_ = unix.Flock(int(lock.Fd()), unix.LOCK_UN)
		_ = lock.Close()
	}, nil
}
