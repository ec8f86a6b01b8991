// Command dashboard measures how fast each dashboard view renders against
// a store of a million records (issue 7: under 200 ms a page). It fills a
// store (or reuses -store), serves each view N times in-process through
// the dashboard's handler, and writes p50/p99 per view to bench/results.
//
//	go run ./bench/dashboard -n 1000000 -runs 30
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/dashboard"
	"github.com/tapline/tapline/internal/store"
)

func main() {
	n := flag.Int("n", 1_000_000, "records in the store")
	runs := flag.Int("runs", 30, "renders of each view")
	db := flag.String("store", "", "store file: filled by this program if missing, reused if present (default: a new one in a temporary directory, removed after)")
	flag.Parse()
	if err := run(*n, *runs, *db); err != nil {
		fmt.Fprintln(os.Stderr, "bench/dashboard:", err)
		os.Exit(1)
	}
}

// view is one page the benchmark renders.
type view struct{ name, path string }

func views(n int) []view {
	return []view{
		{"overview, 24h", "/"},
		{"overview, 7d", "/?range=7d"},
		{"overview, 30d", "/?range=30d"},
		{"requests, first page", "/requests"},
		{"requests, principal", "/requests?principal=key:team-3"},
		{"requests, rare principal (user07)", "/requests?principal=user07@contoso.example"},
		{"requests, deployment + status 500", "/requests?deployment=gpt-4o&status=500"},
		{"requests, text, last 24h", "/requests?text=call+" + fmt.Sprint(n-10) + ".&since=24h"},
		{"requests, page 2 (cursor)", ""}, // filled in from the first page's next link
		{"request detail", fmt.Sprintf("/requests/gw-%09d", n/2)},
		{"usage, 24h", "/usage?since=24h"},
		{"usage, 7d", "/usage?since=7d"},
		{"usage, 30d (default)", "/usage"},
		{"usage.csv, 7d", "/usage.csv?since=7d"},
		{"activity", "/activity"},
		{"activity, operation + caller", "/activity?operation=roleAssignments&caller=bob@contoso.example"},
		{"delivery", "/delivery"},
		{"limits, 24h", "/limits?since=24h"},
		{"limits, 7d (default)", "/limits"},
		{"limits, all time", "/limits?since=all"},
	}
}

func run(n, runs int, db string) error {
	end := time.Now().UTC()
	var fillTime time.Duration
	if db == "" {
		dir, err := os.MkdirTemp("", "tapline-bench-dashboard-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		db = filepath.Join(dir, "tapline.db")
	}
	if _, err := os.Stat(db); err == nil {
		// Reused: its records end when it was filled.
		fmt.Fprintf(os.Stderr, "reusing %s\n", db)
		if end, err = lastTime(db); err != nil {
			return err
		}
	} else {
		var err error
		fmt.Fprintf(os.Stderr, "filling %s with %d records...\n", db, n)
		if fillTime, err = fill(db, n, end); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "filled in %s\n", fillTime.Round(time.Millisecond))
	}
	st, err := store.OpenReadOnly(context.Background(), db, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	h, err := dashboard.New(dashboard.Config{Loopback: true, Sinks: []string{"archive", "siem"},
		Now: func() time.Time { return end }}, st, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	vs := views(n)
	var rows []string
	for i, v := range vs {
		if v.path == "" {
			next, err := nextLink(h, "/requests")
			if err != nil {
				return err
			}
			vs[i].path, v.path = next, next
		}
		times := make([]time.Duration, 0, runs)
		var size int
		for r := 0; r < runs+1; r++ {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, v.path, nil)
			begin := time.Now()
			h.ServeHTTP(rec, req)
			d := time.Since(begin)
			if rec.Code != http.StatusOK {
				return fmt.Errorf("%s: %d %s", v.path, rec.Code, rec.Body)
			}
			size = rec.Body.Len()
			if r > 0 { // the first render warms the page cache
				times = append(times, d)
			}
		}
		slices.Sort(times)
		p50, p99 := times[len(times)/2], times[min(len(times)-1, len(times)*99/100)]
		verdict := "yes"
		if p99 > 200*time.Millisecond {
			verdict = "**no**"
		}
		row := fmt.Sprintf("| %s | `%s` | %s | %s | %d KiB | %s |", v.name, v.path, ms(p50), ms(p99), size/1024, verdict)
		fmt.Fprintln(os.Stderr, row)
		rows = append(rows, row)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Dashboard views against %d records (`go run ./bench/dashboard`)\n\n", n)
	fmt.Fprintf(&b, "%s, %d CPUs, %s. %d renders of each view in-process through the handler (after one warm-up), store read-only (WAL) as `tapline serve` reads it. ",
		time.Now().UTC().Format(time.RFC3339), goruntime.NumCPU(), goruntime.Version(), runs)
	fmt.Fprintf(&b, "Records: 3 gateway calls per Activity Log event, evenly over the last 30 days (about %d a day); 2%% of calls refused by a limit.", n/30)
	if fillTime > 0 {
		fmt.Fprintf(&b, " Store filled in %s (%.0f records/s, with the dashboard indexes).", fillTime.Round(time.Millisecond), float64(n)/fillTime.Seconds())
	}
	b.WriteString("\n\n| view | path | p50 | p99 | page | p99 under 200 ms |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	fmt.Print(b.String())
	p := filepath.Join("bench", "results", "dashboard-"+time.Now().UTC().Format("20060102-150405")+".md")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", p)
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// nextLink renders path and returns its "Older" link.
func nextLink(h http.Handler, path string) (string, error) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body := rec.Body.String()
	i := strings.Index(body, `rel="next"`)
	if i < 0 {
		return "", fmt.Errorf("%s has no next page", path)
	}
	start := strings.LastIndex(body[:i], `href="`) + len(`href="`)
	end := strings.IndexByte(body[start:], '"')
	return strings.ReplaceAll(body[start:start+end], "&amp;", "&"), nil
}

// lastTime is the time of the newest record in db.
func lastTime(db string) (time.Time, error) {
	st, err := store.OpenReadOnly(context.Background(), db, nil)
	if err != nil {
		return time.Time{}, err
	}
	defer st.Close()
	recs, _, err := st.Page(context.Background(), store.Filter{}, store.Cursor{}, 1)
	if err != nil || len(recs) == 0 {
		return time.Time{}, fmt.Errorf("read the newest record of %s: %v", db, err)
	}
	return recs[0].Time.Add(time.Minute), nil
}
