package blocking

import (
	"context"
	"sync"
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

func TestLock(t *testing.T) {
	announced := make(chan struct{}, 2)
	ctx := WithHook(context.Background(), func() { announced <- struct{}{} })
	var mu sync.Mutex
	Lock(ctx, &mu) // free: no announcement
	if len(announced) != 0 {
		t.Fatal("announced a wait for a free lock")
	}
	done := make(chan struct{})
	go func() {
		Lock(ctx, &mu) // held: announced, then waits
		mu.Unlock()
		close(done)
	}()
	<-announced
	select {
	case <-done:
		t.Fatal("took a held lock")
	default:
	}
	mu.Unlock()
	<-done
	if len(announced) != 0 {
		t.Fatal("announced more than once")
	}
}
