// Package loganalytics is the sink that sends records to Log Analytics
// tables through the Logs Ingestion API (a data collection rule), gzipped,
// in requests under the API's 1,048,576-byte limit.
//
// # Tables
//
// Each record kind goes to its own stream (Config.Streams), and through the
// rule to its own table: TaplineAIRequests_CL (gateway_request) and
// TaplineActivity_CL (activity_log), created by deploy/loganalytics.bicep.
// Every row has these columns:
//
//	TimeGenerated  datetime  the record time (Log Analytics keeps 100 ns)
//	RecordTime     string    the record time exactly, RFC 3339 with nanoseconds
//	RecordId       string    the record id (id is a reserved column name)
//	Kind           string    gateway_request or activity_log
//	Version        int       the payload version
//	DataPart       int       which part of the data this row holds, from 1
//	DataParts      int       how many rows hold the record's data
//	Data           string    part DataPart of the record's data JSON
//
// Azure cuts field values over 64 KB without an error, so the data JSON is
// cut into parts of at most DataPartBytes (on UTF-8 boundaries), one row
// each. Rows of one record are sent in one request when they fit in one. Columns
// lifted from the data, for queries, repeat on every part (a value that is
// missing, of another type or over 4 KB is left out; Data has it):
//
//	gateway_request: Principal (upn, else name, appid, oid, key_name),
//	  PrincipalKind, ClientIp, Deployment, Operation, Status (int),
//	  PromptTokens, CompletionTokens, TotalTokens (long), State
//	activity_log: Scope (kind/id), OperationName, Caller, ActivityStatus,
//	  Category, ResourceId, CorrelationId
//
// Count records with `where DataPart == 1`. Reassemble them (retries may
// have sent a part twice) with:
//
//	TaplineActivity_CL
//	| summarize take_any(*) by RecordId, DataPart
//	| summarize Parts = make_list(DataPart), Chunks = make_list(Data),
//	    DataParts = take_any(DataParts), RecordTime = take_any(RecordTime) by RecordId
//	| where array_length(Parts) == DataParts
//	| extend (Parts, Chunks) = array_sort_asc(Parts, Chunks)
//	| extend Data = parse_json(strcat_array(Chunks, ""))
//
// parse_json turns numbers beyond 2^53 into doubles; keep the
// strcat_array string when exact bytes matter.
//
// # Errors
//
// 204 is success. 413 (from the service or a proxy) splits the request in
// two and sends both. 408, 429 and 5xx are *sink.RetryableError with the
// Retry-After hint. 400 is sink.Invalid (the shipper splits the batch to
// find the record). 401, 403, 404 are plain errors with the service's
// message. A record whose kind has no stream, whose data is not UTF-8, or
// one of whose rows cannot fit in a request alone is refused with
// sink.InvalidRecords before anything of the batch is sent.
package loganalytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
)

// Defaults.
const (
	// DefaultScope is the token scope of the Logs Ingestion API in the public
	// cloud: audience https://monitor.azure.com/ plus /.default, hence the
	// double slash (azure-contracts.md §4.2, Go azlogs cloud_config.go).
	DefaultScope = "https://monitor.azure.com//.default"
	// DefaultMaxRequestBytes is the API's limit on a request body, measured
	// as sent (compressed).
	DefaultMaxRequestBytes = 1 << 20
	// apiVersion is the Logs Ingestion API version.
	apiVersion = "2023-01-01"
)

// Config is the Log Analytics sink's configuration (DESIGN.md §4,
// sinks[].log_analytics).
type Config struct {
	// Endpoint is the data collection endpoint's logs ingestion URL
	// (https://<dce>.<region>-1.ingest.monitor.azure.com) or the rule's own.
	Endpoint string
	// DCRImmutableID is the data collection rule's immutable id (dcr-...).
	DCRImmutableID string
	// Streams maps each record kind to its stream in the rule
	// (Custom-TaplineAIRequests, Custom-TaplineActivity). A record of a kind
	// with no stream is refused as invalid.
	Streams map[record.Kind]string
	// Credential gets the bearer tokens.
	Credential azcore.TokenCredential
	// Scope is the token scope; "" means DefaultScope. Sovereign clouds use
	// https://monitor.azure.us//.default and https://monitor.azure.cn//.default.
	Scope string
	// InsecureAllowHTTP allows an http:// Endpoint on a loopback address
	// (emulators): the token is then sent in the clear.
	InsecureAllowHTTP bool
	// MaxRequestBytes is the most bytes a request body (gzip) may have; 0
	// means DefaultMaxRequestBytes.
	MaxRequestBytes int
	// Transport, when not nil, sends the requests (tests).
	Transport policy.Transporter
}

// Sink sends records to Log Analytics through the Logs Ingestion API.
type Sink struct {
	base    string // endpoint + /dataCollectionRules/{id}/streams/
	streams map[record.Kind]string
	pl      runtime.Pipeline
	pack    *packer
	log     *slog.Logger
	now     func() time.Time
	closed  bool
}

var (
	_ sink.Sink    = (*Sink)(nil)
	_ sink.Checker = (*Sink)(nil)
)

