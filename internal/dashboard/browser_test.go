package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tapline/tapline/internal/testenv"
)

// chromium is Debian's Chromium (scripts/test.sh installs it), or
// TAPLINE_CHROMIUM.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("TAPLINE_CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	testenv.Missing(t, "chromium", "chromium is not installed")
	return ""
}

// tab is a headless Chromium tab that records every console error,
// exception, browser-log error and dialog of the pages it loads.
type tab struct {
	ctx context.Context
	mu  sync.Mutex
	bad []string
}

func newTab(t *testing.T) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1400, 1000),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	tb := &tab{ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				msg = fmt.Sprintf("console.%s", ev.Type)
			}
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				msg = fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		case *cdppage.EventJavascriptDialogOpening:
			msg = "dialog opened: " + ev.Message
		}
		if msg != "" {
			tb.mu.Lock()
			tb.bad = append(tb.bad, msg)
			tb.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return tb
}

// problems returns and clears what the pages reported.
func (tb *tab) problems() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	out := tb.bad
	tb.bad = nil
	return out
}

// run runs steps with a deadline, so that a page that hangs (an alert
// blocking it) fails the test instead of stalling it.
func (tb *tab) run(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("chromium: %v", err)
	}
}

func eval[T any](t *testing.T, tb *tab, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// screenshots is where the screenshots go: TAPLINE_SCREENSHOTS to keep them,
// else a temporary directory.
func screenshots(t *testing.T) string {
	if dir := os.Getenv("TAPLINE_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

func (tb *tab) screenshot(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// activeJS lists what on the page would run or link script: script,
// image and frame elements, event handler attributes, javascript: URLs.
const activeJS = `[...document.querySelectorAll('*')].flatMap(e => {
	const out = [];
	if (['SCRIPT', 'IMG', 'IFRAME', 'OBJECT', 'EMBED', 'BASE'].includes(e.tagName)) out.push('<' + e.tagName + '>');
	for (const a of e.attributes) {
		if (a.name.startsWith('on')) out.push(a.name + ' on <' + e.tagName + '>');
		if (/^\s*javascript:/i.test(a.value)) out.push('javascript: ' + a.name + ' on <' + e.tagName + '>');
	}
	return out;
})`

// TestBrowserViews loads every view in Chromium: no console error, the
// hostile text shown as text and never run, no page wider than the window,
// a screenshot of each (the README's, see there to regenerate them).
func TestBrowserViews(t *testing.T) {
	tb := newTab(t)
	srv := httptest.NewServer(newTestHandler(t, fixtureStore(t), Config{Loopback: true}))
	defer srv.Close()
	dir := screenshots(t)
	for _, v := range views {
		t.Run(v.name, func(t *testing.T) {
			tb.run(t, chromedp.Navigate(srv.URL+v.path), chromedp.WaitVisible(chromedp.CSS("main h1")))
			if p := tb.problems(); len(p) > 0 {
				t.Errorf("%s: %s", v.path, strings.Join(p, "\n"))
			}
			// Each hostile field is on the page as the text it holds...
			text := eval[string](t, tb, `document.body.innerText`)
			for _, s := range v.hostile {
				if !strings.Contains(text, s) {
					t.Errorf("%s: %q is not shown as text", v.path, s)
				}
			}
			// ...and made nothing: no element of it, no handler, no link.
			active := eval[[]string](t, tb, activeJS)
			if len(active) != 0 {
				t.Errorf("%s: the page has %v", v.path, active)
			}
			// Long hostile words wrap: nothing is wider than the window.
			if w := eval[[]int](t, tb, `[document.documentElement.scrollWidth, document.documentElement.clientWidth]`); w[0] > w[1] {
				t.Errorf("%s: the page is %d px wide in a window of %d px", v.path, w[0], w[1])
			}
			tb.screenshot(t, filepath.Join(dir, v.name+".png"))
		})
	}
}

// TestBrowserFilters uses the forms: a filter changes the results and
// lands in the URL, so the view can be shared.
func TestBrowserFilters(t *testing.T) {
	tb := newTab(t)
	srv := httptest.NewServer(newTestHandler(t, fixtureStore(t), Config{Loopback: true}))
	defer srv.Close()
	rows := `document.querySelectorAll('table.list tbody tr').length`

	tb.run(t, chromedp.Navigate(srv.URL+"/requests"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	all := eval[int](t, tb, rows)
	tb.run(t,
		chromedp.SendKeys(chromedp.CSS(`input[name="principal"]`), "ana@contoso.example"),
		chromedp.SendKeys(chromedp.CSS(`input[name="status"]`), "200"),
		chromedp.Submit(chromedp.CSS(`input[name="principal"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href*="ana%40contoso.example"]`)),
	)
	loc, err := chromedp.Run(tb.ctx, chromedp.Location())
	if err != nil || !strings.Contains(loc, "principal=ana%40contoso.example") || !strings.Contains(loc, "status=200") {
		t.Errorf("the filters are not in the URL: %q %v", loc, err)
	}
	filtered := eval[int](t, tb, rows)
	principals := eval[[]string](t, tb, `[...document.querySelectorAll('table.list tbody tr td:nth-child(2)')].map(td => td.innerText)`)
	if filtered == 0 || filtered >= all {
		t.Errorf("filtered rows %d of %d", filtered, all)
	}
	for _, p := range principals {
		if p != "ana@contoso.example" {
			t.Errorf("a row of %q under the principal filter", p)
		}
	}

	tb.run(t, chromedp.Navigate(srv.URL+"/activity"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	events := `document.querySelectorAll('li.event').length`
	allEvents := eval[int](t, tb, events)
	tb.run(t,
		chromedp.SendKeys(chromedp.CSS(`input[name="operation"]`), "roleAssignments"),
		chromedp.Submit(chromedp.CSS(`input[name="operation"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="operation"][value="roleAssignments"]`)),
	)
	roles := eval[int](t, tb, events)
	highlighted := eval[int](t, tb, `document.querySelectorAll('li.event.change.role').length`)
	if roles == 0 || roles >= allEvents || highlighted != roles {
		t.Errorf("operation filter: %d of %d events, %d highlighted", roles, allEvents, highlighted)
	}
	// The highlight is seen: a border in the role colour (style.css --role).
	border := `getComputedStyle(document.querySelector('li.event')).borderLeftColor`
	if c := eval[string](t, tb, border); c != "rgb(105, 65, 198)" {
		t.Errorf("a role change's border is %s", c)
	}

	// The quick filter for policy changes: each event stands out in the
	// policy colour.
	tb.run(t,
		chromedp.Click(chromedp.CSS(`a[href$="operation=Microsoft.Authorization%2Fpolicy"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="operation"][value="Microsoft.Authorization/policy"]`)),
	)
	policies := eval[int](t, tb, events)
	highlighted = eval[int](t, tb, `document.querySelectorAll('li.event.change.policy').length`)
	if policies == 0 || policies >= allEvents || highlighted != policies {
		t.Errorf("policy changes: %d of %d events, %d highlighted", policies, allEvents, highlighted)
	}
	if c := eval[string](t, tb, border); c != "rgb(2, 106, 162)" {
		t.Errorf("a policy change's border is %s", c)
	}
	if p := tb.problems(); len(p) > 0 {
		t.Errorf("console: %s", strings.Join(p, "\n"))
	}
}

// TestBrowserUsageDownload downloads the usage CSV through the page's link
// and compares it byte for byte with what `tapline query usage --format
// csv`, built from cmd/tapline and run on the same store, prints for the
// same grouping and period. The period's ends are not on the hour, so the
// dashboard's hourly roll-up and the command's scan of the records must
// agree on the edges too.
func TestBrowserUsageDownload(t *testing.T) {
	tb := newTab(t)
	db := filepath.Join(t.TempDir(), "tapline.db")
	st := fixtureStoreAt(t, db)
	srv := httptest.NewServer(newTestHandler(t, st, Config{Loopback: true}))
	defer srv.Close()
	dl := t.TempDir()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl}); err != nil {
		t.Fatal(err)
	}
	const by, since, until = "principal,deployment,day", "2026-11-18T20:40:00Z", "2026-11-20T12:29:00Z"
	tb.run(t, chromedp.Navigate(srv.URL+"/usage?"+url.Values{"by": {by}, "since": {since}, "until": {until}}.Encode()),
		chromedp.WaitVisible(chromedp.CSS("a[download]")), chromedp.Click(chromedp.CSS("a[download]")))
	var got []byte
	for deadline := time.After(20 * time.Second); got == nil; {
		b, err := os.ReadFile(filepath.Join(dl, "tapline-usage.csv"))
		if err == nil && len(b) > 0 {
			got = b
			break
		}
		select {
		case <-deadline:
			t.Fatal("no download within 20s")
		case <-time.After(50 * time.Millisecond):
		}
	}
	want := tapline(t, "query", "usage", "--store", db, "--by", by, "--since", since, "--until", until, "--format", "csv")
	if !bytes.Equal(got, want) {
		t.Errorf("downloaded CSV:\n%s\ntapline query usage --format csv:\n%s", got, want)
	}
	// The period holds the hostile call and both ends cut through calls.
	if n := bytes.Count(want, []byte("\n")); n < 10 || !bytes.Contains(want, []byte("javascript:alert(3)")) {
		t.Errorf("the period holds too little to compare:\n%s", want)
	}
	if p := tb.problems(); len(p) > 0 {
		t.Errorf("console: %s", strings.Join(p, "\n"))
	}
}

// tapline builds the command (cmd/tapline) and runs it with args, failing
// the test unless it exits 0; it returns its standard output.
func tapline(t *testing.T, args ...string) []byte {
	t.Helper()
	gobin, err := exec.LookPath("go") // go test puts its own first on PATH
	if err != nil {
		t.Fatalf("no go command to build tapline: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tapline")
	build := exec.CommandContext(t.Context(), gobin, "build", "-o", bin, "./cmd/tapline")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tapline: %v\n%s", err, out)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tapline %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// TestBrowserSignin signs in through the form: pages lead to the sign-in
// page, a wrong token is refused, the right one sets an HttpOnly, Secure,
// SameSite=Strict cookie that opens the views.
func TestBrowserSignin(t *testing.T) {
	tb := newTab(t)
	srv := httptest.NewServer(newTestHandler(t, fixtureStore(t), Config{Token: testToken}))
	defer srv.Close()
	// localhost: Chromium keeps Secure cookies of http://localhost.
	base := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	tb.run(t, chromedp.Navigate(base+"/requests"), chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)))
	if loc, _ := chromedp.Run(tb.ctx, chromedp.Location()); !strings.HasSuffix(loc, "/signin") {
		t.Errorf("without sign-in /requests went to %q", loc)
	}
	tb.run(t,
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), "not-the-token-at-all"),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.error`)),
	)
	if text := eval[string](t, tb, `document.querySelector('p.error').innerText`); text != "Wrong token." {
		t.Errorf("wrong token: %q", text)
	}
	tb.problems() // the 401 of the refused form is logged as a failed load
	tb.run(t,
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), testToken),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)),
		chromedp.WaitVisible(chromedp.CSS(`figure.chart`)),
	)
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range res.Cookies {
		if c.Name != sessionCookie {
			continue
		}
		found = true
		if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteStrict {
			t.Errorf("session cookie flags: HttpOnly %v Secure %v SameSite %q", c.HTTPOnly, c.Secure, c.SameSite)
		}
		if strings.Contains(c.Value, testToken) {
			t.Error("the session cookie holds the token")
		}
	}
	if !found {
		t.Fatal("no session cookie after sign-in")
	}
	if n := eval[int](t, tb, `document.cookie.length`); n != 0 {
		t.Errorf("script can read %d bytes of cookies", n)
	}
	tb.run(t, chromedp.Navigate(base+"/requests"), chromedp.WaitVisible(chromedp.CSS(`table.list`)))
	if p := tb.problems(); len(p) > 0 {
		t.Errorf("console: %s", strings.Join(p, "\n"))
	}
}
