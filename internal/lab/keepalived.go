package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// keepalivedConf is the comparison peer's configuration: one VRRP instance
// for the floating address with keepalived's defaults (advert_int 1,
// priority 100, preemption on), every member BACKUP at start; equal
// priorities elect the highest address.
func keepalivedConf(s *State, m *Member) string {
	return fmt.Sprintf(`global_defs {
    router_id %s
    enable_script_security
}
vrrp_instance web {
    state BACKUP
    interface eth%d
    virtual_router_id 51
    advert_int 1
    virtual_ipaddress {
        %s/24 dev eth%d
    }
}
`, m.Name, s.Public(), s.Floating(), s.Public())
}

// startKeepalived starts keepalived (VRRP only, in the foreground) and the
// HTTP backend in the member's namespace. keepalived needs the backend on
// every member all the time; vigil starts it with the service.
func (l *Lab) startKeepalived(name string) error {
	return l.withMember(name, func(s *State, m *Member) error {
		for _, p := range m.Daemons {
			if alive(p) {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		m.Daemons = nil
		conf := filepath.Join(m.Home, "keepalived.conf")
		if err := os.WriteFile(conf, []byte(keepalivedConf(s, m)), 0o644); err != nil {
			return err
		}
		pid, err := l.spawn(m, "keepalived.log", "keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
			"--use-file", conf, "--pid", filepath.Join(m.Home, "keepalived.pid"), "--vrrp_pid", filepath.Join(m.Home, "keepalived-vrrp.pid"))
		if err != nil {
			return fmt.Errorf("starting keepalived on %s: %v", m.Name, err)
		}
		m.Daemons = append(m.Daemons, pid)
		pid, err = l.spawn(m, "httpd.log", s.LabBin, "httpd")
		if err != nil {
			return fmt.Errorf("starting the HTTP backend on %s: %v", m.Name, err)
		}
		m.Daemons = append(m.Daemons, pid)
		l.logf("%s: keepalived and httpd started", m.Name)
		return nil
	})
}

// Holder returns the member whose namespace holds the floating address, or
// "" when none does.
func (l *Lab) Holder() (string, error) {
	s, err := l.State()
	if err != nil {
		return "", err
	}
	for _, m := range s.Members {
		if !m.On {
			continue
		}
		out, err := l.output("ip", "-n", m.NS, "-o", "-4", "addr", "show", "dev", fmt.Sprintf("eth%d", s.Public()))
		if err != nil {
			continue
		}
		if strings.Contains(out, " "+s.Floating()+"/") {
			return m.Name, nil
		}
	}
	return "", nil
}
