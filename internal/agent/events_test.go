package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-cluster/vigil/client"
)

func TestAlertFor(t *testing.T) {
	all := &client.Alert{Name: "all", Path: "/x"}
	svc := &client.Alert{Name: "svc", Path: "/x", Kinds: []string{client.EventService, client.EventAlert}}
	for _, tc := range []struct {
		a    *client.Alert
		e    client.Event
		want bool
	}{
		{all, client.Event{Kind: client.EventMember}, true},
		{all, client.Event{Kind: client.EventAlert, Alert: "svc"}, false}, // alert events only by name
		{svc, client.Event{Kind: client.EventMember}, false},
		{svc, client.Event{Kind: client.EventService}, true},
		{svc, client.Event{Kind: client.EventAlert, Alert: "all"}, true},
		{svc, client.Event{Kind: client.EventAlert, Alert: "svc"}, false}, // never its own failures
		{svc, client.Event{Kind: client.EventAlert, Test: true, Alert: "svc"}, true},
		{all, client.Event{Kind: client.EventAlert, Test: true, Alert: "svc"}, false},
		{all, client.Event{Kind: client.EventAlert, Test: true}, true},
	} {
		if got := alertFor(tc.a, &tc.e); got != tc.want {
			t.Errorf("alert %s, event %+v: %v, want %v", tc.a.Name, tc.e, got, tc.want)
		}
	}
}

func TestAlertEnv(t *testing.T) {
	rc := 7
	e := &client.Event{Seq: 12, At: time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC), Kind: client.EventMethod, Member: "m2",
		Service: "web", Epoch: 4, RC: &rc, Message: "web: start failed on m2 (epoch 4): exit 7"}
	env := strings.Join(alertEnv("c1", "m1", &client.Alert{Name: "log", Recipient: "/var/log/x"}, e), "\n")
	for _, want := range []string{"VIGIL_ALERT_KIND=method", "VIGIL_ALERT_MEMBER=m2", "VIGIL_ALERT_SERVICE=web", "VIGIL_ALERT_RC=7",
		"VIGIL_ALERT_EVENT=web: start failed on m2 (epoch 4): exit 7", "VIGIL_ALERT_TIMESTAMP=2026-12-04T21:00:00Z",
		"VIGIL_ALERT_SEQ=12", "VIGIL_ALERT_EPOCH=4", "VIGIL_ALERT_NAME=log", "VIGIL_ALERT_RECIPIENT=/var/log/x",
		"VIGIL_ALERT_CLUSTER=c1", "VIGIL_ALERT_DIRECTOR=m1", `VIGIL_ALERT_JSON={"seq":12`, "PATH="} {
		if !strings.Contains(env, want) {
			t.Errorf("the environment lacks %q:\n%s", want, env)
		}
	}
}
