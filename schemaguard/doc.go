// Package schemaguard builds and installs the database-side guard of
// encrypted columns: one CHECK constraint per column that accepts only NULL
// or a well-formed ciphertext of that column (docs/ciphertext.md): byte 0
// the format version 0x01, byte 1 the column's algorithm (deterministic:
// 0x02 AES-256-SIV; randomized: 0x01 AES-256-GCM or 0x03 XAES-256-GCM),
// byte 6 the column's plaintext type code, and at least the algorithm's
// overhead in length (23, 35 or 47 bytes). It cannot tell a ciphertext
// from random bytes that happen to look like one, and it does not
// authenticate anything; what it stops is plaintext: whatever bypasses the
// proxy (a trigger, a DO block or stored procedure, a renamed column, a
// child table or partition, a direct connection) cannot store a value that
// is not shaped like this column's ciphertext.
//
// Constraint names are deterministic ([ConstraintName]); [Expression] is
// the CHECK expression per dialect: get_byte/octet_length on bytea for
// PostgreSQL (inside a CASE, since get_byte fails past the end), ASCII(
// SUBSTRING())/LENGTH on VARBINARY and BLOB for MySQL 8.0.16+ and MariaDB
// 10.2+ (which enforce CHECK).
//
// [Check] reads the catalog and reports, per column, a missing table or
// column, a type that cannot hold ciphertext, and a missing, different,
// NOT VALID, NO INHERIT (PostgreSQL) or NOT ENFORCED (MySQL 8) guard.
// [Apply] installs guards idempotently: absent ones are added
// (PostgreSQL: ADD … NOT VALID, then VALIDATE, so rows already stored are
// checked without blocking writes), one of the guard's name with another
// definition (or NO INHERIT, or NOT ENFORCED) is replaced in one ALTER
// TABLE, a NOT VALID one is validated again, and a correct one is left
// alone. Rows
// that are not ciphertext make the VALIDATE (PostgreSQL; the guard then
// stays NOT VALID and still rejects new plaintext) or the ADD (MySQL)
// fail, and that column's outcome says so. Each column is handled on its
// own: one failure does not stop the others.
//
// Definitions read back from the catalog are compared with the expected
// one after removing case, spacing, quoting and parentheses (the servers
// print expressions back in their own normal form).
//
// The package works over a *sql.DB the caller opens (the proxy's catalog
// credentials); it holds no state and logs nothing. Someone with DDL
// rights on the table can drop the guard: it protects against mistakes and
// against code paths that bypass the proxy, not against the table's owner.
package schemaguard
