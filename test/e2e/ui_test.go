package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-cluster/vigil/internal/agent"
)

// chromium finds Debian's chromium, or skips (fails under
// VIGIL_REQUIRE_LAB=1, where CI installed it).
func chromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("VIGIL_REQUIRE_LAB") == "1" {
		t.Fatal("chromium is not installed (apt-get install chromium): the dashboard test needs it")
	}
	t.Skip("chromium is not installed (apt-get install chromium): skipping the dashboard test")
	return ""
}

// TestDashboard drives the dashboard in Debian's chromium: sign in with the
// admin token, see the service, power its owner off and watch the failover
// appear live (member DOWN in the event timeline, the service ONLINE on
// another member), then relocate it with the page's button and ask why.
func TestDashboard(t *testing.T) {
	bin := chromium(t)
	c := startCluster(t, 3)
	if out, err := c.Apply(t.Context(), 0, recorder(t.TempDir()+"/rec.log", "m1, m2, m3")); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	s, _ := c.waitOnline(0, "rec", "", 30*time.Second)
	owner := c.index(s.Owner)
	watcher := (owner + 1) % 3
	token, err := agent.ReadAdminToken(c.Members[watcher].Dir)
	if err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors", true))
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	defer cancel()
	url := "https://" + c.Members[watcher].API + "/ui/"
	row := func(owner string) string {
		return fmt.Sprintf(`#services tr[data-service="rec"][data-state="ONLINE"][data-owner="%s"]`, owner)
	}
	t0 := time.Now()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.CSS(row(s.Owner))),
		chromedp.WaitVisible(chromedp.CSS(`#events li[data-kind="service"]`)),
	); err != nil {
		t.Fatalf("loading %s and signing in: %v", url, err)
	}
	t.Logf("dashboard at %s shows rec ONLINE on %s after %s", url, s.Owner, time.Since(t0).Round(time.Millisecond))
	if conn, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("conn"))); conn != "live" {
		t.Errorf("the event stream is %q, want live", conn)
	}

	// A failover, live.
	c.Crash(owner)
	crashed := time.Now()
	var newOwner string
	waitJS(t, ctx, 40*time.Second, "the failover on the page", fmt.Sprintf(`(() => {
		const r = document.querySelector('#services tr[data-service="rec"][data-state="ONLINE"]');
		const down = [...document.querySelectorAll('#events li[data-kind="member"]')].some(li => li.textContent.includes("member %s is DOWN"));
		return r && r.dataset.owner !== %q && down ? r.dataset.owner : "";
	})()`, s.Owner, s.Owner), &newOwner)
	t.Logf("the page shows %s DOWN and rec ONLINE on %s %s after the power-off", s.Owner, newOwner, time.Since(crashed).Round(time.Millisecond))
	shot(t, ctx, "failover")

	// Relocate with the page's button, to the other live member.
	target := ""
	for _, m := range []string{"m1", "m2", "m3"} {
		if m != s.Owner && m != newOwner {
			target = m
		}
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`select.relocate-to[data-service="rec"]`), target),
		chromedp.Click(chromedp.CSS(`button.relocate[data-service="rec"]`)),
		chromedp.WaitVisible(chromedp.CSS(row(target))),
	); err != nil {
		t.Fatalf("relocating rec to %s from the page: %v", target, err)
	}
	var audited string
	waitJS(t, ctx, 10*time.Second, "the relocation in the timeline", fmt.Sprintf(`(() => {
		const li = [...document.querySelectorAll('#events li[data-kind="operator"]')].find(li => li.textContent.includes("relocate rec to %s"));
		return li ? li.textContent : "";
	})()`, target), &audited)
	t.Logf("relocated from the page: %s", audited)
	if !strings.Contains(audited, "admin-token@") {
		t.Errorf("the relocation is not audited with who asked: %q", audited)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button.why[data-service="rec"]`)),
		chromedp.WaitVisible(chromedp.ID("why")),
	); err != nil {
		t.Fatalf("why: %v", err)
	}
	why, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("why")))
	if err != nil {
		t.Fatalf("why: %v", err)
	}
	t.Logf("why on the page: %s", why)
	if !strings.Contains(why, "rec: ONLINE on "+target) {
		t.Errorf("why says %q", why)
	}
	shot(t, ctx, "relocated")

	// Offline, online and drain from the page.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#services tr[data-service="rec"] button.offline`)),
		chromedp.WaitVisible(chromedp.CSS(`#services tr[data-service="rec"][data-state="OFFLINE"]`)),
		chromedp.Click(chromedp.CSS(`#services tr[data-service="rec"] button.online`)),
		chromedp.WaitVisible(chromedp.CSS(`#services tr[data-service="rec"][data-state="ONLINE"]`)),
	); err != nil {
		t.Fatalf("offline and online from the page: %v", err)
	}
	var moved string
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#members tr[data-member="%s"] button.drain`, target)))); err != nil {
		t.Fatalf("drain %s from the page: %v", target, err)
	}
	waitJS(t, ctx, 30*time.Second, "the drained member's service moves", fmt.Sprintf(`(() => {
		const r = document.querySelector('#services tr[data-service="rec"][data-state="ONLINE"]');
		const m = document.querySelector('#members tr[data-member="%s"]');
		return r && r.dataset.owner !== %q && m && m.textContent.includes("draining") ? r.dataset.owner : "";
	})()`, target, target), &moved)
	t.Logf("drained %s from the page: rec moved to %s", target, moved)

	// A wrong token is refused and the page asks again.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(sessionStorage.setItem("vigil-token", "wrong"), true)`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("login"))); err != nil {
		t.Fatalf("a wrong token: %v", err)
	}

	// A viewer's token: the page shows the cluster but no buttons.
	out := c.mustCLI(watcher, "token", "create", "watcher", "--role", "viewer")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token"), lines[len(lines)-1]),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.CSS(`#services tr[data-service="rec"]`)),
	); err != nil {
		t.Fatalf("signing in as a viewer: %v", err)
	}
	var who string
	waitJS(t, ctx, 10*time.Second, "the viewer's page", `(() => {
		const b = document.querySelector('#services button.relocate');
		return b && getComputedStyle(b).display === "none" ? document.getElementById("whoami").textContent : "";
	})()`, &who)
	t.Logf("signed in as %s: no buttons", who)
	if !strings.Contains(who, "token:watcher") || !strings.Contains(who, "[viewer]") {
		t.Errorf("whoami shows %q", who)
	}
}

// waitJS polls a JavaScript expression until it returns a non-empty string.
func waitJS(t *testing.T, ctx context.Context, limit time.Duration, what, expr string, out *string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		*out = v
		if *out != "" {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("%s: not within %s; the page says:\n%s", what, limit, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shot saves a screenshot to $VIGIL_UI_SCREENSHOTS, when set.
func shot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("VIGIL_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	os.WriteFile(dir+"/"+name+".png", png, 0o644)
}
