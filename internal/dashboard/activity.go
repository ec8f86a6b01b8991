package dashboard

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

// activityRow is an Activity Log event as the timeline shows it.
type activityRow struct {
	ID, Time    string
	Day         string
	Scope       string
	Operation   string
	Status      string
	Level       string
	Caller      string
	Category    string
	ResourceID  string
	Correlation string
	Event       string // the original event, indented
	Change      string // "role" or "policy" for the changes that stand out
	Failed      bool
}

// changeKind says whether an operation changes access (role assignments
// and definitions) or policy (assignments, definitions, exemptions): the
// control-plane changes an audit looks for first.
func changeKind(op string) string {
	o := strings.ToLower(op)
	switch {
	case strings.Contains(o, "microsoft.authorization/role"):
		return "role"
	case strings.Contains(o, "microsoft.authorization/policy"):
		return "policy"
	}
	return ""
}

func toActivityRow(r record.Record) activityRow {
	row := activityRow{ID: r.ID, Time: r.Time.UTC().Format("15:04:05"), Day: r.Time.UTC().Format("Monday 2 January 2006")}
	var p record.ActivityLog
	if err := json.Unmarshal(r.Data, &p); err != nil {
		row.Operation = "undecodable record: " + err.Error()
		return row
	}
	row.Scope = p.Scope.Kind
	if p.Scope.ID != "" {
		row.Scope = p.Scope.ID
	}
	row.Operation, row.Status, row.Level, row.Caller = p.OperationName, p.Status, p.Level, p.Caller
	row.Category, row.ResourceID, row.Correlation = p.Category, p.ResourceID, p.CorrelationID
	row.Change = changeKind(p.OperationName)
	row.Failed = strings.EqualFold(p.Status, "Failed")
	if ev, err := json.MarshalIndent(p.Event, "", "  "); err == nil {
		row.Event = string(ev)
	}
	return row
}

type activityDay struct {
	Day  string
	Rows []activityRow
}

type activityData struct {
	Q     url.Values
	Error string
	Days  []activityDay
	Strip *strip
	Next  string
	First string
}

// strip draws the page's events as marks on a time axis, from the oldest
// to the newest shown: clusters of changes stand out at a glance, and each
// mark links to its event below.
type strip struct {
	Width, Height int
	Marks         []stripMark
	From, To      string
}

type stripMark struct {
	X     float64
	Y     float64
	Class string
	Tip   string
	ID    string
}

func newStrip(rows []activityRow, times []time.Time) *strip {
	if len(rows) == 0 {
		return nil
	}
	const w, h = 1000, 46
	oldest, newest := times[len(times)-1], times[0]
	span := newest.Sub(oldest)
	st := &strip{Width: w, Height: h, From: fmtTime(oldest), To: fmtTime(newest)}
	for i, r := range rows {
		x := float64(w - 12)
		if span > 0 {
			x = 6 + float64(w-12)*float64(times[i].Sub(oldest))/float64(span)
		}
		m := stripMark{X: x, Y: 23, Class: "plain", Tip: r.Day + " " + r.Time + " " + r.Operation + " " + r.Status, ID: r.ID}
		switch {
		case r.Failed:
			m.Class, m.Y = "failed", 36
		case r.Change != "":
			m.Class, m.Y = r.Change, 10
		}
		st.Marks = append(st.Marks, m)
	}
	return st
}

func (d *Dashboard) activityFilter(q url.Values) (store.ActivityFilter, error) {
	f := store.ActivityFilter{
		Scope:     strings.TrimSpace(q.Get("scope")),
		Operation: strings.TrimSpace(q.Get("operation")),
		Caller:    strings.TrimSpace(q.Get("caller")),
		Status:    strings.TrimSpace(q.Get("status")),
	}
	var err error
	now := d.cfg.Now()
	if f.Since, err = parseWhen(q.Get("since"), now); err != nil {
		return f, errors.New("since: " + err.Error())
	}
	if f.Until, err = parseWhen(q.Get("until"), now); err != nil {
		return f, errors.New("until: " + err.Error())
	}
	return f, nil
}

// activity shows the collected events newest first, one block per day.
func (d *Dashboard) activity(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := activityData{Q: q}
	f, err := d.activityFilter(q)
	var after store.Cursor
	if err == nil {
		after, err = cursorOf(q)
	}
	if err != nil {
		data.Error = err.Error()
		d.render(w, r, http.StatusBadRequest, "activity", "Activity", data)
		return
	}
	recs, next, err := d.st.ActivityPage(r.Context(), f, after, pageSize)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	var all []activityRow
	var times []time.Time
	for _, rec := range recs {
		row := toActivityRow(rec)
		all, times = append(all, row), append(times, rec.Time)
		if n := len(data.Days); n == 0 || data.Days[n-1].Day != row.Day {
			data.Days = append(data.Days, activityDay{Day: row.Day})
		}
		last := &data.Days[len(data.Days)-1]
		last.Rows = append(last.Rows, row)
	}
	data.Strip = newStrip(all, times)
	data.Next = nextLink("/activity", q, next)
	if !after.IsZero() {
		data.First = withQuery("/activity", q)
	}
	d.render(w, r, http.StatusOK, "activity", "Activity", data)
}
