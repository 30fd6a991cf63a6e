package blocking

import (
	"context"
	"testing"
)

func TestAnnounce(t *testing.T) {
	Announce(context.Background()) // no hook: nothing
	n := 0
	ctx := WithHook(context.Background(), func() { n++ })
	Announce(ctx)
	Announce(context.WithoutCancel(ctx))
	if n != 2 {
		t.Fatalf("hook ran %d times, want 2", n)
	}
	Announce(Without(ctx))
	if n != 2 {
		t.Fatal("Without kept the hook")
	}
	if bg := context.Background(); Without(bg) != bg {
		t.Fatal("Without copied a context without a hook")
	}
}
