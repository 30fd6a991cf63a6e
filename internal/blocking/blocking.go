// Package blocking lets code that is about to wait tell whoever runs it,
// through its context.
//
// A session's hooks run on an event loop that many sessions share, and
// they must not wait there. Almost always they do not; on a rare path (a
// cache miss that needs a query or a key service, the answer to a query
// the proxy injected) they must. Such code calls [Announce] with the
// context it was given just before it waits; the relay that runs the
// hook installs, with [WithHook], the function that moves the session's
// work off the loop. Off a loop, and for contexts without a hook,
// Announce does nothing.
//
// It owns only the context key; it must not import any dbproxy package.
package blocking

import (
	"context"
	"sync"
)

type hookKey struct{}

// WithHook returns a copy of ctx in which Announce calls f.
func WithHook(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, hookKey{}, f)
}

// Announce says that the caller is about to wait (for I/O, another
// goroutine or a lock held across I/O). Call it on the wait's path only,
// not on every call: it looks up the context.
func Announce(ctx context.Context) {
	if ctx == nil {
		return
	}
	if f, ok := ctx.Value(hookKey{}).(func()); ok {
		f()
	}
}

// Without returns a copy of ctx in which Announce does nothing: for work
// handed to a goroutine of its own, which may wait freely.
func Without(ctx context.Context) context.Context {
	if ctx.Value(hookKey{}) == nil {
		return ctx
	}
	return context.WithValue(ctx, hookKey{}, nil)
}

// Lock locks mu, announcing a wait first if it is taken: its holder may
// be waiting itself (off a loop, for I/O).
func Lock(ctx context.Context, mu *sync.Mutex) {
	if !mu.TryLock() {
		Announce(ctx)
		mu.Lock()
	}
}
