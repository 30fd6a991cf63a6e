// Package sqlplan holds what both SQL planners share: the vocabulary of a
// plan. The dialect planners live below it, in sqlplan/pgsql (PostgreSQL,
// over pg_query_go) and sqlplan/mysqlsql (MySQL and MariaDB, over the TiDB
// parser); each defines its own Plan, Planner and Catalog, because what a
// plan records and how a statement is rewritten differ per dialect.
//
// Shared here:
//
//   - [Role] and [Param]: what the wire layer does with each bind parameter
//     (forward it, encrypt it for storage, or encrypt it under every live
//     key version for a lookup).
//   - [Literal]: a constant from the SQL text bound for, or compared with,
//     an encrypted column.
//   - [Refusal] and the SQLSTATE codes: the error for a statement the proxy
//     will not forward. Refusals name columns and tables, never values.
//   - [Encrypter] and [MatchRecorder]: what a plan's Rewrite needs from the
//     session to splice ciphertexts into the SQL text, and whom it tells
//     which lookup ciphertexts it rendered. *rules.Encryptor and
//     *rules.Matches satisfy them.
//   - [DefaultCacheSize]: the plan-cache size both planners use when their
//     Options.CacheSize is 0.
//
// # Boundaries
//
// The planners read SQL text and the rules; they never touch the wire, a
// connection or a key, and neither does this package: it depends on rules
// and value only. They sit outside proxy/ because they do not depend on it;
// proxy/postgres/pgcrypt and proxy/mysql/mycrypt use them.
package sqlplan
