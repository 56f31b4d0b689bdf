package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-cluster/vigil/internal/lab"
)

// The lab starts workers with DLMWorkerOptions.Args: the command must read
// them back as the same options.
func TestDLMWorkerArgs(t *testing.T) {
	defaults := func(o lab.DLMWorkerOptions) lab.DLMWorkerOptions {
		if o.Modes == nil {
			o.Modes = []string{"EX", "PR"}
		}
		if o.MinOps == 0 {
			o.MinOps, o.MaxOps = 1, 3
		}
		if o.GapMin == 0 {
			o.GapMin, o.GapMax = 10*time.Millisecond, 50*time.Millisecond
		}
		if o.Timeout == 0 {
			o.Timeout = 5 * time.Second
		}
		return o
	}
	for _, want := range []lab.DLMWorkerOptions{
		{Socket: "/l/m1/data/dlm.sock", Store: "http://198.18.0.2:7100", Member: "m1", Client: "m1/w1.1", Resources: []string{"r1", "r2"},
			Log: "/l/chaos/dlm/m1-w1.1.log", Seed: 42},
		{Socket: "s", Store: "u", Member: "m2", Client: "c", Resources: []string{"f1"}, Modes: []string{"EX"}, MinOps: 400, MaxOps: 400,
			GapMin: 50 * time.Millisecond, GapMax: 50 * time.Millisecond, Timeout: 30 * time.Second, IgnoreLost: true, Log: "l", Seed: 1 << 63},
	} {
		args := want.Args()
		if args[0] != "dlmworker" {
			t.Fatalf("args %q do not start with the command", args)
		}
		c := &cobra.Command{}
		get := workerFlags(c)
		if err := c.ParseFlags(args[1:]); err != nil {
			t.Fatal(err)
		}
		if got := get(); !reflect.DeepEqual(got, defaults(want)) {
			t.Errorf("%q read back as\n%+v\nwant\n%+v", args, got, defaults(want))
		}
	}
}
