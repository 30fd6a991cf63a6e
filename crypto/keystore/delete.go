package keystore

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Deleter is a Store that can remove one version of a data key (`keys
// retire`). File and Database implement it.
type Deleter interface {
	// Delete removes (name, version); a missing record is an error
	// wrapping ErrNotFound. It is atomic across processes.
	Delete(ctx context.Context, name string, version uint32) error
}

var (
	_ Deleter = (*File)(nil)
	_ Deleter = (*Database)(nil)
)

// Delete removes (name, version) from the file.
func (f *File) Delete(ctx context.Context, name string, version uint32) error {
	return f.update(ctx, func(recs []Record) ([]Record, error) {
		i, found := slices.BinarySearchFunc(recs, Record{Name: name, Version: version}, compareRecords)
		if !found {
			return nil, fmt.Errorf("keystore %q: delete data key %q v%d: %w", f.path, name, version, ErrNotFound)
		}
		return slices.Delete(recs, i, i+1), nil
	})
}

// Delete removes (name, version) from the table.
func (d *Database) Delete(ctx context.Context, name string, version uint32) error {
	var n int64
	var err error
	switch b := d.b.(type) {
	case *pgBackend:
		err = b.with(ctx, func(c *pgx.Conn) error {
			tag, err := c.Exec(ctx, `DELETE FROM `+b.table+` WHERE name = $1 AND version = $2`, name, int64(version))
			n = tag.RowsAffected()
			return err
		})
	case *myBackend:
		res, e := b.db.ExecContext(ctx, `DELETE FROM `+b.table+` WHERE name = ? AND version = ?`, name, int64(version))
		if err = e; err == nil {
			n, err = res.RowsAffected()
		}
	default:
		return d.errorf("delete data key %q v%d: unsupported backend", name, version)
	}
	if err != nil {
		return d.errorf("delete data key %q v%d: %w", name, version, err)
	}
	if n == 0 {
		return d.errorf("delete data key %q v%d: %w", name, version, ErrNotFound)
	}
	return nil
}
