// Package pgsql analyzes PostgreSQL statements for the encryption layer and
// plans how to rewrite them: which literals to replace with ciphertext,
// which comparisons to widen so that they match every live key version,
// which bind parameters to encrypt and how, and which statements to refuse.
// It is a pure function of (SQL text, search_path, rules, Catalog): no
// network, no wire protocol, no keys; so it can be fuzzed (FuzzPlan).
//
// # Why pg_query_go
//
// Statements are parsed with github.com/pganalyze/pg_query_go/v6, which is
// PostgreSQL 17's own grammar (libpg_query, cgo) rather than a look-alike:
// every statement the server accepts parses the same way here, including
// CTEs, LATERAL, ON CONFLICT, E'…' and dollar-quoted strings, U&"…"
// identifiers, string continuation and comments. Edits are spliced into
// the original text at node locations (the ends are found on the token
// stream of PostgreSQL's own scanner), so the rest of the statement goes
// upstream byte for byte; nothing is deparsed. Parsing costs ≈ 15 µs per
// short statement, paid only on a plan-cache miss and only for statements
// that pass the pre-filter: they mention an encrypted table by name
// ([rules.Set.MayTouch]) or a relation derived from one ([Planner.SetDerived]),
// or contain a word that may start DDL or dynamic SQL (see "DDL and
// dynamic SQL").
//
// # Planning
//
// A [Planner] serves one database (its rules narrowed to it, its
// [Catalog]). [Planner.Plan](ctx, sql, searchPath) returns a [*Plan] or an
// error:
//
//   - SQL that cannot touch an encrypted table (and carries no SQL-level
//     EXECUTE/PREPARE/DEALLOCATE/DISCARD, no DO, CREATE, ALTER or IMPORT
//     word, no name of a function that runs SQL text) is not parsed: the
//     plan is [Plan.Passthrough]. Forward the bytes unchanged.
//   - Otherwise every statement of the string is analyzed; plans are
//     cached in an LRU keyed by (SQL text, search_path), or by the
//     normalized SQL so that statements differing only in constants share
//     one plan (see "Plan cache"). Refusals and Catalog errors are not
//     cached.
//   - A [*sqlplan.Refusal] means: send nothing upstream; answer the
//     client with an ErrorResponse (SQLSTATE Refusal.SQLState, message
//     Refusal.Error()). Any other error is a Catalog failure: send
//     nothing either.
//
// Plans are shared between sessions and goroutines: never modify one.
//
// # Plan cache
//
// Before parsing, a cheap hand-written scan (literals.go, no cgo) finds the
// constants of the SQL: '…', E'…', $tag$…$tag$, U&'…', B'…', X'…' strings
// and decimal numbers, skipping comments, quoted identifiers, identifiers
// and $n. The normalized SQL is the text with each constant replaced by a
// placeholder of its token class (string; opaque string: one with a
// backslash, or U&'…'; bit string; integer that fits int32; other number):
// comments and whitespace stay as they are, so texts must agree byte for
// byte outside their constants. The scan gives up, and the exact text is
// the only key, on anything it does not read exactly as PostgreSQL's
// scanner: unterminated quotes or comments, a NUL byte, a quote following
// a string after whitespace or comments (string continuation), numbers
// with junk attached (0x1F, 1_000, 1e, 5abc, 1..2), a stray $. A minus
// sign is text, not part of the constant: -5 and 5 normalize differently.
// Keywords (NULL, TRUE, DEFAULT) and type names are text too: in
// date '2020-01-01' and 'x'::text only the string is a constant, so the
// cast is part of the key and the value is checked in Rewrite as usual.
// Plain '…' strings are read with standard_conforming_strings = on, like
// the parser does; one holding a backslash is opaque all the same.
//
// After a miss, the plan becomes a template under the normalized key when
// some constant can vary: the analyzer reports which constants it used
// only as plaintext values, which it tied to an edit (an EditStore's
// Literal, a Match literal, an EXECUTE argument; each Literal records its
// parse location), and which decided something by value (ORDER BY 2,
// GROUP BY 1: pinned). A constant varies if it was used or tied, never
// pinned, is of a class whose value the scan decodes itself ('…' and E'…'
// without backslashes, dollar quotes, numbers; a minus sign folded into a
// number by the grammar is reapplied) and lies in no edit that does not
// carry its value. All other constants (COPY options, SET values, DO
// bodies, opaque and bit strings, constants in statements that were not
// analyzed) are fixed: a hit requires them byte for byte. On a hit the
// template's plan is copied with every offset shifted by the length
// changes of the constants before it and every tied Literal replaced by
// the new constant's value (the same text gets the cached *Plan itself);
// rules.MayTouch is recomputed for each statement with a varying constant
// and must agree (a constant naming an encrypted table changes whether a
// statement is analyzed). Values are still validated and canonicalised in
// Rewrite, as for any plan. Whether a constant's value changes the plan is
// thus decided by the analyzer itself, and the result is checked against
// planning without a cache (TestLiteralCacheProperty, FuzzLiteralCache).
// When a template is already cached under a normalized key, a text
// differing in a fixed constant is cached under its exact text instead.
//
// [Planner.PlanReusing] is Plan for the wire layer's hot path: the SQL
// text may alias a buffer the caller reuses (the Planner copies what it
// caches), and a plan instantiated from a template is built in the
// caller's [PlanScratch], so a cache hit allocates nothing. Such a plan is
// valid only until the scratch is reused; [Plan.Shared] is the cached plan
// with the same statements, to keep for their completions.
//
// # What the wire layer does with a Plan
//
// Simple Query ('Q'): call [Plan.Rewrite](ctx, dst, sql, env) and send the
// result (or the original bytes when ![Plan.HasEdits]). Rewrite applies
// every [Edit] of every [Statement]:
//
//   - [EditText]: static text (parameter casts such as $1::bytea, PREPARE
//     parameter types, and column lists pinned into INSERT and COPY without
//     one, so that a table altered later cannot shift a value into another
//     column).
//   - [EditStore]: a literal written to an encrypted column becomes
//     '\x<ciphertext>'::bytea (primary key version).
//   - [EditMatch]: a whole comparison `col = 'lit'`, `col <> $1`,
//     `col IN (…)`, `col = ANY(…)` becomes `(col IN (ct_vN, …, ct_v1))` /
//     `(col = ANY($n::bytea[]))` (negated forms: NOT IN, <> ALL), matching
//     the value under every live key version, so lookups keep working after
//     `keys rotate` until old rows are re-encrypted. A parameter prepared
//     with Env.Slots becomes `col = $n::bytea` (one live version) or
//     `col IN (($n::bytea[])[1], …)`, which generic plans look up in the
//     index.
//   - EXECUTE arguments bound for encrypted parameters of the session's
//     prepared statement (see below).
//
// Literals are canonicalised with value.AppendCanonicalTextInZone in
// Env.Zone (the session TimeZone) and encrypted through Env.Encrypter (a
// [sqlplan.Encrypter]); Env.Matches, if set, is told every ciphertext set
// rendered for a comparison and the canonical plaintext it was made from
// (a wire layer may then answer result cells equal to one of them without
// decrypting them; it must copy what it keeps), and Env.Scratch lends
// reusable buffers for the canonical plaintexts and ciphertexts
// ([Scratch]). Ciphertexts are written as '\x…'::bytea, which, like
// the parser, assumes standard_conforming_strings = on: the wire layer must
// refuse statements touching encrypted tables in a session where it is off
// (it is reported in ParameterStatus), and should require client_encoding
// UTF8.
//
// [SessionEffects] (sessionstate.go) reads a string with the same grammar
// and reports, per statement, whether it may change search_path or the
// role "$user" stands for (SET/RESET of search_path, role,
// session_authorization; RESET ALL; DISCARD; set_config; DO; CALL), so the
// wire layer learns when to read the search_path again.
//
// Extended protocol: plan the Parse query the same way (it has one
// statement). [Plan.Params] has one [sqlplan.Param] per $n:
//
//   - RolePlain: forward as sent.
//   - RoleStore: declare bytea (OID 17) in the upstream Parse; at Bind
//     decode the client's value (text or binary, Column.Type),
//     canonicalise, encrypt (AppendStore), send binary bytea. NULL stays
//     NULL.
//   - RoleMatch: declare bytea[] (1001); bind a binary bytea[] holding the
//     value's ciphertexts under every live version (AppendMatch). Prepared
//     with Env.Slots: declare [SlotOID] (bytea for one slot, the
//     ciphertext itself bound) and bind exactly that many.
//   - RoleMatchArray (`col = ANY($1)`): declare bytea[]; the client sends an
//     array of Column.Type; bind one bytea[] with every element's
//     ciphertexts under every live version.
//
// In ParameterDescription report the plaintext type
// ([sqlplan.Param.ClientType], an array of it when
// [sqlplan.Param.ClientArray]); [UpstreamOID] is the type to declare
// upstream (extend Parse's type list when the client declared fewer). The rewritten Parse text (Rewrite) already casts match
// parameters (`= ANY($1::bytea[])`).
//
// Results: decide from RowDescription's table OID and attribute number,
// as for any query; the planner has refused every result column that
// would carry ciphertext without an origin there (expressions, set
// operations, scalar subqueries, FULL JOIN … USING). COPY has no
// RowDescription: [KindCopyFrom] and [KindCopyTo] statements carry a [Copy]
// with one [CopyField] per field (its encrypted column, or nil) and the
// format options, with PostgreSQL's defaults filled in.
//
// SQL-level prepared statements: keep one [Prepared] per session. Call
// [Prepared.Commit] with each statement when its CommandComplete arrives
// (a statement's index in Plan.Statements equals the number of
// CommandCompletes before it). PostgreSQL shares the namespace with
// protocol-level named statements, so also [Prepared.Add] every named
// Parse (with its Plan.Params) and [Prepared.Remove] it on Close. Rewrite
// reads the map to encode EXECUTE arguments and refuses an EXECUTE of a
// name it does not know (the statement might take encrypted values). After
// DDL (CREATE/ALTER/DROP TABLE, …) drop the Catalog's cache and call
// [Planner.Purge].
//
// # Name resolution
//
// Identifiers follow PostgreSQL (see package rules for how configured names
// match). Tables: schema-qualified names are exact; an unqualified name
// that matches a rule's table is resolved through [Catalog.Resolve] with
// the session's search_path (the wire layer should substitute "$user"
// with the session user before calling Plan; a literal $user is assumed
// to possibly name any schema). To keep cached plans safe when tables
// appear and disappear, resolution fails closed:
// if the name resolves to a table without rules while a schema with a
// rule for that name is also on the search path (or "$user" is), the
// statement is refused ("schema-qualify the table name"); if the catalog
// does not know the table yet (created earlier in the same string), the
// first schema of the search path with a rule for it is assumed. Columns:
// qualified references resolve through aliases, subqueries and CTEs; an
// unqualified name that could be an encrypted column and also a column of
// another relation in scope (asked from the catalog) is refused as
// ambiguous. Names that match a rule only when case is ignored are refused.
//
// # DDL and dynamic SQL
//
// Some statements can route a value around the rules without naming an
// encrypted table where the pre-filter would see it, or change what a name
// means for later statements. ddl.go refuses them on a Planner with rules,
// whatever their text mentions (0A000 unless noted):
//
//   - RENAME of an encrypted table (also through ALTER INDEX/VIEW/…),
//     column or schema, SET SCHEMA of a relation named like an encrypted
//     table, RENAME of any relation or column to an encrypted table's or
//     column's name.
//   - CREATE [TEMP] TABLE, VIEW, MATERIALIZED VIEW, FOREIGN TABLE, TABLE
//     AS and SELECT INTO of an encrypted table's name in any schema but the
//     rule's (an unqualified name is placed with [Catalog.CreationSchema]);
//     IMPORT FOREIGN SCHEMA without a LIMIT TO list of other names.
//   - INHERITS, PARTITION OF, LIKE and OF an encrypted table; ALTER TABLE
//     … INHERIT and ATTACH PARTITION linking a table to one; unless the
//     other table is configured with every encrypted column of it under
//     interchangeable rules (partitions configured like their parent).
//   - CREATE TRIGGER and CREATE RULE on an encrypted table, rules whose
//     actions name one; CREATE [MATERIALIZED] VIEW reading one.
//   - ALTER COLUMN … TYPE / SET DEFAULT / SET EXPRESSION / ADD GENERATED of
//     an encrypted column, and USING, generated and CHECK expressions of
//     plaintext columns that read one.
//   - CREATE SUBSCRIPTION / ALTER SUBSCRIPTION.
//   - Unless [Options].AllowDynamicSQL (42501): DO blocks and CREATE
//     FUNCTION/PROCEDURE that can build SQL at run time — PL/pgSQL with
//     EXECUTE, any language but sql and plpgsql, bodies calling the
//     functions below — and calls of functions that run SQL text
//     (query_to_xml*, ts_stat, ts_rewrite with a query, dblink*). A DO
//     block or sql/plpgsql body that names an encrypted or derived
//     relation (also once E'…' escapes are decoded) is refused in any
//     case; one that names none and has no EXECUTE reaches tables only by
//     name, and is allowed.
//
// DROP of an encrypted column or table is allowed (it stores nothing).
// These statements reach the planner through a keyword check in the
// pre-filter (hasPlanKeyword: DO, CREATE, ALTER, IMPORT as whole words
// anywhere in the text, since keywords cannot be escaped, quoted or split
// by a comment; the SQL-running function names as substrings); an
// unparseable string containing one is refused like one naming an
// encrypted table.
//
// Derived relations. The wire layer tells the Planner which relations of
// the database derive from an encrypted table ([Planner.SetDerived]):
// inheritance children and partitions, inheritance parents and
// partitioned tables above it, views and materialized views over any of
// these, created directly in the database. Their names join the
// pre-filter, and a statement naming one (in any RangeVar, after
// resolving unqualified names through the Catalog) is refused ("relation
// v is a view over encrypted table public.users; query the table"), so
// that no lookup value for a view goes upstream in clear and nothing is
// written through a child or parent. Exceptions: DROP, GRANT/REVOKE,
// ALTER TABLE … NO INHERIT / DETACH PARTITION, and a relation configured
// with every encrypted column of its base table under an interchangeable
// rule (partitions configured like their parent). A change of the set
// drops cached plans.
//
// # What is refused
//
// Everything the analyzer does not account for, in a statement that names
// an encrypted table: statements of unknown kinds (DO, CREATE FUNCTION,
// MERGE, …), unparseable SQL, and expression nodes over encrypted columns
// other than those below. Specifically: LIKE/ILIKE/regex/SIMILAR,
// ordering comparisons and BETWEEN, ORDER BY, aggregates other than COUNT,
// functions, operators, casts, CASE/COALESCE/NULLIF over an encrypted
// column; equality, IN, GROUP BY, DISTINCT, COUNT(DISTINCT), PARTITION BY
// and deduplicating set operations on a randomized column; comparisons of
// an encrypted column with a plaintext expression, or of two columns not
// under the same deterministic key; INSERT … SELECT, UPDATE … SET and ON
// CONFLICT … SET that would write a plaintext value (or another key's
// ciphertext) into an encrypted column, or a ciphertext into a plaintext
// column, CREATE TABLE AS and SELECT INTO; views over encrypted columns;
// server-side COPY of an encrypted table; DDL that would store a value in
// or compute on an encrypted column (DEFAULT, CHECK, generated columns,
// ALTER … TYPE, expression and partial indexes, trigger WHEN); a
// parameter used in two roles. Allowed: = and <> (and IN, = ANY, <> ALL)
// with constants or parameters on deterministic columns, IS [NOT] NULL on
// any, joins of deterministic columns under the same key, GROUP BY /
// DISTINCT / COUNT(DISTINCT) on deterministic columns, COUNT on any,
// copies between columns under the same key, and DDL without values
// (TRUNCATE, DROP, ADD COLUMN, CREATE INDEX on the column, …).
//
// # Limits
//
// Deterministic ciphertexts differ per key version: lookups by constant or
// parameter match every live version (that is what EditMatch is for), but
// comparisons between stored values (joins, GROUP BY, DISTINCT, unique
// indexes and ON CONFLICT) see a value written under version 1 and the
// same value written under version 2 as different until old rows are
// re-encrypted. A statement prepared once (SQL PREPARE or a named Parse)
// with a constant compared to an encrypted column keeps the key versions
// live when it was prepared; use parameters, or prepare again after a
// rotation.
//
// Server-side code that already exists is not analyzed: a function (or a
// procedure called with CALL) created directly in the database that
// writes a plaintext argument into an encrypted column is invisible here;
// the proxy only refuses creating such code, and views, children and
// parents are known by their catalog dependencies (SetDerived), not by
// reading their definitions. If
// the wire layer passes a literal "$user", a plan resolved under one
// session's user may be reused by another session with the same setting
// (it then encrypts values for a table that may be plaintext there: an
// error, never a leak).
//
// # Boundaries
//
// This package owns SQL analysis and rewriting for PostgreSQL: the Plan,
// its Edits, the plan cache and templates, Prepared and the PostgreSQL
// specifics of parameters ([UpstreamOID], Env.Slots). The vocabulary it
// shares with the MySQL planner (Param, Role, Literal, Refusal, the
// SQLSTATE codes, Encrypter, MatchRecorder) lives in package sqlplan; do
// not define it again here. It does not touch the wire protocol
// (proxy/postgres/pgcrypt), keys (crypto/keys), the configuration (config)
// or the MySQL planner; it depends on sqlplan, rules, value and
// pg_query_go, and does no I/O of its own (the Catalog is the caller's).
package pgsql
