package kms

import (
	"context"
	"time"
)

// CallObserver is told of every call to a master key provider (metrics).
// It is called concurrently, after each call returns, and must be quick.
type CallObserver interface {
	// ObserveMasterKeyCall reports one call: provider as given to
	// Observe, op "generate_data_key", "wrap" or "unwrap", its duration
	// and its error (nil: it succeeded). The error names keys, never
	// holds key bytes.
	ObserveMasterKeyCall(provider, op string, d time.Duration, err error)
}

// Observe returns mk with every call reported to obs under the provider
// name provider ("local", "aws-kms", "pkcs11"). It has mk's ID; it does not close
// mk (close mk itself). A nil obs returns mk unchanged.
func Observe(mk MasterKey, provider string, obs CallObserver) MasterKey {
	if obs == nil {
		return mk
	}
	return &observed{mk: mk, provider: provider, obs: obs}
}

// observed is a MasterKey that times each call of the one it wraps.
type observed struct {
	mk       MasterKey
	provider string
	obs      CallObserver
}

func (o *observed) ID() string { return o.mk.ID() }

func (o *observed) GenerateDataKey(ctx context.Context, ref KeyRef, size int) ([]byte, []byte, error) {
	start := time.Now()
	pt, wrapped, err := o.mk.GenerateDataKey(ctx, ref, size)
	o.obs.ObserveMasterKeyCall(o.provider, "generate_data_key", time.Since(start), err)
	return pt, wrapped, err
}

func (o *observed) Unwrap(ctx context.Context, ref KeyRef, wrapped []byte) ([]byte, error) {
	start := time.Now()
	pt, err := o.mk.Unwrap(ctx, ref, wrapped)
	o.obs.ObserveMasterKeyCall(o.provider, "unwrap", time.Since(start), err)
	return pt, err
}

func (o *observed) Wrap(ctx context.Context, ref KeyRef, plaintext []byte) ([]byte, error) {
	start := time.Now()
	wrapped, err := o.mk.Wrap(ctx, ref, plaintext)
	o.obs.ObserveMasterKeyCall(o.provider, "wrap", time.Since(start), err)
	return wrapped, err
}
