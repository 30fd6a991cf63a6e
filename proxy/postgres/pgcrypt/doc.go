// Package pgcrypt is the encryption layer of the PostgreSQL proxy: a
// postgres.Interceptor that encrypts every value bound for a configured
// column before it leaves the proxy, decrypts every result column that comes
// from one, and refuses what it cannot do safely.
//
// # Statements
//
// Simple Query ('Q'): every string is handed to pgsql.Planner, which skips
// parsing for strings that cannot touch an encrypted table
// (rules.Set.MayTouch); those are forwarded byte for byte. Otherwise every
// statement is planned; a refusal answers the client with an ErrorResponse
// (the refusal's SQLSTATE, a message naming the column and the reason)
// followed by ReadyForQuery, and nothing of the string is sent upstream;
// otherwise the rewritten text (literals encrypted, comparisons widened to
// every live key version) is forwarded. SQL PREPARE/EXECUTE/DEALLOCATE are
// tracked in a per-session pgsql.Prepared, committed on each statement's
// CommandComplete.
//
// Extended protocol: Parse is planned the same way; its text is rewritten
// and the parameter types at encrypted positions are declared as
// pgsql.UpstreamOID. Every Parse is followed by a Describe of the statement
// that the proxy injects and whose answer it swallows, so the result
// columns of every prepared statement are known before it is executed,
// whether or not the client describes it. The client's own Describe is
// answered with the plaintext types (ParameterDescription and
// RowDescription). Bind decodes each encrypted parameter from text or binary
// (per the format-code list: none, one, or one per parameter),
// canonicalises it, and binds binary bytea (RoleStore: the primary key
// version) or a binary bytea[] of the ciphertexts under every live version
// (RoleMatch; for RoleMatchArray, `col = ANY($1)`, every element of the
// client's text or binary array under every live version). Responses are attributed to requests through a FIFO of the
// client's messages, so pipelines (pgx batches) work, and an ErrorResponse
// from the server drops the requests up to the next Sync as the server
// does.
//
// COPY … FROM STDIN in text and csv formats: rows are reassembled across
// CopyData messages with the server's own line rules (copysplit.go: the
// first line's ending, \n, \r or \r\n, is every line's; the header line,
// csv quoting, text backslash escapes, the \. end marker), the fields of
// encrypted columns are unescaped, canonicalised, encrypted and written
// back as bytea hex; a bad value, a line ending the server would reject,
// or a line longer than Options.CopyBuffer (16 MiB by default) turns into
// a CopyFail naming the reason (the server then reports the COPY as
// failed, and stores nothing). Each byte is scanned once; only the
// current incomplete line is kept, and nothing after the COPY. COPY … TO
// STDOUT (table or query) decrypts the same fields.
//
// # Results
//
// RowDescription fields are mapped (table OID, attribute number) to column
// rules through a per-database catalog cache; encrypted fields get their
// plaintext type OID, size and modifier, and each DataRow cell is decrypted
// and encoded in the format the client asked for: text in the session's
// TimeZone, or PostgreSQL binary (canonical layouts, the 2000-01-01 epoch
// for date and timestamps, base-10000 numeric). A cell that fails to
// decrypt turns the rest of that request's response into one ErrorResponse:
// never raw ciphertext, never garbage. The same holds for a bytea column of
// a view over an encrypted table, a bytea column of a relation the catalog
// cannot see yet (created in the client's open transaction), and rows of a
// statement described as returning none whose portal was not described. A
// FETCH prepared before its cursor was declared is such a statement: its
// rows are attributed by the RowDescription of a Describe of its portal,
// the client's (libpq and pgx send one) or, before the portal's first
// Execute, one the proxy injects and whose answer it swallows (statements
// whose text starts with FETCH only: no cost for the others).
//
// The session's access policy (Options.Policy, fieldcrypt.Decision;
// policy.go) may show a column otherwise: masked text (mask; NULL for a
// column that is not text), NULL, or the stored bytea as it is, typed
// bytea (ciphertext). A column the session may not read (deny, write_only)
// refuses the result at its RowDescription, and COPY TO at its
// CopyOutResponse, with 42501 naming the column and the rule. Stores and
// lookups the policy refuses fail at the Cipher.
//
// # Cost
//
// A deterministic result cell that is byte for byte one of the ciphertexts
// the same execution sent for a lookup (the literal comparisons pgsql's
// Rewrite rendered into a simple Query string, reported through
// pgsql.Env.Matches; the RoleMatch and RoleMatchArray parameters of the
// Bind whose portal is executed) on a column sharing its key
// (rules.SameKey: the same key name and plaintext type; the ciphertext
// header carries the version) is answered with the canonical plaintext the
// proxy encrypted, without decrypting it again: equal bytes under the
// same key decrypt to the same plaintext. Every other cell is decrypted
// and authenticated; up to 8 lookups per execution are remembered. Query
// text that cannot need a plan (pgsql.Planner.Skips) is forwarded without
// being copied, and text that does is planned without a copy either
// (pgsql.Planner.PlanReusing: a plan-cache hit, also one made from a
// template for new constants, allocates nothing; the event keeps
// Plan.Shared). RowDescriptions already seen are not decoded again, and
// Bind (its lookup ciphertexts included), Query rewriting and DataRow go
// through per-session scratch buffers: beyond the ciphertexts' own
// cryptography (XAES-256-GCM sets up AES and GCM per value), a cached
// point select or insert makes no allocation of its own (its bookkeeping
// comes from slabs shared by 8 to 32 requests).
//
// # Refused (never passed through)
//
//   - Everything pgsql refuses (see its package doc), including the DDL and
//     dynamic SQL that would route values around the rules and statements
//     naming a relation derived from an encrypted table (see "Derived
//     relations" below).
//   - COPY of encrypted columns inside a multi-statement string, and COPY
//     through the extended protocol; csv COPY with QUOTE '\' or a line
//     ending as DELIMITER, QUOTE or ESCAPE; a csv line starting with \.
//     that is not the end marker alone on its line, and data after that
//     marker (PostgreSQL 18 reads them differently from earlier versions). (COPY FROM STDIN / TO STDOUT in text,
//     csv and binary format is converted: copy.go, copy_binary.go.)
//   - FunctionCall (fast path) of any function but the large-object ones
//     libpq calls that way, unless Options.AllowDynamicSQL (fastpath.go):
//     query_to_xml called by OID would run SQL text the planner never saw.
//   - Bind/Describe/Execute of statements and portals not created through
//     the protocol in this session (SQL PREPARE'd statements are run with
//     EXECUTE instead).
//   - A statement changing search_path or the role followed, in the same
//     string, by another (when the string needs a plan: read with
//     pgsql.SessionEffects), and statements needing a plan while the
//     session's search_path is not known (searchpath.go explains how it is
//     read from the server).
//   - Anything needing a plan while the proxy cannot read statement text
//     exactly as the server will (lexstate.go): standard_conforming_strings
//     off; a client_encoding whose characters may end in an ASCII byte
//     (SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030, JOHAB) or that the
//     proxy does not know (SQLSTATE 0A000, the message names the encoding
//     and says to use UTF8; pure ASCII text whose plan touches no encrypted
//     column still passes); and, until its ReadyForQuery, behind a request
//     that may change either (SET, RESET, DISCARD, set_config, a mention of
//     either setting, a FunctionCall, and COMMIT, ROLLBACK and the like in
//     a transaction where one of those ran). Binds of planned statements are refused under such an
//     encoding too. Both settings are tracked from the server's
//     ParameterStatus messages.
//
// # How refusals reach the client
//
// A refused statement behaves as one the server failed, in order and with
// the server's transaction semantics. Between transactions, with every
// earlier request answered, a refused simple Query (or FunctionCall) is
// answered by the proxy itself (postgres.Writer.Answer): ErrorResponse and
// ReadyForQuery, nothing sent upstream. Otherwise — inside a transaction
// block, or pipelined behind other requests — the server is sent a query
// that does not parse in its place, so the server fails it itself (a
// transaction block is aborted: later statements get 25P02 and COMMIT
// rolls back, as after any error), and the backend hook replaces the
// server's error by the refusal. A refused message of an extended batch is
// replaced by a Parse, under a name no client uses, of SQL that does not
// parse (the server fails it whatever the session's state, creates
// nothing, and skips the rest of the batch), whose error is
// replaced the same way; the client's messages up to the Sync are
// dropped. If the server already failed an earlier message of the batch,
// it skips the stand-in too and the client sees that first error, as it
// would have. Neither stand-in carries anything of the refused statement,
// and the relay's ReadyForQuery accounting stays exact.
//
// # Catalog
//
// Table OIDs, view dependencies, search_path resolution and column order
// come from a separate upstream connection per database, opened through
// Options.Connect (the session's own connection cannot be borrowed
// mid-stream, and the proxy does not hold the client's password). Answers
// are cached per database and dropped, with the planner's plan cache, after
// DDL (CommandComplete of CREATE/ALTER/DROP/...). Resolve searches the
// temporary schema first, like the server; since the catalog connection
// cannot tell one session's temporary schema from another's, a temporary
// relation of any session named like an encrypted table makes unqualified
// statements on that table refused ("schema-qualify").
//
// Derived relations. The relations derived from encrypted tables
// (inheritance children and partitions and parents, recursively, and
// views and materialized views depending on any of them: pg_inherits,
// pg_depend of pg_rewrite) and the relations named like an encrypted table
// in other schemas are read with one recursive query and handed to
// pgsql.Planner.SetDerived, which refuses statements naming them and adds
// their names to the pre-filter. They are read when a session starts,
// before its first statement (NewSession fails, and the client gets
// FATAL 57P03 before any statement is relayed, if they cannot be read; a
// burst of new sessions shares one read), after DDL passes through the proxy (at once, asynchronously), and
// every Options.DerivedRefresh (DefaultDerivedRefresh, 2 s) while the
// database has sessions, by one goroutine per database that ends with its
// last session or at Close (an Interceptor replaced without Close keeps
// none once its sessions are gone). So
// a relation created directly in the database is known to new sessions at
// once and to open ones within the refresh interval; a failed periodic
// read keeps the previous set (logged). A statement the pre-filter skipped
// at Parse keeps its text: when the set has changed by its Bind and the
// pre-filter would now plan it, the Bind is refused ("prepare it again"),
// since the server re-plans such a statement against the new relation.
//
// Options.AllowDynamicSQL (the listener's allow_dynamic_sql) lets DO
// blocks, procedural functions and SQL-running functions through (see
// pgsql's "DDL and dynamic SQL").
//
// # Boundaries
//
// This package owns the wire-level encryption for PostgreSQL. It must not
// import config or key providers, and it never logs SQL text, values or
// message bodies.
package pgcrypt
