package emulator

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Logs Ingestion limits (azure-contracts.md §4.2: "1 MB per call", the 413
// message names 1048576 bytes; "field values >64 KB truncated").
const (
	LogsIngestionMaxBody  = 1 << 20
	LogsIngestionMaxField = 64 << 10
	logsIngestionAPI      = "2023-01-01"
)

// LogsIngestionColumn is one column of a stream declaration. Type is one of
// string, int, long, real, boolean, datetime, dynamic.
type LogsIngestionColumn struct {
	Name string
	Type string
}

// LogsIngestionConfig configures a Logs Ingestion stand-in for one data
// collection rule.
type LogsIngestionConfig struct {
	// DCRImmutableID is the rule's immutable id ("dcr-..."). Required.
	DCRImmutableID string
	// Streams are the rule's stream declarations by name
	// ("Custom-TaplineAIRequests"). Required.
	Streams map[string][]LogsIngestionColumn
	// Tokens are the bearer tokens that may ingest. Required: any other
	// bearer gets 403 OperationFailed.
	Tokens []string
	// MaxBodyBytes is the largest Content-Length accepted; 0 means
	// LogsIngestionMaxBody.
	MaxBodyBytes int
}

// LogsIngestionFault makes requests that passed authentication fail.
type LogsIngestionFault struct {
	// Status is 429 or a 5xx status.
	Status int
	// RetryAfter is sent as Retry-After in whole seconds (rounded up) when
	// not zero; a 429 always carries one (0 means 1 second).
	RetryAfter time.Duration
	// Count is how many requests fail; 0 means 1, -1 every request until
	// ClearFaults.
	Count int
}

// LogsIngestion is an http.Handler standing in for a data collection
// endpoint's Logs Ingestion API (azure-contracts.md §4.2): POST
// /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01 with a
// JSON array of rows, optionally gzip-compressed. It keeps the rows of every
// stream in arrival order and the wire size of every accepted request. It is
// safe for concurrent use.
type LogsIngestion struct {
	dcr     string
	streams map[string]map[string]string // stream -> column -> type
	tokens  map[string]bool
	log     *slog.Logger

	mu        sync.Mutex
	maxBody   int
	faults    []LogsIngestionFault
	rows      map[string][]json.RawMessage
	sizes     []int
	truncated int
	statuses  []int
}

var _ http.Handler = (*LogsIngestion)(nil)

// NewLogsIngestion returns a stand-in for cfg. A nil log discards.
func NewLogsIngestion(cfg LogsIngestionConfig, log *slog.Logger) (*LogsIngestion, error) {
	if cfg.DCRImmutableID == "" || len(cfg.Streams) == 0 || len(cfg.Tokens) == 0 {
		return nil, errors.New("logs ingestion emulator: dcr id, streams and tokens are required")
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, errors.New("logs ingestion emulator: negative max body bytes")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &LogsIngestion{
		dcr: cfg.DCRImmutableID, streams: map[string]map[string]string{}, tokens: map[string]bool{},
		log: log, maxBody: liOr(cfg.MaxBodyBytes, LogsIngestionMaxBody), rows: map[string][]json.RawMessage{},
	}
	for name, cols := range cfg.Streams {
		m := map[string]string{}
		for _, c := range cols {
			switch c.Type {
			case "string", "int", "long", "real", "boolean", "datetime", "dynamic":
			default:
				return nil, fmt.Errorf("logs ingestion emulator: stream %s: column %s has unknown type %q", name, c.Name, c.Type)
			}
			m[c.Name] = c.Type
		}
		l.streams[name] = m
	}
	for _, t := range cfg.Tokens {
		l.tokens[t] = true
	}
	return l, nil
}

func liOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// ListenLogsIngestion serves a Logs Ingestion stand-in for cfg on addr, a
// loopback address ("" means 127.0.0.1 on a free port). It returns the base
// URL to use as the data collection endpoint, the emulator, and stop, which
// may be called more than once. The server also stops when ctx ends.
func ListenLogsIngestion(ctx context.Context, addr string, cfg LogsIngestionConfig, log *slog.Logger) (url string, l *LogsIngestion, stop func(), err error) {
	l, err = NewLogsIngestion(cfg, log)
	if err != nil {
		return "", nil, nil, err
	}
	url, stop, err = listenLoopback(ctx, addr, l, l.log, "logs-ingestion")
	if err != nil {
		return "", nil, nil, err
	}
	return url, l, stop, nil
}

// Inject queues a fault for the next requests that pass authentication.
func (l *LogsIngestion) Inject(f LogsIngestionFault) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.faults = append(l.faults, f)
}

// ClearFaults removes every queued fault.
func (l *LogsIngestion) ClearFaults() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.faults = nil
}

