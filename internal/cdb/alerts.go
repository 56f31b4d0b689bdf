package cdb

import (
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vigil-cluster/vigil/client"
	"github.com/vigil-cluster/vigil/internal/config"
)

// Limits on alerts.
const (
	MaxAlerts       = 32
	MaxAlertTimeout = 10 * time.Minute
	// DefaultAlertTimeout is an alert's timeout when it names none.
	DefaultAlertTimeout = 30 * time.Second
)

// CheckAlert validates an alert agent's definition.
func CheckAlert(a *client.Alert) error {
	if err := config.ValidName("alert name", a.Name); err != nil {
		return refuse(ErrInvalid, "%v", err)
	}
	if !filepath.IsAbs(a.Path) || len(a.Path) > 4096 || strings.ContainsAny(a.Path, "\x00\n") {
		return refuse(ErrInvalid, "alert %s: path %q must be an absolute path to an executable, the same on every member", a.Name, a.Path)
	}
	for _, k := range a.Kinds {
		if !slices.Contains(client.EventKinds, k) {
			return refuse(ErrInvalid, "alert %s: event kind %q is not known: use some of %s", a.Name, k, strings.Join(client.EventKinds, ", "))
		}
	}
	if _, err := AlertTimeout(a); err != nil {
		return err
	}
	if len(a.Recipient) > 1024 || strings.ContainsAny(a.Recipient, "\x00\n") {
		return refuse(ErrInvalid, "alert %s: the recipient must be one line of at most 1024 bytes", a.Name)
	}
	return nil
}

// AlertTimeout is an alert's timeout.
func AlertTimeout(a *client.Alert) (time.Duration, error) {
	if a.Timeout == "" {
		return DefaultAlertTimeout, nil
	}
	d, err := time.ParseDuration(a.Timeout)
	if err != nil || d < time.Second || d > MaxAlertTimeout {
		return 0, refuse(ErrInvalid, "alert %s: timeout %q must be a duration from 1s to %s, such as 30s", a.Name, a.Timeout, MaxAlertTimeout)
	}
	return d, nil
}

// Selects reports whether the alert is run for an event of the kind. Alert
// events (an alert failed) go only to alerts that ask for them by name, so
// that a failing alert does not feed itself.
func Selects(a *client.Alert, kind string) bool {
	if len(a.Kinds) == 0 {
		return kind != client.EventAlert
	}
	return slices.Contains(a.Kinds, kind)
}
