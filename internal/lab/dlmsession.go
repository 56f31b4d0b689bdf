package lab

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/dlmclient"
)

// dlmLockspace is the lockspace of the lab's lock workload.
const dlmLockspace = "lab"

// clientSession is a dlmSession on dlmclient: a session on the agent's
// socket. A goroutine per granted lock turns the lock's Lost channel into
// a note, until the lock is released or the session closes.
type clientSession struct {
	c     *dlmclient.Client
	lost  chan dlmLostNote
	done  chan struct{} // closed by Close
	wg    sync.WaitGroup
	close sync.Once
}

type clientLock struct {
	l        *dlmclient.Lock
	unlocked chan struct{} // closed when Unlock returns
	once     sync.Once
}

// dialDLM opens a session with the lock manager on socket.
func dialDLM(ctx context.Context, socket string) (dlmSession, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := dlmclient.Dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	return &clientSession{c: c, lost: make(chan dlmLostNote, 16), done: make(chan struct{})}, nil
}

func (s *clientSession) Lock(ctx context.Context, resource string, ex bool) (dlmHeld, error) {
	mode := dlmclient.PR
	if ex {
		mode = dlmclient.EX
	}
	l, err := s.c.Lock(ctx, resource, mode, dlmclient.Lockspace(dlmLockspace))
	if err != nil {
		return nil, err
	}
	h := &clientLock{l: l, unlocked: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		lost := l.Lost()
		select {
		case <-lost:
		case <-h.unlocked:
			select {
			case <-lost: // the unlock failed because the lock was lost
			default:
				return
			}
		case <-s.done:
			return
		}
		n := dlmLostNote{Lock: l.ID().String(), Resource: resource, Token: l.Token(), Err: "lost"}
		if err := l.Err(); err != nil {
			n.Err = err.Error()
		}
		select {
		case s.lost <- n: // room in the buffer: even if the session is closing
		default:
			select {
			case s.lost <- n:
			case <-s.done:
			}
		}
	}()
	return h, nil
}

func (s *clientSession) Lost() <-chan dlmLostNote { return s.lost }

func (s *clientSession) Close() error {
	var err error
	s.close.Do(func() {
		err = s.c.Close()
		close(s.done)
		s.wg.Wait()
		close(s.lost)
	})
	return err
}

func (h *clientLock) ID() string    { return h.l.ID().String() }
func (h *clientLock) Token() uint64 { return h.l.Token() }

func (h *clientLock) Unlock(ctx context.Context) error {
	err := h.l.Unlock(ctx)
	h.once.Do(func() { close(h.unlocked) })
	return err
}
