// Package keystore keeps the wrapped data keys: one [Record] per (name,
// version), holding only key material encrypted by a master key (package
// kms), never a key in clear.
//
// # Stores
//
//   - [File] is a JSON document on local disk, for a single proxy host.
//   - [Database] is a table in PostgreSQL or MySQL/MariaDB, shared by many
//     proxy instances.
//
// Both implement [Store]. Records are only ever added ([Store.Create]) or
// rewrapped in place ([Store.Replace]); rotation adds a new version, so
// every reader sees the same versions (package keys picks the primary one
// from them).
//
// # Concurrency
//
// Create is atomic across processes and hosts: two `dbproxy keys init`
// racing never create two different keys for one (name, version); the
// loser gets an error wrapping [ErrExists] and should read the winner's
// record. Stores are safe for concurrent use by goroutines.
//
// # Normalization
//
// Every store returns the same data: records sorted by name (byte order)
// then version, CreatedAt in UTC truncated to microseconds (the precision
// of the database column types).
//
// # Boundaries
//
// This package owns where wrapped keys live and how they are serialized.
// It does not wrap or unwrap (package kms), choose versions or cache keys
// (package keys), or read configuration (the CLI passes paths, DSNs and the
// password in). Only the database store touches a database driver.
package keystore
