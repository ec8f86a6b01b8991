package dashboard

import (
	"net/http"
	"net/url"

	"github.com/tapline/tapline/internal/store"
)

type limitsData struct {
	Q      url.Values
	Since  string
	Error  string
	Counts []store.LimitedCount
	Rows   []gatewayRow
	Next   string
	First  string
}

// limits shows the calls the gateway refused by a limit (429 rate, 403
// quota), counted per principal and listed newest first.
func (d *Dashboard) limits(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := limitsData{Q: q}
	// The last 7 days unless asked: refused calls of all time are many
	// thousands on a busy gateway (since=all shows them).
	fq := url.Values{}
	for k, v := range q {
		fq[k] = v
	}
	switch {
	case !q.Has("since"):
		fq.Set("since", "7d")
		data.Since = "7d"
	case q.Get("since") == "all":
		fq.Del("since")
		data.Since = "all"
	default:
		data.Since = q.Get("since")
	}
	f, err := d.requestFilter(fq)
	var after store.Cursor
	if err == nil {
		after, err = cursorOf(q)
	}
	if err != nil {
		data.Error = err.Error()
		d.render(w, r, http.StatusBadRequest, "limits", "Limits", data)
		return
	}
	if data.Counts, err = d.st.LimitedByPrincipal(r.Context(), f); err != nil {
		d.fail(w, r, err)
		return
	}
	recs, next, err := d.st.LimitedPage(r.Context(), f, after, pageSize)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for _, rec := range recs {
		data.Rows = append(data.Rows, toRow(rec))
	}
	data.Next = nextLink("/limits", q, next)
	if !after.IsZero() {
		data.First = withQuery("/limits", q)
	}
	d.render(w, r, http.StatusOK, "limits", "Limits", data)
}
