// Package sqlplan holds what both SQL planners share: the vocabulary of a
// plan (what a statement does to encrypted columns, its parameters and why
// it is refused). The dialect planners live below it, in sqlplan/pgsql
// (PostgreSQL, over pg_query_go) and sqlplan/mysqlsql (MySQL and MariaDB,
// over the TiDB parser).
//
// The planners read SQL text and the rules; they never touch the wire, a
// connection or a key. They sit outside proxy/ because they do not depend on
// it.
package sqlplan