// New validates cfg and returns a sink. It sends nothing.
func New(cfg Config, log *slog.Logger) (*Sink, error) {
	u, err := url.Parse(strings.TrimRight(cfg.Endpoint, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("new log analytics sink: endpoint %q is not an absolute URL", cfg.Endpoint)
	}
	insecure := false
	switch u.Scheme {
	case "https":
	case "http":
		if !cfg.InsecureAllowHTTP || !sink.Loopback(u.Hostname()) {
			return nil, fmt.Errorf("new log analytics sink: endpoint %q: http is allowed only on loopback with insecure_allow_http", cfg.Endpoint)
		}
		insecure = true
	default:
		return nil, fmt.Errorf("new log analytics sink: endpoint %q: scheme must be https", cfg.Endpoint)
	}
	switch {
	case cfg.DCRImmutableID == "":
		return nil, errors.New("new log analytics sink: dcr_immutable_id is empty")
	case len(cfg.Streams) == 0:
		return nil, errors.New("new log analytics sink: streams is empty")
	case cfg.Credential == nil:
		return nil, errors.New("new log analytics sink: no credential")
	case cfg.MaxRequestBytes < 0 || (cfg.MaxRequestBytes > 0 && cfg.MaxRequestBytes < 1024):
		return nil, fmt.Errorf("new log analytics sink: max request bytes %d is under 1024", cfg.MaxRequestBytes)
	}
	streams := make(map[record.Kind]string, len(cfg.Streams))
	for k, s := range cfg.Streams {
		if s == "" || strings.ContainsAny(s, "/?#") {
			return nil, fmt.Errorf("new log analytics sink: stream %q of kind %s is not a stream name", s, k)
		}
		streams[k] = s
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if insecure {
		log.Warn("log analytics endpoint is http: the bearer token is sent in the clear", "endpoint", u.String())
	}
	scope := cfg.Scope
	if scope == "" {
		scope = DefaultScope
	}
	bearer := runtime.NewBearerTokenPolicy(cfg.Credential, []string{scope},
		&policy.BearerTokenOptions{InsecureAllowCredentialWithHTTP: insecure})
	// The shipper owns retries (STYLE.md): the pipeline tries once.
	opts := &policy.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}, Transport: cfg.Transport}
	pl := runtime.NewPipeline("tapline/loganalytics", "v1", runtime.PipelineOptions{PerRetry: []policy.Policy{bearer}}, opts)
	limit := cfg.MaxRequestBytes
	if limit == 0 {
		limit = DefaultMaxRequestBytes
	}
	return &Sink{
		base:    u.String() + "/dataCollectionRules/" + url.PathEscape(cfg.DCRImmutableID) + "/streams/",
		streams: streams, pl: pl, pack: newPacker(limit),
		log: log.With("component", "sink.log_analytics"), now: time.Now,
	}, nil
}

// Write sends recs, one or more requests per stream. Streams are sent in
// the order their first record appears in recs; within a stream, rows keep
// the order of recs.
func (s *Sink) Write(ctx context.Context, recs []record.Record) error {
	if s.closed {
		return sink.ErrClosed
	}
	if len(recs) == 0 {
		return nil
	}
	byStream := map[string][]row{}
	var order []string
	var bad []int
	var reason string
	refuse := func(i int, why string) {
		if len(bad) == 0 {
			reason = fmt.Sprintf("record %d (%s): %s", i, recs[i].ID, why)
		}
		bad = append(bad, i)
	}
	for i, r := range recs {
		stream, ok := s.streams[r.Kind]
		if !ok {
			refuse(i, fmt.Sprintf("no log analytics stream is configured for kind %q", r.Kind))
			continue
		}
		if !utf8.Valid(r.Data) {
			refuse(i, "data is not valid UTF-8, which a JSON string column cannot carry byte for byte")
			continue
		}
		rows := appendRows(nil, r, i)
		for _, rw := range rows {
			if n, ok := s.pack.fits(rw); !ok {
				refuse(i, fmt.Sprintf("a row of %d bytes (%d gzipped) is over the destination's %d-byte request limit", len(rw.b), n, s.pack.limit))
				break
			}
		}
		if _, seen := byStream[stream]; !seen {
			order = append(order, stream)
		}
		byStream[stream] = append(byStream[stream], rows...)
	}
	if len(bad) > 0 {
		if len(bad) > 1 {
			reason += fmt.Sprintf(" (and %d more records)", len(bad)-1)
		}
		return sink.InvalidRecords(nil, reason, bad...)
	}
	for _, stream := range order {
		if err := s.sendStream(ctx, stream, byStream[stream]); err != nil {
			return fmt.Errorf("write log analytics sink: %w", err)
		}
	}
	return nil
}

// sendStream packs rows into requests and sends them in order.
func (s *Sink) sendStream(ctx context.Context, stream string, rows []row) error {
	for len(rows) > 0 {
		body, n := s.pack.pack(rows)
		if k := s.pack.keepTogether(rows, n); k != n {
			body, n = s.pack.compress(rows[:k]), k
		}
		if err := s.post(ctx, stream, rows[:n], body); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// Check posts an empty JSON array to every configured stream: a request
// that passes authentication, authorization and the rule and stream lookup
// and cannot ingest anything. What the service answers to [] is not
// recorded (azure-contracts.md §4.2): 204 is healthy, and so is a 400, since
// the service checks the body only after the token, the rule and the stream.
// 401, 403 and 404 are the errors Check is for.
func (s *Sink) Check(ctx context.Context) error {
	if s.closed {
		return sink.ErrClosed
	}
	streams := make([]string, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	slices.Sort(streams)
	for _, st := range slices.Compact(streams) {
		if err := s.probe(ctx, st); err != nil {
			return fmt.Errorf("check log analytics sink: %w", err)
		}
	}
	return nil
}

// Close marks the sink closed. It holds no connections of its own.
func (s *Sink) Close() error {
	s.closed = true
	return nil
}
