package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "TestDashboard: write the dashboard's screenshot to docs/dashboard.png")

// browser starts a headless Debian chromium and returns a tab's context.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("the dashboard test needs chromium (apt-get install chromium; .ci/run does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where chromium's sandbox cannot start
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser now: its errors are clearer here
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// waitDOM evaluates check (a JavaScript expression giving "" when the page
// shows what the test wants, else what it shows instead) until it gives ""
// or timeout passes.
func waitDOM(t *testing.T, ctx context.Context, timeout time.Duration, what, check string) time.Duration {
	t.Helper()
	start := time.Now()
	waitFor(t, timeout, func() error {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](check))
		if err != nil {
			return err
		}
		if got != "" {
			return fmt.Errorf("%s: the page shows %s", what, got)
		}
		return nil
	}, true)
	return time.Since(start)
}

// rowsJS returns the rows of a table as "cell|cell|…" lines, for checks.
const rowsJS = `(sel) => [...document.querySelectorAll(sel + " tbody tr")].map(tr => [...tr.cells].map(c => c.textContent).join("|"))`

// allRows builds a check that every row of table sel matches re and that
// there are n rows.
func allRows(sel string, n int, re string) string {
	return fmt.Sprintf(`(() => { const rows = (%s)(%q); const re = new RegExp(%q);
		return rows.length === %d && rows.every(r => re.test(r)) ? "" : JSON.stringify(rows); })()`, rowsJS, sel, re, n)
}

// someRow builds a check that one row of table sel matches re.
func someRow(sel, re string) string {
	return fmt.Sprintf(`(() => { const rows = (%s)(%q); const re = new RegExp(%q);
		return rows.some(r => re.test(r)) ? "" : JSON.stringify(rows); })()`, rowsJS, sel, re)
}

// giveToken types token into the page's token form, as a user would.
func giveToken(t *testing.T, ctx context.Context, token string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", token),
		chromedp.Click(`#token-form button[type="submit"]`),
	); err != nil {
		t.Fatal(err)
	}
}