// SetMaxBodyBytes changes the Content-Length limit (0 restores 1048576), so
// that a test can make the service answer 413 to what a client packed.
func (l *LogsIngestion) SetMaxBodyBytes(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxBody = liOr(n, LogsIngestionMaxBody)
}

// Rows returns the raw JSON of every row stored in stream, in arrival order.
func (l *LogsIngestion) Rows(stream string) []json.RawMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.rows[stream])
}

// AcceptedSizes returns the wire size (Content-Length, compressed when
// gzip) of every request answered 204 that held at least one row, in order:
// the bench's fill ratio against the 1 MB limit.
func (l *LogsIngestion) AcceptedSizes() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sizes)
}

// Statuses returns the status of every request answered, in order.
func (l *LogsIngestion) Statuses() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.statuses)
}

// Truncated returns how many field values were cut to 64 KB, as the real
// service does silently.
func (l *LogsIngestion) Truncated() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.truncated
}

// liError answers with the service's error envelope and x-ms-error-code.
func (l *LogsIngestion) liError(w http.ResponseWriter, status int, code, msg string) {
	l.mu.Lock()
	l.statuses = append(l.statuses, status)
	l.mu.Unlock()
	body, _ := json.Marshal(map[string]map[string]string{"error": {"code": code, "message": msg}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ServeHTTP handles one ingestion request. Checks run in this order:
// route, bearer (401, 403), rule (404), stream (404), api-version,
// Content-Length (413), Content-Type, body.
func (l *LogsIngestion) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "dataCollectionRules" || parts[2] != "streams" {
		l.liError(w, http.StatusNotFound, "NotFound", "The requested resource was not found.")
		return
	}
	if r.Method != http.MethodPost {
		l.liError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method "+r.Method+" is not allowed.")
		return
	}
	dcr, stream := parts[1], parts[3]
	// 401 and 403: no public 401 body was found (azure-contracts.md §4.2);
	// the 403 wording is the recorded one.
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		l.liError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "An authentication token is required: the 'Authorization' header with a bearer token is missing.")
		return
	}
	if !l.tokens[tok] {
		l.liError(w, http.StatusForbidden, "OperationFailed", "The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '"+dcr+
			"' PipelineAccessResult: AccessGranted: False, IsRbacPresent: False, IsDcrDceBindingValid: , DcrArmId: <REDACTED>, Message: Required authorization action was not found for tenantId <REDACTED> objectId <REDACTED> on resourceId <REDACTED> ConfigurationId: <REDACTED>..")
		return
	}
	if dcr != l.dcr {
		l.liError(w, http.StatusNotFound, "NotFound", "Data collection rule with immutable Id '"+dcr+"' not found.")
		return
	}
	cols, ok := l.streams[stream]
	if !ok {
		// INFERRED: no recorded answer for a stream the rule does not
		// declare; 404 like the unknown rule, since it is a missing
		// resource named in the path.
		l.liError(w, http.StatusNotFound, "NotFound", "Stream '"+stream+"' is not declared in the data collection rule with immutable Id '"+dcr+"'.")
		return
	}
	if v := r.URL.Query().Get("api-version"); v != logsIngestionAPI {
		l.liError(w, http.StatusBadRequest, "InvalidApiVersion", "The api-version '"+v+"' is missing or not supported; use "+logsIngestionAPI+".")
		return
	}
	if l.fault(w) {
		return
	}
	l.mu.Lock()
	maxBody := l.maxBody
	l.mu.Unlock()
	raw, err := io.ReadAll(io.LimitReader(r.Body, int64(maxBody)+1))
	if err != nil {
		l.liError(w, http.StatusBadRequest, "InvalidPayload", "read body: "+err.Error())
		return
	}
	if n := max(r.ContentLength, int64(len(raw))); n > int64(maxBody) {
		l.liError(w, http.StatusRequestEntityTooLarge, "ContentLengthLimitExceeded",
			fmt.Sprintf("Maximum allowed content length: %d bytes (1 MB). Provided content length: %d bytes.", maxBody, n))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		l.liError(w, http.StatusBadRequest, "UnsupportedContentType", "Content-Type must be application/json.")
		return
	}
	body := raw
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			l.liError(w, http.StatusBadRequest, "InvalidContentEncoding", "The body is not valid gzip: "+err.Error())
			return
		}
	default:
		l.liError(w, http.StatusBadRequest, "UnsupportedContentEncoding", "Content-Encoding '"+enc+"' is not supported.")
		return
	}
	rows, code, msg := l.parseRows(body, cols)
	if code != "" {
		l.liError(w, http.StatusBadRequest, code, msg)
		return
	}
	l.mu.Lock()
	for _, row := range rows {
		l.rows[stream] = append(l.rows[stream], row.raw)
		l.truncated += row.truncated
	}
	if len(rows) > 0 {
		l.sizes = append(l.sizes, len(raw))
	}
	l.statuses = append(l.statuses, http.StatusNoContent)
	l.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// fault answers with the first queued fault, if any.
