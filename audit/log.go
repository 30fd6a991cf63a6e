package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultBuffer       = 4096
	DefaultSyncInterval = time.Second
)

// maxBatch bounds the events appended in one write.
const maxBatch = 512

// Options configures a Log.
type Options struct {
	// Path is the audit file. Required.
	Path string
	// Key is the audit MAC key of version KeyVersion of KeyName (MACKey).
	Key        []byte
	KeyVersion uint32
	// Buffer is how many events may wait for the writer; Emit drops
	// (and counts) events beyond it. Zero: DefaultBuffer.
	Buffer int
	// SyncInterval is the longest time written events wait for an fsync.
	// Zero: DefaultSyncInterval.
	SyncInterval time.Duration
	// Logger is told of write failures (never of event contents). Nil
	// discards.
	Logger *slog.Logger
	// Now stamps events emitted without a time. Nil: time.Now.
	Now func() time.Time
}

// Log is an audit file written by one goroutine from a buffered channel.
// Emit is safe for concurrent use and never blocks.
type Log struct {
	ch      chan Event
	dropped atomic.Uint64
	now     func() time.Time
	log     *slog.Logger
	sync    time.Duration
	app     *appender
	seal    *sealer

	mu     sync.RWMutex // guards closed against Emit
	closed bool
	done   chan struct{}
	err    error // the last write error while writes fail, reported by Close
}

// Open opens (or creates) the audit file and starts its writer.
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, errors.New("audit: no file")
	}
	if len(opts.Key) != MACSize {
		return nil, fmt.Errorf("audit: MAC key of %d bytes, want %d", len(opts.Key), MACSize)
	}
	app, err := openAppender(opts.Path)
	if err != nil {
		return nil, err
	}
	l := &Log{ch: make(chan Event, cmpOr(opts.Buffer, DefaultBuffer)), now: opts.Now, log: opts.Logger,
		sync: cmpOr(opts.SyncInterval, DefaultSyncInterval), app: app, seal: newSealer(opts.Key, opts.KeyVersion),
		done: make(chan struct{})}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	go l.run()
	return l, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Emit queues e; when the buffer is full (or the Log closed) it drops e
// and counts it, and the next batch written starts with a dropped event.
func (l *Log) Emit(e Event) {
	if e.Time.IsZero() {
		e.Time = l.now().UTC()
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	select {
	case l.ch <- e:
	default:
		l.dropped.Add(1)
	}
}

// Dropped is how many events were dropped so far and not yet reported in
// a dropped event.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Close writes what is queued, fsyncs and closes the file. It returns the
// last write error, if any.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return l.err
	}
	l.closed = true
	close(l.ch)
	l.mu.Unlock()
	<-l.done
	if err := l.app.close(); err != nil && l.err == nil {
		l.err = err
	}
	return l.err
}

// run appends batches of events as they come and fsyncs at most every
// l.sync.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(l.sync)
	defer tick.Stop()
	batch := make([]Event, 0, maxBatch)
	var buf []byte
	for {
		select {
		case e, ok := <-l.ch:
			if !ok {
				l.write(l.dropEvent(batch[:0]), buf) // drops counted until the end
				return
			}
			batch = l.drain(append(l.dropEvent(batch[:0]), e))
			buf = l.write(batch, buf)
		case <-tick.C:
			if err := l.app.syncFile(); err != nil {
				l.fail(err)
			}
		}
	}
}

// dropEvent appends a dropped event to batch when events were dropped.
func (l *Log) dropEvent(batch []Event) []Event {
	if n := l.dropped.Swap(0); n > 0 {
		batch = append(batch, Event{Time: l.now().UTC(), Type: TypeDropped, Count: n})
	}
	return batch
}

// drain appends what else is queued, up to maxBatch.
func (l *Log) drain(batch []Event) []Event {
	for len(batch) < maxBatch {
		select {
		case e, ok := <-l.ch:
			if !ok {
				return batch
			}
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// write appends batch; on failure its events count as dropped.
func (l *Log) write(batch []Event, buf []byte) []byte {
	if len(batch) == 0 {
		return buf
	}
	buf, err := l.app.append(l.seal, batch, buf)
	if err == nil && l.err != nil {
		l.log.Info("audit file writable again", slog.Any("after", l.err))
		l.err = nil
	}
	if err != nil {
		n := uint64(len(batch))
		if batch[0].Type == TypeDropped {
			n += batch[0].Count - 1
		}
		l.dropped.Add(n)
		l.fail(err)
	}
	return buf
}

// fail records a write failure; it is logged once until a write
// succeeds again.
func (l *Log) fail(err error) {
	if l.err == nil {
		l.log.Error("audit file write failed; events are counted as dropped until a write succeeds", slog.Any("error", err))
	}
	l.err = err
}

// Append seals events after the end of the chain of the audit file at
// path and appends them synchronously, then fsyncs: the writer of short
// commands, which may run while serve's Log writes the same file.
func Append(path string, key []byte, kv uint32, events ...Event) error {
	if len(key) != MACSize {
		return fmt.Errorf("audit: MAC key of %d bytes, want %d", len(key), MACSize)
	}
	app, err := openAppender(path)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	for i := range events {
		if events[i].Time.IsZero() {
			events[i].Time = now
		}
	}
	_, err = app.append(newSealer(key, kv), events, nil)
	if cerr := app.close(); err == nil {
		err = cerr
	}
	return err
}
