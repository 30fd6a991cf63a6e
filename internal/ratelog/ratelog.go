package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults for zero Options fields.
const (
	DefaultBurst    = 10
	DefaultInterval = time.Second
	DefaultReport   = 10 * time.Second
)

// SuppressedMessage is the message of a summary record.
const SuppressedMessage = "suppressed similar log messages"

// Options tune a [Handler]; zero fields take the defaults.
type Options struct {
	// Burst is how many records of one message pass before limiting.
	Burst int
	// Interval is the pace, one record per Interval, after the burst.
	Interval time.Duration
	// Report is how often held-back counts are logged.
	Report time.Duration
}

// Handler rate-limits the records it passes to its inner handler. It is
// safe for concurrent use; handlers derived with WithAttrs and WithGroup
// share their parent's buckets.
type Handler struct {
	inner slog.Handler
	st    *state
}

// New returns a Handler that rate-limits records to h.
func New(h slog.Handler, o Options) *Handler {
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Report <= 0 {
		o.Report = DefaultReport
	}
	return &Handler{inner: h, st: &state{opts: o, root: h, buckets: make(map[key]*bucket)}}
}

type key struct {
	level slog.Level
	msg   string
}

// bucket is the token bucket of one message.
type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

type state struct {
	opts Options
	root slog.Handler // summaries go here

	mu      sync.Mutex
	buckets map[key]*bucket
	timer   *time.Timer
	armed   bool
}

// Enabled reports whether the inner handler handles level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle passes r on unless its message is over its rate.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if !h.st.allow(key{r.Level, r.Message}) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a Handler sharing h's buckets.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), st: h.st}
}

// WithGroup returns a Handler sharing h's buckets.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), st: h.st}
}

func (s *state) allow(k key) bool {
	now := time.Now()
	burst := float64(s.opts.Burst)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[k]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		s.buckets[k] = b
	} else {
		b.tokens = min(burst, b.tokens+float64(now.Sub(b.last))/float64(s.opts.Interval))
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	b.suppressed++
	if !s.armed {
		s.armed = true
		if s.timer == nil {
			s.timer = time.AfterFunc(s.opts.Report, s.report)
		} else {
			s.timer.Reset(s.opts.Report)
		}
	}
	return false
}

// report logs the held-back counts and forgets buckets that are full
// again. It re-arms itself while anything was held back.
func (s *state) report() {
	type line struct {
		k key
		n int
	}
	var lines []line
	now := time.Now()
	burst := float64(s.opts.Burst)
	s.mu.Lock()
	for k, b := range s.buckets {
		if b.suppressed > 0 {
			lines = append(lines, line{k, b.suppressed})
			b.suppressed = 0
			continue
		}
		if b.tokens+float64(now.Sub(b.last))/float64(s.opts.Interval) >= burst {
			delete(s.buckets, k)
		}
	}
	s.armed = len(lines) > 0
	if s.armed {
		s.timer.Reset(s.opts.Report)
	}
	s.mu.Unlock()
	ctx := context.Background()
	for _, l := range lines {
		if !s.root.Enabled(ctx, l.k.level) {
			continue
		}
		r := slog.NewRecord(now, l.k.level, SuppressedMessage, 0)
		r.AddAttrs(slog.String("message", l.k.msg), slog.Int("count", l.n), slog.Duration("period", s.opts.Report))
		_ = s.root.Handle(ctx, r)
	}
}
