package dashboard

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

// pageSize is how many rows a listing shows per page.
const pageSize = 50

// requestFilter reads the requests page's filters from the URL: the
// fields of `tapline query requests` with the same names.
func (d *Dashboard) requestFilter(q url.Values) (store.Filter, error) {
	f := store.Filter{
		Kind:       record.KindGatewayRequest,
		Principal:  strings.TrimSpace(q.Get("principal")),
		Deployment: strings.TrimSpace(q.Get("deployment")),
		Operation:  strings.TrimSpace(q.Get("operation")),
		State:      strings.TrimSpace(q.Get("state")),
		Text:       q.Get("text"),
	}
	if s := strings.TrimSpace(q.Get("status")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 599 {
			return f, errors.New("status: want an HTTP status such as 429")
		}
		f.Status = n
	}
	var err error
	now := d.cfg.Now()
	since := strings.TrimSpace(q.Get("since"))
	switch {
	case since == "all":
		since = ""
	case since == "" && f.Text != "":
		// A text search reads every payload of its period, so it looks at
		// the last day unless asked otherwise (since=all for everything):
		// the page stays under 200 ms at a million records.
		since = textSearchDefault
	}
	if f.Since, err = parseWhen(since, now); err != nil {
		return f, errors.New("since: " + err.Error())
	}
	if f.Until, err = parseWhen(q.Get("until"), now); err != nil {
		return f, errors.New("until: " + err.Error())
	}
	return f, nil
}

// textSearchDefault is the period a text search covers when none is given.
const textSearchDefault = "24h"

// cursorOf reads the page cursor: at (unix nanoseconds) and after (an id).
func cursorOf(q url.Values) (store.Cursor, error) {
	id := q.Get("after")
	if id == "" {
		return store.Cursor{}, nil
	}
	ns, err := strconv.ParseInt(q.Get("at"), 10, 64)
	if err != nil {
		return store.Cursor{}, errors.New("at: want the cursor's time in unix nanoseconds")
	}
	return store.Cursor{Time: time.Unix(0, ns), ID: id}, nil
}

// nextLink is the URL of the page after next, or "" at the end.
func nextLink(path string, q url.Values, next store.Cursor) string {
	if next.IsZero() {
		return ""
	}
	return withQuery(path, q, "at", strconv.FormatInt(next.Time.UnixNano(), 10), "after", next.ID)
}

// gatewayRow is a gateway call as a listing shows it.
type gatewayRow struct {
	ID, Time         string
	Principal        string
	ClientIP         string
	Operation        string
	Deployment       string
	Model            string
	Status           int
	State            string
	Tokens           string
	Duration         string
	Prompt           string // the start of the captured prompt
	Limit            string
	Err              string
	Failed, Throttle bool
}

func toRow(r record.Record) gatewayRow {
	var g record.GatewayRequest
	row := gatewayRow{ID: r.ID, Time: fmtTime(r.Time)}
	if err := json.Unmarshal(r.Data, &g); err != nil {
		row.Err = "undecodable record: " + err.Error()
		return row
	}
	row.Principal, row.ClientIP, row.Operation, row.Deployment = g.Principal.ID(), g.ClientIP, g.Operation, g.Deployment
	row.Model = g.ModelReturned
	if row.Model == "" {
		row.Model = g.ModelRequested
	}
	row.Status, row.State = g.Status, g.State
	row.Failed, row.Throttle = g.Status >= 400, g.Status == 429
	if g.Usage != nil {
		row.Tokens = fmtInt(g.Usage.PromptTokens) + " + " + fmtInt(g.Usage.CompletionTokens)
	}
	row.Duration = fmtMS(g.DurationMS)
	if g.Prompt != nil {
		row.Prompt = clipText(g.Prompt.Text, 80)
	}
	if g.Limit != nil {
		row.Limit = g.Limit.Name
	}
	if g.Error != nil {
		row.Err = g.Error.Message
	}
	return row
}

// clipText cuts s to n runes with an ellipsis, on one line.
func clipText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

type requestsData struct {
	Q     url.Values
	Error string
	Rows  []gatewayRow
	Next  string
	First string // the first page's link when not on it
}

func (d *Dashboard) requests(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := requestsData{Q: q}
	f, err := d.requestFilter(q)
	var after store.Cursor
	if err == nil {
		after, err = cursorOf(q)
	}
	if err != nil {
		data.Error = err.Error()
		d.render(w, r, http.StatusBadRequest, "requests", "Requests", data)
		return
	}
	recs, next, err := d.st.Page(r.Context(), f, after, pageSize)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for _, rec := range recs {
		data.Rows = append(data.Rows, toRow(rec))
	}
	data.Next = nextLink("/requests", q, next)
	if !after.IsZero() {
		data.First = withQuery("/requests", q)
	}
	d.render(w, r, http.StatusOK, "requests", "Requests", data)
}

// segment is a piece of captured text; Mark is a redaction mark.
type segment struct {
	Text string
	Mark bool
}

// redactionMark is what the gateway puts where a redact rule matched
// (internal/gateway/capture.go).
const redactionMark = "[REDACTED]"

func segments(s string) []segment {
	var out []segment
	for {
		i := strings.Index(s, redactionMark)
		if i < 0 {
			if s != "" {
				out = append(out, segment{Text: s})
			}
			return out
		}
		if i > 0 {
			out = append(out, segment{Text: s[:i]})
		}
		out = append(out, segment{Text: redactionMark, Mark: true})
		s = s[i+len(redactionMark):]
	}
}

type contentView struct {
	*record.Content
	Segments []segment
}

type requestData struct {
	Rec      record.Record
	G        record.GatewayRequest
	Prompt   *contentView
	Response *contentView
	Raw      string
}

func (d *Dashboard) request(w http.ResponseWriter, r *http.Request) {
	rec, err := d.st.Record(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && rec.Kind != record.KindGatewayRequest) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		d.fail(w, r, err)
		return
	}
	data := requestData{Rec: rec}
	if err := json.Unmarshal(rec.Data, &data.G); err != nil {
		d.fail(w, r, err)
		return
	}
	if c := data.G.Prompt; c != nil {
		data.Prompt = &contentView{c, segments(c.Text)}
	}
	if c := data.G.Response; c != nil {
		data.Response = &contentView{c, segments(c.Text)}
	}
	if raw, err := json.MarshalIndent(json.RawMessage(rec.Data), "", "  "); err == nil {
		data.Raw = string(raw)
	}
	d.render(w, r, http.StatusOK, "request", "Request "+rec.ID, data)
}
