// Package splunk is the sink that sends records to a Splunk HTTP Event
// Collector (HEC), optionally waiting for indexer acknowledgement.
//
// # Events
//
// Each record is one HEC event on /services/collector/event:
//
//	{"host":…,"source":…,"sourcetype":…,"index":…,"time":1795381200.123456789,
//	 "event":<the record envelope {id,kind,version,time,data}>,
//	 "fields":{"id":…,"kind":…}}
//
// "event" holds the envelope byte for byte (record.AppendJSON), so the exact
// nanosecond time, the id and numbers beyond 2^53 survive; Splunk's _time
// keeps microseconds. Index and sourcetype are chosen per record kind;
// host, source and an index left empty take the token's defaults. The
// indexed fields id and kind find a record's copies fast: index=azure
// id="<record id>".
//
// # Delivery
//
// A batch is packed into requests of at most MaxRequestBytes (never
// splitting an event), sent in order. A record whose event alone is over
// the limit is refused with sink.InvalidRecords before anything is sent.
// With IndexerAck, Write returns only after Splunk reported every request's
// ackId as indexed, or fails as retryable after AckTimeout, in which case
// the shipper resends the batch and Splunk may hold two copies of an event
// under the same id. Without it, a 200 means only that HEC found the
// events valid (Splunk's own words), so a crash of the indexer right after
// may lose them: turn indexer acknowledgement on where Splunk offers it.
//
// # Errors
//
// 400 codes 6, 7, 12, 13 and 15 name one event ("invalid-event-number"):
// it becomes sink.InvalidRecords with that record's batch position and
// Splunk's answer (status, code and text) as the reason, so the shipper
// dead-letters that record with it and resends the others. Splunk has
// already indexed the events before it in that request (and earlier
// requests of the batch), which the resend duplicates under the same ids.
// 408, 429 and 5xx (503 code 9 "Server is busy") and network errors are
// *sink.RetryableError with the Retry-After hint. 401 and 403 (bad or
// disabled token), 404, 413 (MaxRequestBytes over the server's
// max_content_length) and an indexer-acknowledgement mismatch are plain
// errors naming the setting to fix. No error or log line holds the token.
package splunk

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
)

// Defaults.
const (
	// DefaultMaxRequestBytes is Splunk Cloud Platform's HEC request limit
	// (Splunk Enterprise's default max_content_length is 800 MiB): a
	// request this size fits every deployment.
	DefaultMaxRequestBytes = 1_000_000
	// DefaultAckTimeout bounds the wait for indexer acknowledgement.
	DefaultAckTimeout = 30 * time.Second
	// minMaxRequestBytes keeps MaxRequestBytes above the size of ordinary
	// records, which a tiny limit would dead-letter one by one.
	minMaxRequestBytes = 4096
	// requestTimeout bounds one HTTP request, body upload included.
	requestTimeout = 30 * time.Second
)

// Default sourcetypes, per record kind.
const (
	SourcetypeGatewayRequest = "tapline:gateway_request"
	SourcetypeActivityLog    = "tapline:activity_log"
)

// Config is the Splunk HEC sink's configuration (DESIGN.md §4,
// sinks[].splunk_hec).
type Config struct {
	// URL is the HEC base URL, e.g. https://splunk:8088; a URL ending in
	// /services/collector or /services/collector/event is accepted too.
	// http:// is allowed only for a loopback host (emulators): the token is
	// then sent in the clear, with a warning in the log.
	URL string
	// Token is the HEC token. Required. It never appears in errors or logs.
	Token string
	// Index is the index of every record whose kind Indexes does not name;
	// "" leaves it to the token's default index.
	Index string
	// Indexes overrides Index per record kind. Each must be in the token's
	// allowed indexes, or Splunk refuses the events (400 code 7).
	Indexes map[record.Kind]string
	// Sourcetypes overrides the sourcetype per record kind; the defaults
	// are SourcetypeGatewayRequest and SourcetypeActivityLog, and
	// "tapline:<kind>" for any other kind.
	Sourcetypes map[record.Kind]string
	// Source and Host, when set, are every event's source and host; ""
	// leaves them to the token's defaults.
	Source string
	Host   string
	// IndexerAck waits for Splunk's indexer acknowledgement of every
	// request. It must match the token's "indexer acknowledgement" setting.
	IndexerAck bool
	// AckTimeout bounds the wait for acknowledgement of one batch; 0 means
	// DefaultAckTimeout.
	AckTimeout time.Duration
	// InsecureSkipVerify turns off TLS certificate verification. For tests
	// with self-signed certificates only.
	InsecureSkipVerify bool
	// MaxRequestBytes is the largest request body; 0 means
	// DefaultMaxRequestBytes. It must not exceed the server's
	// max_content_length (Splunk answers 413).
	MaxRequestBytes int
}

// Sink sends records to Splunk HEC. Calls are not concurrent (sink.Sink).
type Sink struct {
	base       string // scheme://host[:port][/prefix], no trailing slash
	token      string
	host       string
	source     string
	index      string
	indexes    map[record.Kind]string
	types      map[record.Kind]string
	ack        bool
	ackTimeout time.Duration
	maxBytes   int
	channel    string // X-Splunk-Request-Channel of this sink's requests
	client     *http.Client
	log        *slog.Logger

	// Seams for tests.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	prefixes map[record.Kind][]byte // encoded metadata per kind
	buf      []byte
	closed   bool
}

