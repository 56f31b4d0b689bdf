package client

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestLocks(t *testing.T) {
	dir, err := os.MkdirTemp("", "vigil")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" || r.URL.Path != "/v1/locks" {
			http.Error(w, `{"code":"not_found","message":"no such path"}`, http.StatusNotFound)
			return
		}
		w.Write([]byte(`[{"member":"m1","view":3,"members":["m1","m2"],"recovering":false,"quorum":true,"out":false,
			"mastered":[{"lock":"m2#4","lockspace":"default","resource":["db"],"owner":"m2/1","queue":"granted","granted":"EX","token":7,"master":"m1"}],
			"held":[]},{"member":"m2","view":3,"members":null,"recovering":false,"quorum":false,"out":false,"error":"timeout","mastered":null,"held":null}]`))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c := New(Options{Socket: sock})
	defer c.Close()
	got, err := c.Locks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []LockTable{
		{Member: "m1", View: 3, Members: []string{"m1", "m2"}, Quorum: true, Held: []LockInfo{},
			Mastered: []LockInfo{{Lock: "m2#4", Lockspace: "default", Resource: []string{"db"}, Owner: "m2/1", Queue: "granted", Granted: "EX", Token: 7, Master: "m1"}}},
		{Member: "m2", View: 3, Error: "timeout"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}
