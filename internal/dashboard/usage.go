package dashboard

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/tapline/tapline/internal/chargeback"
	"github.com/tapline/tapline/internal/store"
)

// defaultUsageBy is `tapline query usage`'s default grouping.
const defaultUsageBy = "principal,deployment"

// usageQuery reads the usage page's filters: by (group keys, comma
// separated), since and until, as `tapline query usage` takes them. The
// page's default period is the last 30 days; since=all means no bound.
func (d *Dashboard) usageQuery(q url.Values) (store.UsageQuery, error) {
	var uq store.UsageQuery
	by := q.Get("by")
	if !q.Has("by") {
		by = defaultUsageBy
	}
	for _, k := range strings.Split(by, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if !slices.Contains(store.UsageGroups, k) {
			return uq, errors.New("by: " + strconv.Quote(k) + " is not one of " + strings.Join(store.UsageGroups, ", "))
		}
		uq.By = append(uq.By, k)
	}
	since := q.Get("since")
	if !q.Has("since") {
		since = "30d"
	}
	if since == "all" {
		since = ""
	}
	var err error
	now := d.cfg.Now()
	if uq.Since, err = parseWhen(since, now); err != nil {
		return uq, errors.New("since: " + err.Error())
	}
	if uq.Until, err = parseWhen(q.Get("until"), now); err != nil {
		return uq, errors.New("until: " + err.Error())
	}
	return uq, nil
}

type usageRowView struct {
	Keys   []string
	Values []int64
	Share  float64 // of the period's total tokens, 0..1
}

type usageData struct {
	Q       url.Values
	Error   string
	By      []string
	Groups  []string
	Columns []string
	Rows    []usageRowView
	Total   []int64
	CSV     string
	Since   string
}

func (d *Dashboard) usage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := usageData{Q: q, Groups: store.UsageGroups, Columns: chargeback.Columns, Since: q.Get("since")}
	if !q.Has("since") {
		data.Since = "30d"
	}
	uq, err := d.usageQuery(q)
	if err != nil {
		data.Error = err.Error()
		d.render(w, r, http.StatusBadRequest, "usage", "Usage", data)
		return
	}
	data.By = uq.By
	rows, err := d.st.UsageFast(r.Context(), uq)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	data.Total = make([]int64, len(chargeback.Columns))
	for _, row := range rows {
		for i, v := range chargeback.Values(row) {
			data.Total[i] += v
		}
	}
	for _, row := range rows {
		v := usageRowView{Keys: row.Keys, Values: chargeback.Values(row)}
		if t := data.Total[chargeback.Total]; t > 0 {
			v.Share = float64(row.TotalTokens) / float64(t)
		}
		data.Rows = append(data.Rows, v)
	}
	cq := url.Values{"by": {strings.Join(uq.By, ",")}}
	if s := q.Get("since"); q.Has("since") {
		cq.Set("since", s)
	}
	if u := q.Get("until"); u != "" {
		cq.Set("until", u)
	}
	data.CSV = "/usage.csv?" + cq.Encode()
	d.render(w, r, http.StatusOK, "usage", "Usage", data)
}

// usageCSV serves the usage of the page's filters as a CSV download for
// chargeback, written by the writer of `tapline query usage --format csv`.
func (d *Dashboard) usageCSV(w http.ResponseWriter, r *http.Request) {
	uq, err := d.usageQuery(r.URL.Query())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	rows, err := d.st.UsageFast(r.Context(), uq)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="tapline-usage.csv"`)
	if err := chargeback.WriteCSV(w, uq.By, rows); err != nil {
		d.log.Warn("write usage csv", "err", err)
	}
}
