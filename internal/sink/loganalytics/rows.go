package loganalytics

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tapline/tapline/internal/record"
	"github.com/tidwall/gjson"
)

// DataPartBytes is the most bytes of a record's data JSON one row carries in
// its Data column. Azure truncates field values over 64 KB without an error
// (azure-contracts.md §4.2), so the data is cut into parts well under it.
const DataPartBytes = 32 << 10

// liftedMaxBytes bounds a lifted string column. A longer value is left out
// of its column (never cut): the full value is in Data.
const liftedMaxBytes = 4 << 10

// Column is one column of a table and of its stream declaration.
type Column struct {
	Name string
	Type string // Log Analytics type: string, int, long, datetime
}

// envelopeColumns are the columns of every row, in the order the sink
// writes them.
var envelopeColumns = []Column{
	{"TimeGenerated", "datetime"},
	{"RecordTime", "string"},
	{"RecordId", "string"},
	{"Kind", "string"},
	{"Version", "int"},
	{"DataPart", "int"},
	{"DataParts", "int"},
	{"Data", "string"},
}

// lifted is a column copied out of the record's data.
type lifted struct {
	Column
	path  string   // gjson path in the data
	paths []string // for Principal: the first non-empty of these
	scope bool     // for Scope: kind/id
}

var gatewayLifted = []lifted{
	{Column: Column{"Principal", "string"}, paths: []string{"principal.upn", "principal.name", "principal.appid", "principal.oid", "principal.key_name"}},
	{Column: Column{"PrincipalKind", "string"}, path: "principal.kind"},
	{Column: Column{"ClientIp", "string"}, path: "client_ip"},
	{Column: Column{"Deployment", "string"}, path: "deployment"},
	{Column: Column{"Operation", "string"}, path: "operation"},
	{Column: Column{"Status", "int"}, path: "status"},
	{Column: Column{"PromptTokens", "long"}, path: "usage.prompt_tokens"},
	{Column: Column{"CompletionTokens", "long"}, path: "usage.completion_tokens"},
	{Column: Column{"TotalTokens", "long"}, path: "usage.total_tokens"},
	{Column: Column{"State", "string"}, path: "state"},
}

var activityLifted = []lifted{
	{Column: Column{"Scope", "string"}, scope: true},
	{Column: Column{"OperationName", "string"}, path: "operation_name"},
	{Column: Column{"Caller", "string"}, path: "caller"},
	{Column: Column{"ActivityStatus", "string"}, path: "status"},
	{Column: Column{"Category", "string"}, path: "category"},
	{Column: Column{"ResourceId", "string"}, path: "resource_id"},
	{Column: Column{"CorrelationId", "string"}, path: "correlation_id"},
}

func liftedOf(k record.Kind) []lifted {
	switch k {
	case record.KindGatewayRequest:
		return gatewayLifted
	case record.KindActivityLog:
		return activityLifted
	}
	return nil
}

// Columns returns the columns the sink writes for records of kind k, in
// order: the envelope columns, then the columns lifted from that kind's
// data. deploy/loganalytics.bicep declares the same ones.
func Columns(k record.Kind) []Column {
	cols := append([]Column(nil), envelopeColumns...)
	for _, l := range liftedOf(k) {
		cols = append(cols, l.Column)
	}
	return cols
}

// row is one JSON object of a request body and the index in the batch of
// the record it belongs to.
type row struct {
	b   []byte
	rec int
}

// dataParts returns the number of parts data is cut into.
func dataParts(data []byte) int {
	n := 0
	for rest := data; len(rest) > 0 || n == 0; n++ {
		rest = rest[cutPart(rest):]
	}
	return n
}

// cutPart returns the length of the next part of data: at most
// DataPartBytes, ending on a UTF-8 character boundary.
func cutPart(data []byte) int {
	if len(data) <= DataPartBytes {
		return len(data)
	}
	n := DataPartBytes
	for n > 0 && !utf8.RuneStart(data[n]) {
		n--
	}
	return n
}

// appendRows appends the rows of r (index i in the batch) to dst. The data
// must be valid UTF-8 (it travels in a JSON string).
func appendRows(dst []row, r record.Record, i int) []row {
	parts := dataParts(r.Data)
	// The envelope and lifted columns are the same on every part.
	var head []byte
	head = append(head, `{"TimeGenerated":"`...)
	head = r.Time.UTC().AppendFormat(head, time.RFC3339Nano)
	head = append(head, `","RecordTime":"`...)
	head = r.Time.AppendFormat(head, time.RFC3339Nano)
	head = append(head, `","RecordId":`...)
	head = record.AppendString(head, r.ID)
	head = append(head, `,"Kind":`...)
	head = record.AppendString(head, string(r.Kind))
	head = append(head, `,"Version":`...)
	head = strconv.AppendInt(head, int64(r.Version), 10)
	head = appendLifted(head, r)
	head = append(head, `,"DataParts":`...)
	head = strconv.AppendInt(head, int64(parts), 10)
	rest := []byte(r.Data)
	for p := 1; p <= parts; p++ {
		n := cutPart(rest)
		b := make([]byte, 0, len(head)+n+n/8+32)
		b = append(b, head...)
		b = append(b, `,"DataPart":`...)
		b = strconv.AppendInt(b, int64(p), 10)
		b = append(b, `,"Data":`...)
		b = record.AppendString(b, string(rest[:n]))
		b = append(b, '}')
		dst = append(dst, row{b: b, rec: i})
		rest = rest[n:]
	}
	return dst
}

// appendLifted appends the lifted columns of r's kind that have a value.
func appendLifted(dst []byte, r record.Record) []byte {
	cols := liftedOf(r.Kind)
	if len(cols) == 0 {
		return dst
	}
	data := gjson.ParseBytes(r.Data)
	for _, c := range cols {
		var v gjson.Result
		switch {
		case c.scope:
			kind, id := data.Get("scope.kind").String(), data.Get("scope.id").String()
			if kind == "" && id == "" {
				continue
			}
			s := kind
			if id != "" {
				s += "/" + id
			}
			dst = appendStringColumn(dst, c.Name, s)
			continue
		case c.paths != nil:
			for _, p := range c.paths {
				if v = data.Get(p); v.String() != "" {
					break
				}
			}
		default:
			v = data.Get(c.path)
		}
		switch c.Type {
		case "string":
			if v.Type == gjson.String && v.Str != "" {
				dst = appendStringColumn(dst, c.Name, v.Str)
			}
		case "int", "long":
			if n, ok := integer(v, c.Type == "int"); ok {
				dst = append(dst, `,"`...)
				dst = append(dst, c.Name...)
				dst = append(dst, `":`...)
				dst = strconv.AppendInt(dst, n, 10)
			}
		}
	}
	return dst
}

func appendStringColumn(dst []byte, name, s string) []byte {
	if len(s) > liftedMaxBytes || !utf8.ValidString(s) {
		return dst
	}
	dst = append(dst, `,"`...)
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	return record.AppendString(dst, s)
}

// integer returns v as an integer when it is a JSON number with an integral
// value that fits the column (1.5e3 is 1500; 1.5 is left out).
func integer(v gjson.Result, int32Only bool) (int64, bool) {
	if v.Type != gjson.Number {
		return 0, false
	}
	n, err := strconv.ParseInt(v.Raw, 10, 64)
	if err != nil {
		f := v.Num
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, false
		}
		n = int64(f)
	}
	if int32Only && (n > math.MaxInt32 || n < math.MinInt32) {
		return 0, false
	}
	return n, true
}
