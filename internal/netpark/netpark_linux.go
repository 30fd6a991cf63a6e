package netpark

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Park after Close.
var ErrClosed = errors.New("netpark: poller closed")

// Poller waits for parked sockets to become readable. Create it with
// [New]; it runs one goroutine until [Poller.Close].
type Poller struct {
	epfd int
	f    *os.File // epfd, waited on through the runtime's netpoller
	rc   syscall.RawConn
	done chan struct{}

	mu     sync.Mutex
	next   uint64
	parked map[uint64]*Handle
	closed bool
}

// Handle is one parked socket; see [Handle.Unpark].
type Handle struct {
	p     *Poller
	fd    int
	token uint64
	wake  func()
}

// New starts a poller.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpark: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("netpark: set non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "netpark-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("netpark: %w", err)
	}
	p := &Poller{epfd: epfd, f: f, rc: rc, done: make(chan struct{}), parked: make(map[uint64]*Handle)}
	go p.loop()
	return p, nil
}

// Park registers the socket of c: when it becomes readable, is hung up or
// fails, wake is called once, from the poller's goroutine (it must not
// block; normally it starts a goroutine), unless [Handle.Unpark] took the
// registration back first. Readiness at the time of the call counts: data
// already waiting wakes at once.
//
// The caller must not close the socket while it is parked: Unpark first.
func (p *Poller) Park(c syscall.Conn, wake func()) (*Handle, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netpark: %w", err)
	}
	var h *Handle
	var perr error
	cerr := rc.Control(func(fd uintptr) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			perr = ErrClosed
			return
		}
		p.next++
		h = &Handle{p: p, fd: int(fd), token: p.next, wake: wake}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
		setToken(&ev, h.token)
		if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, h.fd, &ev); err != nil {
			perr = fmt.Errorf("netpark: epoll_ctl add: %w", err)
			h = nil
			return
		}
		p.parked[h.token] = h
	})
	if cerr != nil {
		return nil, fmt.Errorf("netpark: %w", cerr)
	}
	if perr != nil {
		return nil, perr
	}
	return h, nil
}

// Unpark takes the registration back and calls wake itself, unless the
// poller has already taken it (then the poller calls or has called wake).
// Either way wake runs exactly once per Park. It reports whether it woke
// the socket itself. When Unpark returns, the socket is no longer
// registered and may be closed.
func (h *Handle) Unpark() bool {
	if !h.p.remove(h.token) {
		return false
	}
	h.wake()
	return true
}

// remove unregisters token; it reports whether it was still registered.
func (p *Poller) remove(token uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.parked[token]
	if !ok {
		return false
	}
	delete(p.parked, token)
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, h.fd, nil)
	return true
}

func (p *Poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 64)
	for {
		var n int
		var werr error
		err := p.rc.Read(func(fd uintptr) bool {
			for {
				n, werr = unix.EpollWait(int(fd), events, 0)
				if werr == unix.EINTR {
					continue
				}
				return werr != nil || n > 0
			}
		})
		if err != nil || werr != nil {
			return // closed
		}
		for i := range events[:n] {
			tok := token(&events[i])
			p.mu.Lock()
			h, ok := p.parked[tok]
			if ok {
				delete(p.parked, tok)
				_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, h.fd, nil)
			}
			p.mu.Unlock()
			if ok {
				h.wake()
			}
		}
	}
}

// Close stops the poller. Sockets still parked are woken (their wake is
// called) so that nothing stays parked forever. Park fails afterwards.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	hs := make([]*Handle, 0, len(p.parked))
	for tok, h := range p.parked {
		delete(p.parked, tok)
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, h.fd, nil)
		hs = append(hs, h)
	}
	p.mu.Unlock()
	for _, h := range hs {
		h.wake()
	}
	err := p.f.Close()
	<-p.done
	return err
}

// Len returns the number of parked sockets.
func (p *Poller) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// The token rides in the event's 64-bit data field (Fd and Pad). A token
// is never reused, so an event already returned by EpollWait for a
// registration that Unpark took back finds nothing.
func setToken(ev *unix.EpollEvent, t uint64) {
	ev.Fd = int32(uint32(t))
	ev.Pad = int32(uint32(t >> 32))
}

func token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
