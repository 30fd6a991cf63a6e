// Package audit owns the tamper-evident audit trail of key use
// (docs/audit.md): the events, their HMAC chain, the append-only JSON Lines
// file they go to (with its rotation and its chain state file), the
// asynchronous writer serve uses, the per-session tracker that turns field
// cipher uses into first-use, summary and denial events, and the
// verification of a chain across rotated files.
//
// # Chain
//
// Every event carries a sequence number, a timestamp, a type and the
// version of the audit key its mac is made with. Its line is the event's
// JSON with a last member "mac": HMAC-SHA256, under the audit MAC key of
// that version, over the previous line's mac (32 zero bytes for the first
// event of a chain) followed by the line's own bytes without the mac
// member. Editing, deleting, inserting or reordering lines breaks the
// chain at the first line touched; [Verify] names it. The audit MAC key is
// derived from the reserved data key [KeyName] ([MACKey]); it never
// appears in an event.
//
// # Writers
//
// [Log] is the writer of a long-running process: Emit never blocks (a full
// buffer drops the event and counts it; the next batch starts with a
// "dropped" event carrying the count, so the chain stays whole), one
// goroutine appends batches, fsyncs at most once per SyncInterval and on
// Close. [Append] is the synchronous writer of short commands (keys
// init/rotate/rewrap). Both append under an exclusive lock on the chain
// state file (FILE.chain), which records the last sequence number, mac and
// the identity and size of the audit file, so that several processes
// extend one chain, and a renamed (rotated) or truncated file is noticed
// at the next batch: the new file then starts with a "chain_start" event
// that names the previous sequence number and mac.
//
// # Boundaries
//
// This package never sees a plaintext, a ciphertext or key material other
// than the audit MAC key: events name keys, versions, columns and
// principals only. It must not import the wire protocols (proxy/postgres,
// proxy/mysql and their encryption layers), config or metrics; it uses
// fieldcrypt's Monitor types and proxy.Principal as they are, and reaches
// the keystore only through a *crypto.Key handed to [MACKey].
package audit
