package server

import (
	"time"
)

// stream is the peer loop over Links (Config.Dial): batches go out as
// messages come, up to Window unacknowledged; the acks come back in order.
// When a Link fails, asks for a batch again (AckRetry) or stays silent for
// AckTimeout, it is closed and a new one sends every unacknowledged batch
// again, oldest first (go-back-N: the receiver applies each number once, in
// order).
func (p *peer) stream() {
	s := p.s
	type result struct {
		ack Ack
		err error
	}
	var (
		next    uint64 = 1
		unacked []*Batch
		wait    = retryMin
		timer   = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	for {
		link, err := s.cfg.Dial(s.ctx, p.name)
		if err != nil {
			p.countRetry()
			if !p.sleep(&wait) {
				return
			}
			continue
		}
		acks := make(chan result, s.cfg.Window+1)
		go func() {
			for {
				a, err := link.Recv()
				acks <- result{a, err}
				if err != nil {
					return
				}
			}
		}()
		ok := true
		for _, b := range unacked {
			if link.Send(b) != nil {
				ok = false
				break
			}
		}
		sentAt := time.Now()
		for ok {
			for len(unacked) < s.cfg.Window {
				msgs, live := p.take(s.cfg.MaxBatch)
				if !live {
					link.Close()
					return
				}
				if len(msgs) == 0 {
					break
				}
				b := &Batch{From: s.self, FromInc: p.from, To: p.name, ToInc: p.inc, Stream: p.sid, Seq: next, Msgs: msgs}
				next++
				if len(unacked) == 0 {
					sentAt = time.Now()
				}
				unacked = append(unacked, b)
				if link.Send(b) != nil {
					ok = false
					break
				}
			}
			if !ok {
				break
			}
			var expire <-chan time.Time
			if len(unacked) > 0 {
				timer.Reset(max(s.cfg.AckTimeout-time.Since(sentAt), time.Millisecond))
				expire = timer.C
			}
			select {
			case <-p.wake:
			case <-p.done:
				link.Close()
				return
			case <-expire:
				s.log.Debug("dlm: a peer's stream is silent: dialing again", "peer", p.name, "unacked", len(unacked))
				ok = false
			case r := <-acks:
				switch {
				case r.err != nil:
					ok = false
				case r.ack.Code == AckGone:
					s.log.Warn("dlm: peer restarted: its stream is dropped until the next view", "peer", p.name, "why", r.ack.Msg)
					link.Close()
					s.mu.Lock()
					s.stats.Dropped += uint64(countMsgs(unacked)) + uint64(p.stop())
					s.mu.Unlock()
					return
				case r.ack.Code == AckRetry:
					ok = false
				default:
					n := 0
					for n < len(unacked) && unacked[n].Seq <= r.ack.Seq {
						n++
					}
					s.mu.Lock()
					s.stats.BatchesSent += uint64(n)
					s.stats.MessagesSent += uint64(countMsgs(unacked[:n]))
					s.mu.Unlock()
					unacked = unacked[n:]
					sentAt = time.Now()
					wait = retryMin
				}
			}
			if expire != nil && !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		link.Close()
		p.countRetry()
		if !p.sleep(&wait) {
			return
		}
	}
}

func countMsgs(bs []*Batch) int {
	n := 0
	for _, b := range bs {
		n += len(b.Msgs)
	}
	return n
}

func (p *peer) countRetry() {
	p.s.mu.Lock()
	p.s.stats.Retries++
	p.s.mu.Unlock()
}

// sleep waits *wait (doubling it, up to retryMax); false when the stream
// ended meanwhile.
func (p *peer) sleep(wait *time.Duration) bool {
	t := time.NewTimer(*wait)
	defer t.Stop()
	*wait = min(2**wait, retryMax)
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}
