package dashboard

import (
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/config"
)

// pageNames are the templates under templates/, each parsed with
// layout.html into its own set.
var pageNames = []string{"overview", "requests", "request", "usage", "activity", "delivery", "limits", "signin"}

func (d *Dashboard) parse() error {
	d.pages = make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("parse template %s: %w", name, err)
		}
		d.pages[name] = t
	}
	return nil
}

var funcs = template.FuncMap{
	"when":  fmtTime,
	"num":   fmtInt,
	"ms":    fmtMS,
	"query": withQuery,
	"list":  func(v ...any) []any { return v },
	"join":  strings.Join,
	"sub":   func(a, b int) int { return a - b },
	"f":     func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"pct":   func(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" },
	"bar":   func(f float64, w float64) string { return strconv.FormatFloat(f*w, 'f', 1, 64) },
	"msp": func(v *float64) string {
		if v == nil {
			return "–"
		}
		return fmtMS(*v)
	},
}

// fmtTime shows a time in UTC to the second; the zero time as a dash.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// fmtInt groups thousands with thin spaces: 1 234 567.
func fmtInt(v any) string {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	default:
		return fmt.Sprint(v)
	}
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtMS(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) + " ms" }

// withQuery is path with vals (pairs of name and value) set in q: the link
// of a filter applied on top of the current ones. An empty value removes
// the filter; the cursor always goes (a new filter starts a new listing).
func withQuery(path string, q url.Values, kv ...string) string {
	out := url.Values{}
	for k, v := range q {
		if k != "after" && k != "at" {
			out[k] = v
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			out.Del(kv[i])
		} else {
			out.Set(kv[i], kv[i+1])
		}
	}
	if len(out) == 0 {
		return path
	}
	return path + "?" + out.Encode()
}

// parseWhen reads a time filter as `tapline query` does: a duration back
// from now (24h, 7d) or an RFC 3339 time; the form's datetime-local value
// (2006-01-02T15:04, UTC) too.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02T15:04", s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither a duration (24h, 7d) nor a time (RFC 3339 or 2006-01-02)", s)
	}
	return now.Add(-d), nil
}
