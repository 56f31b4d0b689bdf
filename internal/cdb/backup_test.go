package cdb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// backupState is a state with something in every part.
func backupState(t *testing.T) *State {
	t.Helper()
	s := newInit(t)
	mustApply(t, s, tokenCmd("t2", "s", "m2", t0.Add(time.Hour)))
	mustApply(t, s, joinCmd(t0, "t2", "s", "m2", 0))
	mustApply(t, s, settingsCmd(map[string]string{"description": "prod", "user.a": "1"}))
	s.Index = 42
	return s
}

func TestBackupRoundTrip(t *testing.T) {
	s := backupState(t)
	now := time.Date(2025, 3, 2, 0, 0, 0, 0, time.FixedZone("x", 3600))
	data, err := EncodeBackup(s, now)
	if err != nil {
		t.Fatal(err)
	}
	b, got, err := DecodeBackup(data)
	if err != nil {
		t.Fatalf("DecodeBackup of a fresh backup: %v", err)
	}
	if b.Format != BackupFormat || b.Version != BackupVersion || b.Cluster != "c1" || b.ClusterID != "id-c1" || b.Index != 42 {
		t.Fatalf("header = %+v", b)
	}
	if !b.Created.Equal(now) || b.Created.Location() != time.UTC {
		t.Fatalf("created = %v, want %v in UTC", b.Created, now)
	}
	if dump(t, got) != dump(t, s) {
		t.Fatalf("state changed in the round trip:\n%s\n%s", dump(t, got), dump(t, s))
	}
	// The file is meant to be read: indented, one field a line.
	if !bytes.Contains(data, []byte("\n  \"state\": {\n")) {
		t.Fatalf("backup is not indented:\n%.300s", data)
	}
	// White space does not count: a file re-indented by a tool restores.
	if _, _, err := DecodeBackup(reenvelope(t, data, false, func(*Backup) {})); err != nil {
		t.Fatalf("compacted backup refused: %v", err)
	}
	// An empty state backs up and restores too, with usable maps.
	e := NewState()
	e.Cluster = Cluster{Name: "c1", ID: "id-c1"}
	e.Tokens, e.Settings = nil, nil
	data, err = EncodeBackup(e, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err = DecodeBackup(data); err != nil || got.Tokens == nil || got.Settings == nil || got.Members == nil {
		t.Fatalf("empty state: %v, %+v", err, got)
	}
}

// reenvelope rewrites a backup (its state made compact) with f and, when
// fixSum, makes the checksum match the (maybe changed) state again.
func reenvelope(t *testing.T, data []byte, fixSum bool, f func(*Backup)) []byte {
	t.Helper()
	var b Backup
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b.State); err != nil {
		t.Fatal(err)
	}
	b.State = compact.Bytes()
	f(&b)
	if fixSum {
		sum := sha256.Sum256(b.State)
		b.SHA256 = hex.EncodeToString(sum[:])
	}
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecodeBackupRefuses(t *testing.T) {
	s := backupState(t)
	good, err := EncodeBackup(s, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want []string
	}{
		{"flipped byte in state", func() []byte {
			// Change a letter inside the state's JSON, so it still decodes.
			i := bytes.Index(good, []byte(`"prod"`))
			d := bytes.Clone(good)
			d[i+1] = 'P'
			return d
		}(), []string{"corrupt", "checksum"}},
		{"truncated", good[:len(good)/2], []string{"not a vigil backup", "does not decode"}},
		{"state changed, header not", reenvelope(t, good, false, func(b *Backup) {
			b.State = bytes.Replace(b.State, []byte(`"m2"`), []byte(`"m3"`), 1)
		}), []string{"corrupt", "checksum"}},
		{"wrong format", reenvelope(t, good, false, func(b *Backup) { b.Format = "etcd-snapshot" }), []string{"not a vigil backup", `"etcd-snapshot"`}},
		{"no format", []byte(`{}`), []string{"not a vigil backup", `format ""`}},
		{"future version", reenvelope(t, good, false, func(b *Backup) { b.Version = BackupVersion + 1 }), []string{"version 2 is not supported", "newer vigil"}},
		{"version zero", reenvelope(t, good, false, func(b *Backup) { b.Version = 0 }), []string{"version 0 is not supported"}},
		{"unknown header field", bytes.Replace(good, []byte(`"format"`), []byte(`"extra": 1, "format"`), 1), []string{"not a vigil backup", "extra"}},
		{"unknown state field", reenvelope(t, good, true, func(b *Backup) {
			b.State = bytes.Replace(b.State, []byte(`{"cluster"`), []byte(`{"frobnicators":{},"cluster"`), 1)
		}), []string{"corrupt", "state does not decode", "frobnicators"}},
		{"wrong type in state", reenvelope(t, good, true, func(b *Backup) {
			b.State = bytes.Replace(b.State, []byte(`"index":42`), []byte(`"index":"42"`), 1)
		}), []string{"corrupt", "state does not decode"}},
		{"header names another cluster", reenvelope(t, good, false, func(b *Backup) { b.ClusterID = "id-other" }), []string{"corrupt", "header names cluster c1 (id-other)", "state is of c1 (id-c1)"}},
		{"header names another cluster name", reenvelope(t, good, false, func(b *Backup) { b.Cluster = "c2" }), []string{"corrupt", "header names cluster c2"}},
		{"not json", []byte("SQLite format 3\x00"), []string{"not a vigil backup", "does not decode"}},
		{"empty", nil, []string{"not a vigil backup"}},
		{"array", []byte(`[1,2]`), []string{"not a vigil backup"}},
		{"oversized", append(bytes.Repeat([]byte(" "), MaxBackupSize), good...), []string{"larger than the 67108864-byte limit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, st, err := DecodeBackup(tc.data)
			if err == nil {
				t.Fatalf("DecodeBackup accepted it: %+v", b)
			}
			if b != nil || st != nil {
				t.Errorf("DecodeBackup returned values with an error")
			}
			msg := err.Error()
			if len(msg) > 300 {
				msg = msg[:300]
			}
			t.Log(msg)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestDecodeBackupSizeLimitIsExact(t *testing.T) {
	s := backupState(t)
	good, err := EncodeBackup(s, t0)
	if err != nil {
		t.Fatal(err)
	}
	// Trailing white space after the envelope is allowed, up to the limit.
	padded := append(bytes.Clone(good), bytes.Repeat([]byte("\n"), MaxBackupSize-len(good))...)
	if _, _, err := DecodeBackup(padded); err != nil {
		t.Fatalf("a backup of exactly %d bytes refused: %v", MaxBackupSize, err)
	}
}

func FuzzDecodeBackup(f *testing.F) {
	s := NewState()
	if _, err := s.apply(initCmd()); err != nil {
		f.Fatal(err)
	}
	good, err := EncodeBackup(s, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"format":"vigil-cdb-backup","version":1,"cluster":"","cluster_id":"","sha256":"74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b","state":null}`))
	f.Add([]byte(`{"format":"vigil-cdb-backup","version":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, st, err := DecodeBackup(data)
		if err != nil {
			if b != nil || st != nil {
				t.Fatalf("values with an error")
			}
			if err.Error() == "" {
				t.Fatalf("empty error message")
			}
			return
		}
		if st.Members == nil || st.Tokens == nil || st.Settings == nil {
			t.Fatalf("decoded state has nil maps")
		}
		if st.Cluster.ID != b.ClusterID || st.Cluster.Name != b.Cluster {
			t.Fatalf("header and state disagree but the backup was accepted")
		}
		// What was accepted can be backed up again and reads the same.
		again, err := EncodeBackup(st, b.Created)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		_, st2, err := DecodeBackup(again)
		if err != nil {
			t.Fatalf("a re-encoded backup does not decode: %v", err)
		}
		if a, b := dumpOf(t, st), dumpOf(t, st2); a != b {
			t.Fatalf("round trip changed the state:\n%s\n%s", a, b)
		}
		// A restore of it, by the cluster it names, never panics.
		live := NewState()
		live.Cluster = st.Cluster
		live.Members["m1"] = &Member{Name: "m1", ID: 1}
		live.apply(&Command{Op: OpRestore, At: t0, Restore: st})
	})
}
