package agent

import (
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// systemd speaks sd_notify(3) to the service manager when the agent runs
// under systemd (Type=notify): READY=1 once the agent serves its API, its
// state in STATUS=, STOPPING=1 when it stops, and WATCHDOG=1 from the main
// loop when the unit sets WatchdogSec, so that a hung agent is restarted.
// Without NOTIFY_SOCKET every call does nothing.
type systemd struct {
	mu       sync.Mutex
	every    time.Duration // half the watchdog interval; 0 without one
	lastPet  time.Time     // guarded by mu
	lastNote string        // guarded by mu
}

func newSystemd() *systemd {
	s := &systemd{}
	if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
		s.every = d / 2
	}
	return s
}

func (s *systemd) notify(state string) { daemon.SdNotify(false, state) }

// ready says the agent serves its API.
func (s *systemd) ready(status string) {
	s.notify(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// status reports the agent state when it changes.
func (s *systemd) status(status string) {
	s.mu.Lock()
	changed := s.lastNote != status
	s.lastNote = status
	s.mu.Unlock()
	if changed {
		s.notify("STATUS=" + status)
	}
}

// pet is called from the main loop on every tick.
func (s *systemd) pet(now time.Time) {
	if s.every == 0 {
		return
	}
	s.mu.Lock()
	due := now.Sub(s.lastPet) >= s.every
	if due {
		s.lastPet = now
	}
	s.mu.Unlock()
	if due {
		s.notify(daemon.SdNotifyWatchdog)
	}
}

func (s *systemd) stopping() { s.notify(daemon.SdNotifyStopping) }
