package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// waitSocket polls until the child has created the unix socket sock and
// ping succeeds. It returns the child's exit if it dies first, or ctx's
// end with the last error seen.
func (c *child) waitSocket(ctx context.Context, sock string, ping func(context.Context) error) error {
	var lastErr error = errors.New("socket not created")
	for {
		if exited, err := c.exitErr(); exited {
			return err
		}
		if _, err := os.Stat(sock); err == nil {
			if lastErr = ping(ctx); lastErr == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
		case <-time.After(25 * time.Millisecond):
		}
	}
}
