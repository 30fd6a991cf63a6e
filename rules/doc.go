// Package rules owns the encryption policy that the PostgreSQL and MySQL
// layers share: which columns are encrypted, under which data key, in which
// mode and with which plaintext type; how a SQL identifier is matched
// against the configuration; and the Encryptor that turns a canonical
// plaintext into the ciphertext(s) a statement needs.
//
// # Building a Set
//
// [New] takes a neutral slice of [Spec] (one per encrypted column) rather
// than the config structs, so that the proxy layers, which must not import
// config, can use it, and so that tests can build rules in one line.
// cmd/dbproxy translates the configuration's encrypted columns into Specs
// (mode deterministic or randomized, type parsed by value.ParseType, key
// name defaulted by the loader); the example of New shows a Set built and
// queried.
//
// A Set is immutable and safe for concurrent use; a configuration reload
// builds a new one. [Set.ForDatabase] narrows a Set to the rules that apply
// to one database (rules without a database apply to every database).
//
// # Identifier matching
//
// PostgreSQL ([DialectPostgres]): the SQL parser already folds unquoted
// identifiers to lower case and keeps quoted ones exactly, so lookups
// ([Set.Table], [Set.Column], [TableRule.Column]) compare exactly against
// configured names folded the same way: a configured name is folded to lower
// case (ASCII only, as PostgreSQL's downcase_identifier does for UTF-8) and
// truncated to 63 bytes (NAMEDATALEN-1), unless it is written in double
// quotes in the configuration ('"Users"'), in which case it is kept exactly
// (without the quotes, "" unescaped to "). So config `users` matches SQL
// `users`, `Users`, `USERS` and `"users"`, but not `"Users"`. Because a
// mismatch in case is the classic way to store plaintext by accident (Acra
// #562), [Set.Similar] and [TableRule.SimilarColumn] find rules that match
// only when case is ignored, so that the planner can refuse such statements
// instead of treating them as plaintext. Database names are compared
// exactly.
//
// MySQL ([DialectMySQL]): table, column and database names are compared
// case-insensitively (column names are case-insensitive in MySQL; table
// names may or may not be, depending on lower_case_table_names, so the safe
// choice is to treat them as case-insensitive too). Schema is ignored: in
// MySQL the database qualifies a table.
//
// # The pre-filter
//
// [Set.MayTouch] is the cheap test that lets statements which cannot touch
// an encrypted table skip parsing. It reports false only if no configured
// table name occurs anywhere in the statement text, compared without regard
// to ASCII case (so quoted, unquoted, schema-qualified and upper-case
// spellings all count, and so does a name inside a string literal or a
// comment: a false positive costs a parse, never a leak). A name containing
// a double quote (PostgreSQL) or backtick (MySQL) is also searched with that
// character doubled, as it is written inside a quoted identifier. For
// PostgreSQL it also reports true for any U&"…" identifier (Unicode escapes
// can spell a table name without its letters), and, if some configured name
// is not ASCII, for any statement containing a non-ASCII byte. It does no
// allocation and does not look at word boundaries (PostgreSQL truncates
// long identifiers, so a longer token can still name a configured table).
// [Needles] is the same filter over other names (the PostgreSQL layer
// uses it for relations derived from encrypted tables, which only the
// database catalog knows).
//
// # Encryptor
//
// [Encryptor] wraps a small [Keys] interface (crypto/keys.Manager satisfies
// it). EncryptForStore (AppendStore into a caller's buffer) encrypts under
// the primary key version; EncryptForMatch returns one ciphertext per live
// version, newest first, so that after `keys rotate` a deterministic lookup
// still matches rows written under every live version. AppendMatch is its
// allocation-free variant for callers that reuse buffers (with a Keys that
// has AppendLive, such as crypto/keys.Manager, no key list is allocated per
// call either), and LiveVersions counts the live versions. [Matches]
// records the lookups of one execution (copying them, inline for a short
// single lookup) so that result cells equal to one need no decryption. Decrypt checks
// the ciphertext's algorithm against the column's mode and its type code
// against the column's type, and validates the plaintext's canonical form,
// so it never returns garbage. Errors name columns and keys, never values.
// The planners' rewriters take the Encryptor through the smaller
// sqlplan.Encrypter interface, and [Matches] records the lookups they
// render (sqlplan.MatchRecorder).
//
// # What this package does not do
//
// No SQL parsing (see sqlplan/pgsql and sqlplan/mysqlsql), no wire
// protocol, no I/O of its own, no logging, no global state. It must not
// import config, sqlplan, proxy packages or key providers; it depends on
// crypto (Key, ciphertext header) and value (types, canonical validation)
// only.
package rules
