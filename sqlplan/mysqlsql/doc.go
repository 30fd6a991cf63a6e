// Package mysqlsql plans how the MySQL encryption layer (proxy/mysql/mycrypt)
// handles one SQL string: pass it through byte for byte, rewrite it so that
// every value bound for an encrypted column is a ciphertext, or refuse it.
// It is the MySQL counterpart of sqlplan/pgsql and follows the same
// rule: anything that touches an encrypted column in a way the planner does
// not understand is refused, never forwarded.
//
// # Parser
//
// SQL is parsed with TiDB's parser (github.com/pingcap/tidb/pkg/parser), at
// the pseudo-version go-mysql already requires, so it adds no new module: it
// is a maintained, complete MySQL grammar (backquoted and database-qualified
// identifiers, multi-row INSERT, ON DUPLICATE KEY UPDATE, multi-table
// UPDATE/DELETE, `?` placeholders, LOAD DATA), and parses a short statement
// in a few microseconds. Its nodes only carry a start offset
// (OriginTextPosition), not an end offset, so literals cannot be spliced in
// place: a statement that needs rewriting is regenerated with the parser's
// restore API (format.RestoreCtx) after each literal or placeholder bound
// for (or compared with) an encrypted column has been replaced by a marker
// identifier; the restored text is cut at the markers once and cached, and
// the wire layer fills in X'…' hex ciphertexts (or `?` placeholders) per
// execution. Statements that need no edit are forwarded as the client sent
// them, and strings in which [rules.Set.MayTouch] finds no configured table
// name are not parsed at all.
//
// The test_driver package supplies the parser's literal values (the TiDB
// server's own types package would pull in the whole server).
//
// # What is supported
//
//   - INSERT and REPLACE (multi-row VALUES, INSERT … SET), with a column
//     list or, without one, the column order from a [Catalog], written
//     into the statement (cached until [Planner.Purge], asked again when a
//     row's width does not match; refused if the Catalog is nil or fails); ON
//     DUPLICATE KEY UPDATE col = VALUES(col) (same key, mode and type) or a
//     literal/placeholder.
//   - UPDATE and DELETE, single- and multi-table; SET col = literal,
//     placeholder, NULL or another encrypted column with the same key.
//   - WHERE/ON/HAVING: col = x, col <> x, col <=> x, col [NOT] IN (x, …),
//     col IS [NOT] NULL, on deterministic columns (IS NULL on any). x is a
//     literal or `?`. Each becomes col [NOT] IN (ct_v2, ct_v1, …): one
//     ciphertext per live key version, so lookups keep working after a key
//     rotation. A `?` becomes MatchSlots placeholders ([MatchSlots]).
//   - SELECT lists naming encrypted columns (plain references, aliases, *):
//     results are decrypted from the column definitions' org_table/org_name.
//   - USE db, tracked across the statements of one string ([Plan.Use]).
//
// # What is refused
//
// LIKE, <, >, <=, >=, BETWEEN, ORDER BY / GROUP BY an encrypted column (by name, alias or position;
// a position after * or given as a placeholder too),
// functions, casts, arithmetic and CASE around one, equality on a
// randomized column, comparisons of encrypted columns with different keys,
// IN (subquery) on one, INSERT … SELECT or DEFAULT into one, references the
// planner cannot resolve (derived-table aliases naming an encrypted column
// name, unqualified names when the current database is unknown), LOAD DATA
// into an encrypted table, and any string that may touch an encrypted
// table but does not parse.
//
// # Reading text as the server does
//
// [Planner.PlanLex] plans a string under the session's [Lex]: the server
// flavour and version (executable comments), the lexing sql_mode bits and
// the client character set class. Before parsing, the text is normalised
// (lexstate.go) the way the server's lexer reads it: comments the server
// skips become spaces — /*!NNNNN … */ and /*M!NNNNNN … */ for a newer
// version, MySQL 5.7+ versions in /*! form on MariaDB, /*M! on MySQL,
// TiDB's /*T!, a skipped versioned comment with one nested comment, a plain
// comment up to its first */ — and the markers of comments it runs become
// spaces while their bodies stay, so the TiDB parser (which reads every /*!
// body) sees exactly the statement the server runs. What the normaliser
// cannot establish is refused on encrypted tables: an executable comment
// inside a running one, a ; inside one, a versioned comment when the server
// version is unknown (or six digits on MySQL), a quote inside an optimizer
// hint, a non-ASCII byte after --, a NUL, a non-ASCII byte outside strings
// in a single-byte client character set. The parser runs with the
// session's ANSI_QUOTES, NO_BACKSLASH_ESCAPES, PIPES_AS_CONCAT,
// IGNORE_SPACE and HIGH_NOT_PRECEDENCE; rewrites keep backslashes
// unescaped under NO_BACKSLASH_ESCAPES. With Lex.ModeAssumed (the server's
// sql_mode was not read) a string on an encrypted table must parse to the
// same plan with NO_BACKSLASH_ESCAPES and ANSI_QUOTES, or is refused. With
// Lex.Unreadable (unknown or unsupported sql_mode, unsafe character set)
// every string that may touch an encrypted table is refused with that
// reason. Plans are cached per (database, text, Lex), and per normalized
// text as templates (template.go): statements that differ only in their
// constants share one plan, so literals do not cost a parse each.
//
// [AnalyzeTimeZone] (timezone.go) reports, the same way, what a string
// does to the session time_zone: literal SETs in every form the server
// reads (SESSION, LOCAL, @@session., executable comments, several
// assignments and statements), copies into user variables (no change),
// GLOBAL, and whatever it cannot follow (values from expressions or
// variables, CALL, EXECUTE IMMEDIATE, compound statements, PREPARE that
// may change it) as unknown; Mixed marks statements that run after a
// change in the same string.
//
// [AnalyzeSession] (session.go) reports what a string does to the
// session's sql_mode and character_set_client, statement by statement (the
// rest of a string is lexed under a mode set earlier in it): literal SET
// sql_mode / SET NAMES / SET CHARACTER SET / SET character_set_client,
// DEFAULT, SET STATEMENT … FOR (the variables apply to that statement
// only), and everything it cannot follow (expressions, variables, EXECUTE
// IMMEDIATE, compound statements, PREPARE from a variable or of text that
// may change them) as unknown. It is in Plan.Session. A change followed by
// a statement on an encrypted table in the same string is refused.
//
// # Statements that hide what they do to an encrypted table
//
// Besides strings naming an encrypted table, the planner parses strings in
// which some statement may start with CREATE, ALTER, DROP or RENAME (at the
// start, after any semicolon, inside an executable comment), that contain
// the word PREPARE or EXECUTE anywhere, or that name a view over an
// encrypted table (prefilter.go: byte scans, no parse for ordinary
// statements). On a Planner with rules (ddl.go):
//
//   - Dynamic SQL is refused unless [Options].AllowDynamicSQL: PREPARE …
//     FROM a variable (or anything but one plain literal), EXECUTE
//     IMMEDIATE, and stored programs or compound statements (BEGIN NOT
//     ATOMIC, IF, SET STATEMENT … FOR) containing PREPARE/EXECUTE. PREPARE
//     … FROM 'literal' is refused when the literal, with its escapes
//     resolved, names an encrypted table or such a view.
//   - CREATE PROCEDURE/FUNCTION/EVENT and CREATE TRIGGER naming an
//     encrypted table are refused (whatever AllowDynamicSQL says), as is
//     CREATE [OR REPLACE] VIEW / ALTER VIEW reading one (or a view over
//     one).
//   - RENAME TABLE and ALTER TABLE … RENAME of an encrypted table or to an
//     encrypted table's name (in any database), RENAME COLUMN / CHANGE /
//     MODIFY of an encrypted column or to its name, CREATE TABLE … LIKE an
//     encrypted table, EXCHANGE PARTITION with one, MERGE (UNION=),
//     FEDERATED, CONNECT and SPIDER tables that may reach one, and CREATE
//     TABLE of an encrypted table's name in a database its rule does not
//     cover (with no database in the rule the new table is encrypted too,
//     and allowed). DROP COLUMN is allowed.
//   - A statement naming a view that reads an encrypted table is refused
//     (DROP VIEW and SHOW excepted). The views come from a
//     [RelationSource] ([Options].Relations; the wire layer's catalog
//     connection), read again when older than RelationsMaxAge (10 s) and
//     after DDL through the proxy ([Planner.Purge]); a definition that
//     names an encrypted table, cannot be parsed while it may, or that the
//     catalog user cannot see counts, and so do views over such views.
//     Without a RelationSource views created directly in the database are
//     not known.
//
// Results the wire layer cannot attribute to a column are refused
// (unattributed.go): a UNION/INTERSECT/EXCEPT branch, a scalar subquery in
// a select list or a CTE yielding an encrypted column, and a derived
// table's encrypted column returned by the query around it (a derived
// table used only to filter is fine). MariaDB reports no origin, or the
// wrong one, for them.
//
// # Boundaries
//
// This package owns SQL analysis and rewriting for MySQL and MariaDB: the
// Plan and its Slots, the plan cache, the lexing state ([Lex]) and the
// session changes a string makes, and the DDL and view guards. The
// vocabulary it shares with the PostgreSQL planner (Param, Role, Literal,
// Refusal, Encrypter, MatchRecorder) lives in package sqlplan; do not
// define it again here. No wire protocol (proxy/mysql/mycrypt), no keys,
// no I/O of its own (the Catalog and RelationSource are the caller's), no
// logging, no global mutable state; errors and refusals name columns and
// tables, never values. It must not import config, crypto/keys, any proxy
// package or the PostgreSQL planner; it depends on sqlplan, rules, value
// and the TiDB parser.
package mysqlsql
