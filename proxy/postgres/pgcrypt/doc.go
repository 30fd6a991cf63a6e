// Package pgcrypt is the encryption layer of the PostgreSQL proxy: a
// postgres.Interceptor that encrypts every value bound for a configured
// column before it leaves the proxy, decrypts every result column that comes
// from one, and refuses what it cannot do safely.
//
// # What it does
//
// Simple Query ('Q'): a string that cannot touch an encrypted table
// (rules.Set.MayTouch) is forwarded untouched. Otherwise it is planned with
// pgsql.Planner (every statement of the string); a refusal answers the client
// with an ErrorResponse (the refusal's SQLSTATE, a message naming the column
// and the reason) followed by ReadyForQuery, and no statement is sent
// upstream; otherwise the rewritten text (literals encrypted, comparisons
// widened to every live key version) is forwarded. SQL PREPARE/EXECUTE/
// DEALLOCATE are tracked in a per-session pgsql.Prepared, committed on each
// statement's CommandComplete.
//
// Results: RowDescription fields are mapped (table OID, attribute number) to
// column rules through a per-database catalog cache; encrypted fields get
// their plaintext type OID, size and modifier, and each DataRow cell is
// decrypted and re-encoded as PostgreSQL text in the session's TimeZone. A
// cell that fails to decrypt (or a result format this layer cannot produce)
// turns the rest of that query's response into one ErrorResponse: never raw
// ciphertext, never garbage. A bytea result column from a table the catalog
// cannot see (created in the client's open transaction) is an error as well.
//
// # Refused for now (never passed through)
//
//   - The extended protocol (Parse) for statements that may touch an
//     encrypted table: ErrorResponse at the next Sync, every message up to it
//     discarded, as the server does after an error. Extended-protocol
//     statements that touch no encrypted table pass through, and any
//     encrypted column that shows up in their results (through a view, say)
//     is an error, not ciphertext.
//   - COPY into or out of a table with encrypted columns.
//   - Statements mentioning search_path while rules apply (the setting is not
//     reported by the server, so it cannot be tracked; pass it as a startup
//     parameter instead), and anything needing a plan while
//     standard_conforming_strings is off.
//
// # How refusals reach the client in order
//
// The relay's frontend hook can only write upstream. A refused simple Query
// is replaced by an empty Query, whose EmptyQueryResponse the backend hook
// replaces by the refusal's ErrorResponse; a refused extended batch is
// replaced by its bare Sync, and the backend hook inserts the ErrorResponse
// before the ReadyForQuery (unless the server already reported an error in
// that batch, which means it would have skipped the refused message too). So
// responses keep their order under pipelining and the relay's
// ReadyForQuery accounting stays exact. The transaction status reported is
// the server's: a refusal inside a transaction block does not abort it.
//
// # Catalog
//
// Table OIDs, search_path resolution and column order come from a separate
// upstream connection per database, opened through Options.Connect (the
// proxy's session leg cannot be borrowed mid-stream). Answers are cached per
// database and dropped, with the planner's plan cache, after DDL
// (CommandComplete of CREATE/ALTER/DROP/...).
//
// # Boundaries
//
// This package owns the wire-level encryption for PostgreSQL. It must not
// import config or key providers, and it never logs SQL text, values or
// message bodies.
package pgcrypt
