package dashboard

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/tapline/tapline/internal/store"
)

// ranges are the overview's periods and the width of their buckets.
var ranges = []period{
	{"1h", time.Hour, 2 * time.Minute},
	{"24h", 24 * time.Hour, time.Hour},
	{"7d", 7 * 24 * time.Hour, 6 * time.Hour},
	{"30d", 30 * 24 * time.Hour, 24 * time.Hour},
}

type period struct {
	Name string
	Span time.Duration
	Step time.Duration
}

// chart is a bar chart drawn on the server as SVG: no script, no library.
type chart struct {
	Title  string
	Width  int
	Height int
	Bars   []chartBar
	Max    string // the top of the scale
	Labels []chartLabel
	Total  string
	Class  string
}

type chartBar struct {
	X, Y, W, H float64
	Tip        string
}

type chartLabel struct {
	X    float64
	Text string
}

const (
	chartW, chartH = 560, 140
	chartTop       = 8
	chartBottom    = 18 // room for the time labels
)

// newChart draws values (one per bucket starting at starts[i]) as bars.
func newChart(title, class string, starts []time.Time, values []int64, step time.Duration) chart {
	c := chart{Title: title, Width: chartW, Height: chartH, Class: class}
	var top, total int64
	for _, v := range values {
		top = max(top, v)
		total += v
	}
	c.Max, c.Total = fmtInt(top), fmtInt(total)
	if len(values) == 0 {
		return c
	}
	plot := float64(chartH - chartTop - chartBottom)
	w := float64(chartW) / float64(len(values))
	layout := "15:04"
	if step >= 24*time.Hour {
		layout = "Jan 2"
	} else if step >= 6*time.Hour {
		layout = "Jan 2 15h"
	}
	every := max(1, len(values)/6)
	for i, v := range values {
		h := 0.0
		if top > 0 {
			h = plot * float64(v) / float64(top)
		}
		x := float64(i) * w
		c.Bars = append(c.Bars, chartBar{X: x + 1, Y: chartTop + plot - h, W: max(w-2, 1), H: h,
			Tip: starts[i].UTC().Format("2006-01-02 15:04") + " UTC: " + fmtInt(v)})
		if i%every == 0 {
			c.Labels = append(c.Labels, chartLabel{X: x + 1, Text: starts[i].UTC().Format(layout)})
		}
	}
	return c
}

type topRow struct {
	Name     string
	Link     string
	Requests int64
	Tokens   int64
	Errors   int64
	Share    float64
}

type overviewData struct {
	Range  string
	Ranges []string
	Charts []chart
	Top    []topTable
	Since  time.Time
	Until  time.Time
}

type topTable struct {
	Title string
	Rows  []topRow
}

// topN is how many principals and deployments the overview lists.
const topN = 10

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("range")
	if name == "" {
		name = "24h"
	}
	i := slices.IndexFunc(ranges, func(p period) bool { return p.Name == name })
	if i < 0 {
		badRequest(w, "range: want 1h, 24h, 7d or 30d")
		return
	}
	rg := ranges[i]
	// Buckets align to the step so that a reload shows the same bars.
	until := d.cfg.Now().UTC().Truncate(rg.Step).Add(rg.Step)
	since := until.Add(-rg.Span)
	series, err := d.st.Series(r.Context(), since, until, rg.Step)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	n := len(series)
	starts := make([]time.Time, n)
	reqs, toks, errs, thr := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, b := range series {
		starts[i], reqs[i], toks[i], errs[i], thr[i] = b.Start, b.Requests, b.Tokens, b.Errors, b.Throttles
	}
	data := overviewData{Range: name, Since: since, Until: until}
	for _, x := range ranges {
		data.Ranges = append(data.Ranges, x.Name)
	}
	data.Charts = []chart{
		newChart("Requests", "requests", starts, reqs, rg.Step),
		newChart("Tokens", "tokens", starts, toks, rg.Step),
		newChart("Errors (status ≥ 400)", "errors", starts, errs, rg.Step),
		newChart("Throttled (429)", "throttles", starts, thr, rg.Step),
	}
	for _, g := range []struct{ by, title string }{{"principal", "Top principals"}, {"deployment", "Top deployments"}} {
		rows, err := d.st.UsageFast(r.Context(), store.UsageQuery{By: []string{g.by}, Since: since, Until: until})
		if err != nil {
			d.fail(w, r, err)
			return
		}
		data.Top = append(data.Top, topTable{Title: g.title, Rows: top(rows, g.by, since)})
	}
	d.render(w, r, http.StatusOK, "overview", "Overview", data)
}

// top is the topN rows by total tokens, then requests, with links to their
// requests.
func top(rows []store.UsageRow, by string, since time.Time) []topRow {
	slices.SortFunc(rows, func(a, b store.UsageRow) int {
		return cmp.Or(cmp.Compare(b.TotalTokens, a.TotalTokens), cmp.Compare(b.Requests, a.Requests),
			cmp.Compare(a.Keys[0], b.Keys[0]))
	})
	var total int64
	for _, r := range rows {
		total += r.TotalTokens
	}
	var out []topRow
	for _, r := range rows[:min(len(rows), topN)] {
		t := topRow{Name: r.Keys[0], Requests: r.Requests, Tokens: r.TotalTokens, Errors: r.Errors,
			Link: withQuery("/requests", url.Values{by: {r.Keys[0]}, "since": {since.Format(time.RFC3339)}})}
		if total > 0 {
			t.Share = float64(r.TotalTokens) / float64(total)
		}
		out = append(out, t)
	}
	return out
}
