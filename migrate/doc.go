// Package migrate moves the values of existing columns between plaintext
// and dbproxy ciphertext on a live PostgreSQL or MySQL/MariaDB database: `dbproxy migrate
// encrypt` (plaintext column to ciphertext), `migrate decrypt` (back, for
// rollback) and `migrate reencrypt` (ciphertexts under an older data key
// version to the primary one). docs/migrate.md is the procedure and the
// consistency argument.
//
// Encrypt and decrypt add a shadow column of the target form, a trigger
// that sets the shadow to NULL whenever a row is inserted or its source
// column changes (the database has no key, so the trigger cannot convert;
// it only marks the row as pending), backfill the shadow in key order in
// short transactions that lock the rows of their batch (keyset pagination,
// throttled), build a partial index of the rows the trigger marked
// (CREATE INDEX CONCURRENTLY) and run catch-up passes over them, and swap:
// one short transaction under ACCESS EXCLUSIVE that converts the rows
// still pending, drops the trigger and the source column, renames the
// shadow, and (encrypt) adds the schemaguard CHECK constraint NOT VALID, so
// that from that commit on the database rejects plaintext in the column;
// VALIDATE runs after the commit. Reencrypt needs no shadow: each batch
// locks its rows and rewrites the ciphertexts whose header names another
// version than the primary one.
//
// Progress lives in the table dbproxy_migrations of the table's schema
// (last key done, rows done, phase), written in the same transaction as
// each batch, so a run killed at any point resumes where it left off; a
// session advisory lock per table refuses a second run at the same time.
//
// Values are converted with the same code the proxy uses: the column's
// rules.ColumnRule, the canonical encodings of package value (read from
// PostgreSQL's text output with DateStyle ISO and TimeZone UTC) and the
// rules.Encryptor over the key manager. The package knows nothing of the
// configuration file, the CLI or the wire protocols; cmd/dbproxy builds
// its Table from the rules and opens the connection. It must not touch the
// proxy packages.
//
// MySQL (Table.Dialect, files mysql*.go) follows the same design with its
// own SQL: the shadow column is VARBINARY(n) or a BLOB type, two BEFORE
// INSERT/UPDATE triggers mark rows, GET_LOCK is the run lock, the catch-up
// passes scan the table (no partial indexes), each batch is written by one
// UPDATE … CASE, and the swap is one ALTER TABLE under LOCK TABLES … WRITE
// followed by dropping the triggers. DDL commits on its own there, so the
// flow decides a resumed run's step from the recorded phase and the
// catalog (see docs/migrate.md). The batch loop (batch.go) is shared
// through the small dialect interface.
package migrate
