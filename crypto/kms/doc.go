// Package kms holds the master key providers: the keys that wrap (encrypt)
// data keys before they are stored, and unwrap them when the key manager
// needs them.
//
// # Providers
//
//   - [Local] is a 32-byte AES-256 key read from a file (base64, mode 0600).
//     It wraps with AES-256-GCM in process; see [Local.Wrap] for the layout.
//     [LocalFile] is the same key read from its file on every operation,
//     so that a removed or restored file takes effect without a restart.
//   - [AWS] is an AWS KMS key (key id, ARN or alias). Wrapping happens
//     inside KMS; the master key never leaves it.
//
// Both implement [MasterKey]. Every wrap binds the data key's name and
// version ([KeyRef]) as associated data (the KMS EncryptionContext), so a
// wrapped key copied onto another name or version does not unwrap.
//
// [Observe] wraps any MasterKey so that a [CallObserver] is told of each
// call's duration and error (metrics), under a provider name.
//
// # Errors
//
// Errors name the data key (name and version) and the master key id, never
// key bytes. Callers branch on [ErrUnreachable] (the provider could not be
// reached: retry later), [ErrDenied] (the provider answered and refused:
// permissions, disabled or unknown key) and [ErrUnwrap] (the wrapped bytes
// do not authenticate under this master key and key reference).
//
// # Boundaries
//
// This package owns the master key material and the provider clients. It
// does not read configuration (the CLI wires config into the constructors),
// does not store wrapped keys (package keystore does) and does not cache
// unwrapped data keys (package keys does). It must not import config or
// proxy packages.
package kms
