package kms_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/crypto/kms"
)

// callLog records the calls an observer is told of.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (c *callLog) ObserveMasterKeyCall(provider, op string, d time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := provider + " " + op
	if err != nil {
		s += " failed"
	}
	if d < 0 {
		s += " negative duration"
	}
	c.calls = append(c.calls, s)
}

func TestObserve(t *testing.T) {
	local, err := kms.NewLocal(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if kms.Observe(local, "local", nil) != kms.MasterKey(local) {
		t.Error("Observe with no observer wrapped the key")
	}
	log := &callLog{}
	mk := kms.Observe(local, "local", log)
	if mk.ID() != local.ID() {
		t.Errorf("ID %q, want %q", mk.ID(), local.ID())
	}
	ctx := context.Background()
	ref := kms.KeyRef{Name: "users.email", Version: 1}
	pt, wrapped, err := mk.GenerateDataKey(ctx, ref, 32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mk.Wrap(ctx, ref, pt); err != nil {
		t.Fatal(err)
	}
	got, err := mk.Unwrap(ctx, ref, wrapped)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Unwrap: %v", err)
	}
	if _, err := mk.Unwrap(ctx, kms.KeyRef{Name: "other", Version: 1}, wrapped); !errors.Is(err, kms.ErrUnwrap) {
		t.Fatalf("Unwrap under another ref: %v", err)
	}
	want := []string{"local generate_data_key", "local wrap", "local unwrap", "local unwrap failed"}
	if !slices.Equal(log.calls, want) {
		t.Errorf("observed %q, want %q", log.calls, want)
	}
}