var (
	_ sink.Sink    = (*Sink)(nil)
	_ sink.Checker = (*Sink)(nil)
)

// hecSuffixes are endpoint paths a configured URL may already end with.
var hecSuffixes = []string{"/services/collector/event/1.0", "/services/collector/event", "/services/collector"}

// New validates cfg and returns a sink. It sends nothing until Write or
// Check.
func New(cfg Config, log *slog.Logger) (*Sink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "sink_splunk")
	base, err := parseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("new splunk sink: %w", err)
	}
	switch {
	case cfg.Token == "":
		return nil, errors.New("new splunk sink: token is empty")
	case strings.ContainsFunc(cfg.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return nil, errors.New("new splunk sink: token holds spaces or control characters")
	case cfg.MaxRequestBytes != 0 && cfg.MaxRequestBytes < minMaxRequestBytes:
		return nil, fmt.Errorf("new splunk sink: max_request_bytes %d is under %d", cfg.MaxRequestBytes, minMaxRequestBytes)
	case cfg.AckTimeout < 0:
		return nil, fmt.Errorf("new splunk sink: ack_timeout %s is negative", cfg.AckTimeout)
	}
	for kind, ix := range cfg.Indexes {
		if strings.TrimSpace(ix) == "" {
			return nil, fmt.Errorf("new splunk sink: indexes[%s] is empty", kind)
		}
	}
	types := map[record.Kind]string{
		record.KindGatewayRequest: SourcetypeGatewayRequest,
		record.KindActivityLog:    SourcetypeActivityLog,
	}
	for kind, st := range cfg.Sourcetypes {
		if strings.TrimSpace(st) == "" {
			return nil, fmt.Errorf("new splunk sink: sourcetypes[%s] is empty", kind)
		}
		types[kind] = st
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if strings.HasPrefix(base, "http://") {
		log.Warn("splunk hec url is http: the token is sent unencrypted (allowed for loopback only)", "url", base)
	}
	if cfg.InsecureSkipVerify {
		log.Warn("tls certificate verification is off for splunk hec", "url", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	tr.TLSClientConfig.InsecureSkipVerify = cfg.InsecureSkipVerify // opt-in, for self-signed test servers
	return &Sink{
		base:       base,
		token:      cfg.Token,
		host:       cfg.Host,
		source:     cfg.Source,
		index:      cfg.Index,
		indexes:    maps.Clone(cfg.Indexes),
		types:      types,
		ack:        cfg.IndexerAck,
		ackTimeout: cfg.AckTimeout,
		maxBytes:   cfg.MaxRequestBytes,
		channel:    uuid.NewString(),
		client:     &http.Client{Transport: tr, Timeout: requestTimeout},
		log:        log,
		now:        time.Now,
		sleep:      sink.Sleep,
		prefixes:   map[record.Kind][]byte{},
	}, nil
}

// parseURL returns the HEC base URL of raw, without an endpoint suffix.
// Its errors show raw without its query, which could hold a ?token=.
func parseURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("url is empty")
	}
	shown := raw
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		shown = raw[:i] + "?..."
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("parse url %q: %w", shown, err)
	}
	switch {
	case u.Host == "":
		return "", fmt.Errorf("url %q has no host", shown)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("url %q has user info, a query or a fragment (the token goes in token)", u.Scheme+"://"+u.Host+u.Path)
	case u.Scheme == "http" && !sink.Loopback(u.Hostname()):
		return "", fmt.Errorf("url %q is http: https is required except for a loopback host", shown)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("url %q is not http or https", shown)
	}
	path := strings.TrimRight(u.Path, "/")
	for _, suf := range hecSuffixes {
		if strings.HasSuffix(path, suf) {
			path = strings.TrimSuffix(path, suf)
			break
		}
	}
	return u.Scheme + "://" + u.Host + path, nil
}

// Write sends recs in requests of at most MaxRequestBytes, in order, and
// with IndexerAck waits until Splunk has indexed them all.
func (s *Sink) Write(ctx context.Context, recs []record.Record) error {
	if s.closed {
		return fmt.Errorf("write splunk sink: %w", sink.ErrClosed)
	}
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write splunk sink: %w", err)
	}
	ends, err := s.encode(recs)
	if err != nil {
		return fmt.Errorf("write splunk sink: %w", err)
	}
	var ackIDs []int64
	for _, rq := range s.pack(ends) {
		id, err := s.send(ctx, rq, ends)
		if err != nil {
			return fmt.Errorf("write splunk sink: %w", err)
		}
		if s.ack {
			ackIDs = append(ackIDs, id)
		}
	}
	if cap(s.buf) > 4<<20 {
		s.buf = nil // do not keep a huge batch's buffer alive
	}
	if s.ack {
		if err := s.waitAcks(ctx, ackIDs); err != nil {
			return fmt.Errorf("write splunk sink: %w", err)
		}
	}
	return nil
}

// Close releases idle connections. Later Writes fail with sink.ErrClosed.
// Closing twice is not an error.
func (s *Sink) Close() error {
	s.closed = true
	s.client.CloseIdleConnections()
	return nil
}