func (l *LogsIngestion) fault(w http.ResponseWriter) bool {
	l.mu.Lock()
	if len(l.faults) == 0 {
		l.mu.Unlock()
		return false
	}
	f := l.faults[0]
	switch {
	case f.Count < 0:
	case f.Count <= 1:
		l.faults = l.faults[1:]
	default:
		l.faults[0].Count--
	}
	l.mu.Unlock()
	after := f.RetryAfter
	if f.Status == http.StatusTooManyRequests && after <= 0 {
		after = time.Second
	}
	if after > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((after+time.Second-1)/time.Second)))
	}
	if f.Status == http.StatusTooManyRequests {
		l.liError(w, f.Status, "TooManyRequests", "Rate limit exceeded. Retry after the duration listed in the Retry-After header.")
	} else {
		l.liError(w, f.Status, "ServiceUnavailable", "The service is temporarily unavailable.")
	}
	return true
}

type liRow struct {
	raw       json.RawMessage
	truncated int
}

// parseRows checks that body is a JSON array of objects whose keys are
// declared columns with values of the declared types, and cuts string values
// over 64 KB as the real service does. It returns an error code and message
// for a 400 (INFERRED wording: the service's 400 bodies were not recorded).
func (l *LogsIngestion) parseRows(body []byte, cols map[string]string) ([]liRow, string, string) {
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil {
		return nil, "InvalidPayload", "The body must be a JSON array of objects: " + err.Error()
	}
	rows := make([]liRow, 0, len(elems))
	for i, e := range elems {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(e, &obj); err != nil || obj == nil {
			return nil, "InvalidPayload", fmt.Sprintf("Row %d is not a JSON object.", i)
		}
		row := liRow{raw: e}
		cut := false
		for k, v := range obj {
			typ, ok := cols[k]
			if !ok {
				return nil, "InvalidPayload", fmt.Sprintf("Row %d: column '%s' is not declared in the stream.", i, k)
			}
			if !liTypeOK(typ, v) {
				return nil, "InvalidPayload", fmt.Sprintf("Row %d: column '%s' is not of type %s.", i, k, typ)
			}
			var s string
			if v[0] == '"' && json.Unmarshal(v, &s) == nil && len(s) > LogsIngestionMaxField {
				s = s[:LogsIngestionMaxField]
				for !utf8.ValidString(s) {
					s = s[:len(s)-1]
				}
				obj[k], _ = json.Marshal(s)
				row.truncated++
				cut = true
			}
		}
		if cut { // re-encoded with sorted keys
			row.raw, _ = json.Marshal(obj)
		}
		rows = append(rows, row)
	}
	return rows, "", ""
}

// liTypeOK reports whether v (not null) is a value of the column type typ.
func liTypeOK(typ string, v json.RawMessage) bool {
	if string(v) == "null" {
		return true
	}
	switch typ {
	case "string":
		return v[0] == '"'
	case "boolean":
		return string(v) == "true" || string(v) == "false"
	case "real":
		_, err := strconv.ParseFloat(string(v), 64)
		return err == nil
	case "int":
		_, err := strconv.ParseInt(string(v), 10, 32)
		return err == nil
	case "long":
		_, err := strconv.ParseInt(string(v), 10, 64)
		return err == nil
	case "datetime":
		var s string
		if json.Unmarshal(v, &s) != nil {
			return false
		}
		_, err := time.Parse(time.RFC3339Nano, s)
		return err == nil
	}
	return true // dynamic
}