// TestDashboard drives /ui in a real headless chromium against three nodes
// and a gateway that all require tokens: the page asks for one, then shows
// every member; a write through the gateway shows on every node, converged;
// a node killed with SIGKILL is marked unhealthy by the gateway's view and
// dead by the members' within seconds; a node's own /ui shows its view.
func TestDashboard(t *testing.T) {
	ctx := browser(t)
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, secRead+" read dash", secWrite+" write app", secAdmin+" admin ops")
	sec := []string{"--auth-file", authFile, "--cluster-key", secKey}
	admin := &http.Client{Timeout: 5 * time.Second, Transport: bearer{secAdmin, client.Transport}}
	nodes := []*proc{startNode(t, "n1", "", sec...)}
	for _, name := range []string{"n2", "n3"} {
		nodes = append(nodes, startNode(t, name, nodes[0].Gossip, sec...))
	}
	for _, p := range nodes {
		p.client = admin
		waitFor(t, 10*time.Second, func() error { return memberCount(p, 3) }, true)
	}
	gw := startGateway(t, nodes, append(sec, "--health-interval", "250ms")...)
	gw.client = admin
	waitFor(t, 10*time.Second, func() error { return memberCount(gw, 3) }, true)
	// A light background load, so that the page has a write rate and a
	// latency to show.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
				gw.add(loadCtx, "load", 1)
			}
		}
	}()
	t.Cleanup(func() { stopLoad(); <-loadDone })

	if err := chromedp.Do(ctx, chromedp.Navigate(gw.HTTP+"/ui/#key=visits")); err != nil {
		t.Fatal(err)
	}
	giveToken(t, ctx, secAdmin)
	waitDOM(t, ctx, 5*time.Second, "mode", `document.getElementById("mode").textContent === "gateway" ? "" : document.getElementById("mode").textContent`)
	waitDOM(t, ctx, 5*time.Second, "members", allRows("#members", 3, `^n\d\|alive\|\d+\|`))
	waitDOM(t, ctx, 5*time.Second, "the gateway's view", allRows("#gateway-nodes", 3, `^n\d\|healthy\|`))

	for i := 0; i < 3; i++ {
		if err := gw.add(context.Background(), "visits", 7); err != nil {
			t.Fatal(err)
		}
	}
	took := waitDOM(t, ctx, 5*time.Second, "the written key", allRows("#values", 3, `^n\d\|21\|$`))
	waitDOM(t, ctx, 2*time.Second, "converged", `document.getElementById("converged").textContent === "converged" ? "" : document.getElementById("converged").textContent`)
	t.Logf("a write through the gateway showed on every node's value in the page after %v", took.Round(time.Millisecond))
	waitDOM(t, ctx, 5*time.Second, "write rate and latency", `(() => {
		const rate = parseFloat(document.getElementById("write-rate").textContent), lat = document.getElementById("write-latency").textContent;
		return rate > 0 && /^[\d.]+ (µs|ms|s)$/.test(lat) ? "" : "rate " + rate + ", latency " + lat; })()`)

	victim := nodes[2]
	victim.kill()
	took = waitDOM(t, ctx, 5*time.Second, "the gateway's view of the killed node", someRow("#gateway-nodes", `^n3\|unhealthy`))
	t.Logf("SIGKILLed node unhealthy in the gateway's view after %v", took.Round(time.Millisecond))
	took = waitDOM(t, ctx, 10*time.Second, "the members' view of the killed node", someRow("#members", `^n3\|dead\|`))
	t.Logf("SIGKILLed node dead in the members' view after %v", took.Round(time.Millisecond))
	waitDOM(t, ctx, 2*time.Second, "events", `/n3: (alive|suspect) → (suspect|dead)/.test(document.getElementById("events").textContent) ? "" : document.getElementById("events").textContent`)
	waitDOM(t, ctx, 2*time.Second, "the key without the dead node", someRow("#values", `^n3\|–\|unhealthy`))

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dashboard.png")
	if *updateScreenshot {
		out = filepath.Join("..", "docs", "dashboard.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}

	// A phone's width: nothing wider than the screen but the tables'
	// own scrolling boxes.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	waitDOM(t, ctx, 2*time.Second, "phone width", `document.documentElement.scrollWidth <= window.innerWidth ? "" : "page " + document.documentElement.scrollWidth + "px wide"`)

	// A node's own dashboard: its members and its value; the token is
	// per origin, so the page asks again.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(nodes[0].HTTP+"/ui/#key=visits")); err != nil {
		t.Fatal(err)
	}
	giveToken(t, ctx, secAdmin)
	waitDOM(t, ctx, 5*time.Second, "node mode", `document.getElementById("mode").textContent === "node" ? "" : document.getElementById("mode").textContent`)
	waitDOM(t, ctx, 5*time.Second, "node's members", someRow("#members", `^n1 \(this node\)\|alive\|`))
	waitDOM(t, ctx, 5*time.Second, "node's members", someRow("#members", `^n3\|dead\|`))
	waitDOM(t, ctx, 5*time.Second, "node's value", someRow("#values", `^this node\|21\|`))
}

// TestDashboardWithoutAuth: a node without --auth-file serves the whole
// dashboard with no token asked for.
func TestDashboardWithoutAuth(t *testing.T) {
	ctx := browser(t)
	n := startNode(t, "solo", "")
	waitFor(t, 10*time.Second, func() error { return memberCount(n, 1) }, true)
	if err := n.add(context.Background(), "default", 5); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(n.HTTP+"/ui")); err != nil { // redirected to /ui/
		t.Fatal(err)
	}
	waitDOM(t, ctx, 5*time.Second, "members", allRows("#members", 1, `^solo \(this node\)\|alive\|`))
	waitDOM(t, ctx, 5*time.Second, "value", allRows("#values", 1, `^this node\|5\|`))
	waitDOM(t, ctx, 5*time.Second, "write rate", `/^\d/.test(document.getElementById("write-rate").textContent) ? "" : "no rate yet"`)
	waitDOM(t, ctx, time.Second, "no token asked", `document.getElementById("token-form").hidden ? "" : "the token form is shown"`)
}
