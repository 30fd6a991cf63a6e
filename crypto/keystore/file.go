package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
)

// fileFormat is the "format" number of the JSON document this code writes.
const fileFormat = 1

// File is a keystore in one JSON file:
//
//	{
//	  "format": 1,
//	  "keys": [
//	    {"name": "public.users.email", "version": 1, "algorithm": "AES-256-SIV",
//	     "created_at": "2025-01-02T03:04:05.123456Z",
//	     "master_key_id": "local:47987588c038f615", "wrapped": "<base64>"}
//	  ]
//	}
//
// Keys are sorted by name then version. The file is replaced atomically
// (temporary file in the same directory, fsync, rename, fsync of the
// directory) with mode 0600, and only when its content changes, so a no-op
// `keys init` leaves the file untouched.
//
// Writers in any process serialize on flock(2) of the sibling file
// path+".lock" (created on first write, never removed) and re-read the
// document under the lock before changing it. Readers take no lock: a
// rename replaces the whole file, so they see the old or the new version.
type File struct {
	path     string
	lockPath string
	sem      chan struct{} // one writer at a time within this process
	closed   atomic.Bool
}

var _ Store = (*File)(nil)

type fileDoc struct {
	Format int      `json:"format"`
	Keys   []Record `json:"keys"`
}

// OpenFile opens the file store at path. A missing file is an empty store,
// created on the first Create; its directory must exist. An existing file
// must parse, and must not be writable by others (anyone could swap keys).
func OpenFile(path string) (*File, error) {
	if path == "" {
		return nil, errors.New("open keystore file: path is empty")
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open keystore file %q: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("open keystore file %q: %q is not a directory", path, dir)
	}
	f := &File{path: path, lockPath: path + ".lock", sem: make(chan struct{}, 1)}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("open keystore file %q: %w", path, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("open keystore file %q: not a regular file", path)
	case fi.Mode().Perm()&0o002 != 0:
		return nil, fmt.Errorf("open keystore file %q: permissions %#o let anyone replace keys; chmod 600", path, fi.Mode().Perm())
	}
	if _, _, err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path returns the file the store lives in.
func (f *File) Path() string { return f.path }

// List returns all records, sorted by name then version.
func (f *File) List(ctx context.Context) ([]Record, error) {
	if f.closed.Load() {
		return nil, ErrClosed
	}
	recs, _, err := f.load()
	if err != nil {
		return nil, err
	}
	if recs == nil {
		recs = []Record{}
	}
	return recs, nil
}

// Get returns all versions of the key name, ascending.
func (f *File) Get(ctx context.Context, name string) ([]Record, error) {
	if f.closed.Load() {
		return nil, ErrClosed
	}
	recs, _, err := f.load()
	if err != nil {
		return nil, err
	}
	return filterName(recs, name), nil
}

// Create adds r unless (r.Name, r.Version) exists.
func (f *File) Create(ctx context.Context, r Record) error {
	r, err := checkRecord(r)
	if err != nil {
		return fmt.Errorf("keystore %q: create: %w", f.path, err)
	}
	return f.update(ctx, func(recs []Record) ([]Record, error) {
		i, found := slices.BinarySearchFunc(recs, r, compareRecords)
		if found {
			return nil, fmt.Errorf("keystore %q: create data key %q v%d: %w", f.path, r.Name, r.Version, ErrExists)
		}
		return slices.Insert(recs, i, r), nil
	})
}

// Replace swaps the wrapped bytes and master key id of (name, version).
func (f *File) Replace(ctx context.Context, name string, version uint32, masterKeyID string, wrapped []byte) error {
	if err := checkWrap(masterKeyID, wrapped); err != nil {
		return fmt.Errorf("keystore %q: replace data key %q v%d: %w", f.path, name, version, err)
	}
	return f.update(ctx, func(recs []Record) ([]Record, error) {
		i, found := slices.BinarySearchFunc(recs, Record{Name: name, Version: version}, compareRecords)
		if !found {
			return nil, fmt.Errorf("keystore %q: replace data key %q v%d: %w", f.path, name, version, ErrNotFound)
		}
		recs[i].MasterKeyID = masterKeyID
		recs[i].Wrapped = bytes.Clone(wrapped)
		return recs, nil
	})
}

// Close marks the store closed. It holds no open files between calls.
func (f *File) Close() error {
	f.closed.Store(true)
	return nil
}

// update runs change on the current records under the cross-process lock
// and writes the result if it differs from what is on disk.
func (f *File) update(ctx context.Context, change func([]Record) ([]Record, error)) error {
	if f.closed.Load() {
		return ErrClosed
	}
	unlock, err := f.lock(ctx)
	if err != nil {
		return fmt.Errorf("keystore %q: %w", f.path, err)
	}
	defer unlock()

	recs, old, err := f.load()
	if err != nil {
		return err
	}
	recs, err = change(recs)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []Record{}
	}
	data, err := json.MarshalIndent(fileDoc{Format: fileFormat, Keys: recs}, "", "  ")
	if err != nil {
		return fmt.Errorf("keystore %q: encode: %w", f.path, err)
	}
	data = append(data, '\n')
	if old != nil && bytes.Equal(data, old) {
		return nil
	}
	if err := writeFileAtomic(f.path, data); err != nil {
		return fmt.Errorf("keystore %q: %w", f.path, err)
	}
	return nil
}

// load reads and validates the document. A missing file is an empty store
// (nil raw bytes).
func (f *File) load() (recs []Record, raw []byte, err error) {
	raw, err = os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("keystore %q: %w", f.path, err)
	}
	var doc fileDoc
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("keystore %q: parse: %w", f.path, err)
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("keystore %q: parse: data after the JSON document", f.path)
	}
	if doc.Format != fileFormat {
		return nil, nil, fmt.Errorf("keystore %q: format %d, this version reads format %d", f.path, doc.Format, fileFormat)
	}
	recs = make([]Record, 0, len(doc.Keys))
	for _, r := range doc.Keys {
		r, err := checkRecord(r)
		if err != nil {
			return nil, nil, fmt.Errorf("keystore %q: %w", f.path, err)
		}
		recs = append(recs, r)
	}
	sortRecords(recs)
	for i := 1; i < len(recs); i++ {
		if compareRecords(recs[i-1], recs[i]) == 0 {
			return nil, nil, fmt.Errorf("keystore %q: data key %q v%d appears twice", f.path, recs[i].Name, recs[i].Version)
		}
	}
	return recs, raw, nil
}

// lock takes the in-process semaphore, then an exclusive flock on the lock
// file, polling so that ctx can cancel the wait.
func (f *File) lock(ctx context.Context) (unlock func(), err error) {
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for lock: %w", ctx.Err())
	}
	release := func() { <-f.sem }

	lf, err := os.OpenFile(f.lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		release()
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	fd := int(lf.Fd())
	wait := time.Millisecond
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			lf.Close()
			release()
			return nil, fmt.Errorf("lock %q: %w", f.lockPath, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			lf.Close()
			release()
			return nil, fmt.Errorf("wait for lock %q: %w", f.lockPath, ctx.Err())
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
	return func() {
		syscall.Flock(fd, syscall.LOCK_UN)
		lf.Close()
		release()
	}, nil
}

// writeFileAtomic replaces path with data: temporary file in the same
// directory (mode 0600), fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}
