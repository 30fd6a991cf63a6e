// Package access owns the per-user access policy of encrypted columns: it
// compiles the rules of the access: section into a fieldcrypt.Policy that
// binds each session's proxy.Principal (user, database, client address,
// TLS client certificate subject) to a fieldcrypt.Decision per encrypted
// column: decrypt, mask, ciphertext, null, deny or write_only.
//
// Rules are tried in order and the first whose match fits the session and
// whose columns name the column decides; no rule: the default. Within a
// match, the fields (users, databases, sources, tls_subjects) must all fit
// (an omitted field fits every session); within a field, any value fits.
// A column pattern is `[schema.]table.column` or `column` (names compared
// case-insensitively, each part a path.Match glob such as `*`), or
// `key:NAME` (the column's data key name, a glob). On MySQL the schema
// part is the database of the column's encryption: entry.
//
// Decisions are resolved once per session and column and then cached by
// the session's Decider: the hot path is a read-locked map lookup that
// allocates nothing.
//
// # Boundaries
//
// This package decides; it does not enforce. The Cipher (fieldcrypt)
// refuses the key uses a Decision does not allow, and the protocol layers
// present masked, NULL or ciphertext cells. It must not import config,
// the protocol layers or key management.
package access
