package agents

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// procStat is what vigil reads of /proc/PID/stat.
type procStat struct {
	state byte   // R, S, D, Z, T, ...
	pgrp  int    // process group
	start uint64 // start time in clock ticks after boot: with the pid, it names one process
}

// zombie reports a process that has exited and waits to be reaped.
func (s procStat) zombie() bool { return s.state == 'Z' || s.state == 'X' || s.state == 'x' }

// readStat reads /proc/PID/stat. The error is os.ErrNotExist when there is
// no such process.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return procStat{}, os.ErrNotExist
		}
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat parses the fields vigil needs. The command name (field 2) may
// hold spaces and parentheses, so fields are counted after the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed /proc stat line %q", b)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("malformed /proc stat line %q", b)
	}
	pgrp, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return procStat{}, fmt.Errorf("malformed pgrp in /proc stat line: %v", err)
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed starttime in /proc stat line: %v", err)
	}
	return procStat{state: f[0][0], pgrp: pgrp, start: start}, nil
}

// groupLive counts the live (not zombie) processes of process group pgid.
func groupLive(pgid int) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		if st.pgrp == pgid && !st.zombie() {
			n++
		}
	}
	return n
}
