package kms

import (
	"context"
	"fmt"
)

// LocalFile is a local master key that lives in its file only: every
// operation reads the file again (through [LoadLocal], with its checks),
// uses the key and zeroes it. Nothing of the key stays in memory between
// calls, and a file that was removed, made unreadable or replaced by
// another key fails the next operation, naming the file; a restored file
// works again at once. The key manager unwraps only on a cache miss, so
// the read is off the hot path.
//
// The id is the one of the key the file held when [OpenLocalFile] read it;
// a file that later holds another key is refused (its wrappings would not
// authenticate anyway), with an error saying so.
type LocalFile struct {
	path string
	id   string
}

var _ MasterKey = (*LocalFile)(nil)

// OpenLocalFile reads the master key file at path once, to check it and
// learn its id, and returns a LocalFile over it.
func OpenLocalFile(path string) (*LocalFile, error) {
	l, err := LoadLocal(path)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return &LocalFile{path: path, id: l.ID()}, nil
}

// ID returns the id of the key the file held when opened.
func (f *LocalFile) ID() string { return f.id }

// String returns the id.
func (f *LocalFile) String() string { return f.id }

// Path returns the master key file.
func (f *LocalFile) Path() string { return f.path }

// load reads the file and checks it still holds the key f stands for. The
// caller closes the returned key.
func (f *LocalFile) load() (*Local, error) {
	l, err := LoadLocal(f.path)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", f.id, err)
	}
	if l.ID() != f.id {
		id := l.ID()
		l.Close()
		return nil, fmt.Errorf("master key file %q now holds master key %s, not %s (restart after replacing a master key file): %w",
			f.path, id, f.id, ErrDenied)
	}
	return l, nil
}

// GenerateDataKey implements [MasterKey] with the key the file holds now.
func (f *LocalFile) GenerateDataKey(ctx context.Context, ref KeyRef, size int) (plaintext, wrapped []byte, err error) {
	err = f.withKey("generate", ref, func(l *Local) (err error) {
		plaintext, wrapped, err = l.GenerateDataKey(ctx, ref, size)
		return err
	})
	return plaintext, wrapped, err
}

// Unwrap implements [MasterKey] with the key the file holds now.
func (f *LocalFile) Unwrap(ctx context.Context, ref KeyRef, wrapped []byte) (plaintext []byte, err error) {
	err = f.withKey("unwrap", ref, func(l *Local) (err error) {
		plaintext, err = l.Unwrap(ctx, ref, wrapped)
		return err
	})
	return plaintext, err
}

// Wrap implements [MasterKey] with the key the file holds now.
func (f *LocalFile) Wrap(ctx context.Context, ref KeyRef, plaintext []byte) (wrapped []byte, err error) {
	err = f.withKey("wrap", ref, func(l *Local) (err error) {
		wrapped, err = l.Wrap(ctx, ref, plaintext)
		return err
	})
	return wrapped, err
}

// withKey runs use with the key the file holds now, closed after; op and
// ref name the operation in the error of a file that cannot be loaded.
func (f *LocalFile) withKey(op string, ref KeyRef, use func(l *Local) error) error {
	l, err := f.load()
	if err != nil {
		return fmt.Errorf("%s data key %s: %w", op, ref, err)
	}
	defer l.Close()
	return use(l)
}
