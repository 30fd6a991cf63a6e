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
//   - [PKCS11] is a non-extractable AES key in a PKCS#11 token (an HSM,
//     AWS CloudHSM, SoftHSM2), found by token and key label. Wrapping
//     happens inside the token with CKM_AES_KEY_WRAP_KWP when the token
//     offers it, else CKM_AES_GCM; the mechanism is recorded in each
//     wrapped key. [CreatePKCS11Key] creates the key (keys init).
//
// All implement [MasterKey]. Every wrap binds the data key's name and
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
// A PKCS#11 library is process-wide state (C_Initialize, login): this
// package keeps one reference-counted handle per loaded library, the one
// piece of package-level state, so that master keys on one library share
// its initialisation and the last Close finalises it.
//
// This package owns the master key material and the provider clients. It
// does not read configuration (the CLI wires config into the constructors),
// does not store wrapped keys (package keystore does) and does not cache
// unwrapped data keys (package keys does). It must not import config or
// proxy packages.
package kms
