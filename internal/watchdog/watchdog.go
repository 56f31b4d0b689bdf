// Package watchdog pets a Linux watchdog device (/dev/watchdog) for the
// agent, so that a member whose agent hangs (and so cannot abort its
// services when its lease ends) is reset by the hardware before the other
// members may start those services. It owns the device file and nothing
// else; the agent decides when to pet.
package watchdog

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Device is an open watchdog device.
type Device struct {
	f       *os.File
	timeout time.Duration
}

// Fits checks that a watchdog of timeout, petted every pet, resets a hung
// member before the director may move its services: the last pet can be up
// to one pet interval after the member's last renewal, and the director
// waits lease × drift after that renewal.
func Fits(timeout, pet, lease time.Duration, drift float64) error {
	limit := time.Duration(float64(lease)*drift) - pet
	if timeout+pet > limit {
		return fmt.Errorf("a watchdog timeout of %s cannot reset a hung member before its lease (%s × %.1f) ends: use a profile with a longer lease (campus or wan), or a device with a shorter timeout", timeout, lease, drift)
	}
	return nil
}

// Open opens the device and sets its timeout (whole seconds, as the
// kernel's interface takes). A regular file is accepted for tests: it gets
// the pets but no timeout.
func Open(path string, timeout time.Duration) (*Device, error) {
	secs := int(timeout / time.Second)
	if secs < 1 {
		return nil, fmt.Errorf("watchdog timeout %s is shorter than the 1 s a watchdog device counts in", timeout)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the watchdog %s: %w (is the driver loaded, e.g. softdog, and is no other program using it?)", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode()&os.ModeCharDevice != 0 {
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
			f.Close()
			return nil, fmt.Errorf("setting the watchdog timeout of %s to %ds: %w", path, secs, err)
		}
	}
	return &Device{f: f, timeout: time.Duration(secs) * time.Second}, nil
}

// Pet resets the device's countdown.
func (d *Device) Pet() error {
	_, err := d.f.Write([]byte{0})
	return err
}

// Close disarms the device (the "magic close": write V, then close) on a
// graceful stop, so the machine is not reset.
func (d *Device) Close() error {
	d.f.Write([]byte("V"))
	return d.f.Close()
}
