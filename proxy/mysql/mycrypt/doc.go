// Package mycrypt is the MySQL encryption layer: a mysql.Interceptor that
// encrypts every value bound for an encrypted column before it reaches the
// server, decrypts encrypted result columns, and refuses what it cannot
// account for (README, "Security model").
//
// # Commands
//
//   - COM_QUERY: planned by mysqlsql (cached by SQL text and current
//     database). Refused statements get ERR 1235 (42000) naming the column
//     and the reason, and nothing goes upstream; rewritten statements carry
//     X'…' ciphertexts; statements that touch no encrypted table go through
//     byte for byte. Clients that interpolate parameters
//     (interpolateParams=true) arrive here.
//   - COM_STMT_PREPARE: the rewritten text is prepared; the PrepareOK's
//     parameter count and the parameter definitions are rewritten back to
//     the client's placeholders (a `?` compared with an encrypted column is
//     mysqlsql.MatchSlots placeholders upstream). The plan is remembered
//     per statement id. A statement on an encrypted table whose placeholders
//     the server counts differently from the proxy is refused; one that
//     names no encrypted table goes through byte for byte, and the server's
//     count stands (such statements are not parsed).
//   - COM_STMT_EXECUTE: parameters are decoded with the types bound now or
//     remembered from the last execution (new-params-bound flag 0), values
//     for encrypted columns are canonicalised and encrypted and sent as
//     MYSQL_TYPE_BLOB; NULL stays NULL. COM_STMT_SEND_LONG_DATA for an
//     encrypted parameter is dropped and the next execution refused.
//     Executing an unknown statement id is refused (ERR 1243).
//   - USE and COM_INIT_DB: the current database is tracked; while a change
//     is in flight, or after COM_CHANGE_USER, it is unknown and unqualified
//     encrypted table names are refused.
//
// # Results
//
// Column definitions whose schema/org_table/org_name name an encrypted
// column are rewritten to the plaintext type (type, length, flags,
// charset, decimals; with MariaDB's extended metadata, negotiated as
// mysql.MariaDBExtendedMetadata, format "json" for json and nothing for
// the other types) and the column's cells are decrypted: text rows with
// value.AppendMySQLText, binary rows in the binary protocol encoding of
// the plaintext type. A cell that fails to decrypt replaces the rest of the
// response with ERR 1105: never garbage, never ciphertext passed off as
// plaintext.
//
// The session's access policy (Options.Policy, fieldcrypt.Decision) may
// show a column otherwise (policy.go): masked text (mask; NULL for a
// column that is not text), NULL (null, the bit set in a binary row's
// NULL bitmap), or the stored bytes under the server's own definition
// (ciphertext). A result with a column the session may not read (deny,
// write_only) is described as usual and then refused with ERR 1143 in
// place of its first row, or of its terminating EOF when it has none
// (clients do not read an ERR among column definitions); the EOF after
// the definitions is told apart by exState.defsEOF. Stores and lookups
// the policy refuses fail at the Cipher (ERR 1143) before anything is
// sent.
//
// # Cost
//
// A prepared statement remembers its result column definitions and what
// was sent in their place: the identical definitions every execution's
// response repeats are neither looked up in the rules nor rewritten again
// (a definition that differs in any byte is). A deterministic cell that is
// byte for byte one of the ciphertexts the same execution bound for a
// lookup (a parameter of COM_STMT_EXECUTE, or a literal of COM_QUERY, up
// to 8 lookups) on a column sharing its key (rules.SameKey) is answered
// with the plaintext that was encrypted, without decrypting it again; any other
// cell is decrypted and authenticated. Parameters, ciphertexts to store
// and decrypted plaintexts go through per-session scratch buffers.
//
// # Limits
//
// timestamptz values are read and rendered in the session time_zone, which
// the proxy follows (timezone.go): a session starts in the server's
// default time_zone when a ZoneSource (the Catalog) gives it
// (serverzone.go), in UTC otherwise; literal SETs of time_zone, read with
// the server's grammar (mysqlsql.AnalyzeTimeZone), apply when they
// succeed, and session state tracking (CLIENT_SESSION_TRACK) sets the
// server's own value. A change the proxy cannot read (an expression, a
// variable, CALL, a prepared SET) makes it unknown and refuses timestamptz
// values until such a SET or report. INSERT and REPLACE without a column
// list into an encrypted table need a mysqlsql.Catalog ([Catalog] reads
// information_schema.columns over its own upstream connection; without
// one, or when it cannot answer, they are refused): the column order is
// pinned into the statement, cached by the planner, and re-read after DDL
// seen through the proxy (a string whose plan has mysqlsql.Plan.DDL purges
// on its OK/ERR) or when a row's width no longer matches. DDL run behind
// the proxy's back can leave a same-width reordering unseen until then:
// values still go to the columns the proxy encrypted them for (pinned
// names), never plaintext into an encrypted column.
// The current database after a multi-statement string containing USE is
// settled only by its final OK: if the string ends with a result set, it
// stays unknown (unqualified encrypted table names refused) until the next
// USE or COM_INIT_DB. Literals in COM_STMT_PREPARE are encrypted once, at
// prepare time (a match list made before a key rotation does not include
// the new version). Stored programs (CALL) are not analysed: statements
// naming an encrypted table are refused, others pass.
//
// # Views, triggers and dynamic SQL
//
// [Catalog] also implements mysqlsql.RelationSource (relations.go): the
// views (information_schema.VIEWS with VIEW_DEFINITION; MariaDB has no
// VIEW_TABLE_USAGE) and triggers the catalog user can see. With a Catalog
// the planner refuses statements naming a view over an encrypted table,
// and each trigger that fires on an encrypted table (or whose body names
// one) is logged once per table as a warning: its writes never pass
// through the proxy, and the database-side guard is what covers them.
// [Options].AllowDynamicSQL (off by default) lets PREPARE … FROM a
// variable, EXECUTE IMMEDIATE and stored programs with PREPARE/EXECUTE
// through (see mysqlsql).
//
// # Lexing state
//
// Every string is planned under the session's lexing state
// (lexstate.go, mysqlsql.Lex): the server version from the handshake
// (executable comments), the sql_mode (the server's global one, read with
// init_connect once per listener through a [LexSource] — the Catalog —
// and again after SET GLOBAL through the proxy; without one, assumed to
// have no lexing modes), and character_set_client (the handshake's
// collation, COM_CHANGE_USER's; COM_RESET_CONNECTION goes back to it on
// MariaDB, to the global one on MySQL). Literal SETs apply when their OK
// arrives (unknown while in flight; an ERR restores the previous state,
// or leaves it unknown after a multi-statement string); session state
// tracking in OK packets (CLIENT_SESSION_TRACK) sets the server's values.
// A prepared statement that sets them, an SQL EXECUTE after a PREPARE that
// could, and anything else mentioning them make them unknown. While a
// setting is unknown or unsupported (ORACLE and MSSQL modes; character
// sets other than utf8mb3/utf8mb4, latin1, ascii and binary), statements
// that may touch an encrypted table are refused with ER 1235 naming
// sql_mode or character_set_client; others pass.
//
// # Boundaries
//
// It must not import config, proxy/postgres or key providers: it gets a
// rules.Set and a rules.Keys. It never logs SQL text, parameter values or
// row contents.
package mycrypt
