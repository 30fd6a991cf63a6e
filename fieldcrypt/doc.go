// Package fieldcrypt owns the per-session field cipher: the one object
// through which a session of the encryption layers (proxy/postgres/pgcrypt,
// proxy/mysql/mycrypt) and the SQL planners they drive encrypt, look up and
// decrypt the values of encrypted columns.
//
// A [Cipher] is bound to one session's [proxy.Principal] (listener, user,
// database, client address, TLS client certificate) and wraps the shared
// *rules.Encryptor, with the same methods and signatures (so the planners'
// encrypter interfaces accept either). It is the seam where per-user access
// policy, audit of key use and metrics plug in, as two optional decorators
// in the shape of Tink's monitoring hooks:
//
//   - a [Guard] is consulted before each use of a column's data key and may
//     refuse it: the call then fails with a *[RefusedError] naming the
//     column and the operation, and no key is touched;
//   - a [Monitor] is told of each use after it happened (or was refused):
//     operation, column rule, key version, plaintext byte count, error,
//     and the Principal.
//
// A third, a [Policy] (package access compiles one from the access:
// section), binds each session to a [Decision] per column: an [Action]
// (decrypt, mask, ciphertext, null, deny, write_only), a [Mask], whether
// lookups are allowed, and the rule that decided. The Cipher refuses the
// key uses a Decision does not allow before the Guard is asked (the
// refusal's reason, a *[PolicyError], names the rule), and the layers ask
// [Cipher.Decision] and [Cipher.ReadDecision] how to present each result
// column, since mask, ciphertext and null change what a cell becomes and
// its type, which no Guard can express.
//
// All three are nil by default, and then cost nothing: a Cipher without
// them calls the Encryptor directly and allocates nothing of its own.
//
// The operations are [OpEncrypt] (a value stored by INSERT, UPDATE, COPY),
// [OpMatch] (a value compared with a deterministic column: its ciphertexts
// under every live key version) and [OpDecrypt] (a result cell).
// LiveVersions, which counts key versions to size a prepared statement,
// uses no key on a value and is neither guarded nor reported. A result cell
// that is one of the ciphertexts the session's own lookup bound is answered
// from that lookup's plaintext without a key use: the layers do that before
// they reach the Cipher, and the lookup itself was guarded and reported.
//
// Neither the Guard nor the Monitor ever sees a plaintext or a ciphertext;
// errors name columns and keys, never values.
//
// # Boundaries
//
// This package must not touch the wire protocols or SQL: it does not import
// proxy/postgres, proxy/mysql or sqlplan, and knows nothing of messages,
// statements or SQLSTATEs. Each layer turns a *RefusedError into an error
// of its own protocol. Key management stays in rules and crypto.
package fieldcrypt
