package server

import (
	"sync"
	"time"

	"github.com/vigil-cluster/vigil/internal/dlm/cluster"
)

// Backoff between attempts to send a batch again.
const (
	retryMin = time.Millisecond
	retryMax = 100 * time.Millisecond
)

// peer is the stream of messages to one incarnation of another member.
type peer struct {
	s    *Server
	name string
	inc  uint64 // the peer's incarnation
	from uint64 // this member's incarnation when the stream started
	sid  uint64 // this stream's number (Batch.Stream)

	mu      sync.Mutex
	queue   []cluster.Message // guarded by mu: not yet in a batch
	stopped bool              // guarded by mu
	wake    chan struct{}
	done    chan struct{}
}

// startPeer starts the stream to name at inc. Called with s.mu held.
func (s *Server) startPeer(name string, inc uint64) *peer {
	s.streams++
	p := &peer{s: s, name: name, inc: inc, from: s.inc.Load(), sid: s.streams, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.wg.Add(1)
	go p.run()
	return p
}

// push queues m. Called with s.mu held; never blocks.
func (p *peer) push(m cluster.Message) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.queue = append(p.queue, m)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// stop ends the stream and returns how many messages it dropped.
func (p *peer) stop() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return 0
	}
	p.stopped = true
	close(p.done)
	n := len(p.queue)
	p.queue = nil
	return n
}

func (p *peer) take(max int) ([]cluster.Message, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, false
	}
	if len(p.queue) == 0 {
		return nil, true
	}
	n := min(len(p.queue), max)
	out := p.queue[:n:n]
	if n == len(p.queue) {
		p.queue = nil
	} else {
		p.queue = p.queue[n:]
	}
	return out, true
}

func (p *peer) run() {
	defer p.s.wg.Done()
	if p.s.cfg.Dial != nil {
		p.stream()
		return
	}
	var seq uint64
	for {
		msgs, ok := p.take(p.s.cfg.MaxBatch)
		if !ok {
			return
		}
		if len(msgs) == 0 {
			select {
			case <-p.wake:
				continue
			case <-p.done:
				return
			}
		}
		seq++
		b := &Batch{From: p.s.self, FromInc: p.from, To: p.name, ToInc: p.inc, Stream: p.sid, Seq: seq, Msgs: msgs}
		if !p.deliver(b) {
			return
		}
	}
}

// deliver sends b until the peer takes it; false when the stream ended.
func (p *peer) deliver(b *Batch) bool {
	wait := retryMin
	for attempt := 0; ; attempt++ {
		ack, err := p.s.cfg.Send(p.s.ctx, b)
		switch {
		case err == nil && ack.Code == AckOK:
			p.s.mu.Lock()
			p.s.stats.BatchesSent++
			p.s.stats.MessagesSent += uint64(len(b.Msgs))
			p.s.mu.Unlock()
			return true
		case err == nil && ack.Code == AckGone:
			p.s.log.Warn("dlm: peer restarted: its stream is dropped until the next view", "peer", p.name, "why", ack.Msg)
			p.s.mu.Lock()
			p.s.stats.Dropped += uint64(len(b.Msgs)) + uint64(p.stop())
			p.s.mu.Unlock()
			return false
		}
		p.s.mu.Lock()
		p.s.stats.Retries++
		p.s.mu.Unlock()
		if attempt == 20 {
			why := ack.Msg
			if err != nil {
				why = err.Error()
			}
			p.s.log.Warn("dlm: a peer does not take its messages yet; still trying", "peer", p.name, "batch", b.Seq, "why", why)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.done:
			t.Stop()
			return false
		}
		wait = min(2*wait, retryMax)
	}
}
