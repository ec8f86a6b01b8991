// Package kafka is the sink that produces records to a Kafka topic with
// franz-go, including the Event Hubs Kafka endpoint.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Header names set on every record.
const (
	HeaderID      = "id"
	HeaderKind    = "kind"
	HeaderVersion = "version"
)

// Sink produces each record as one Kafka record: the value is the JSON
// envelope (record.AppendJSON), the headers are id, kind and version, and the
// key is chosen by Config.Key.
//
// # Idempotence
//
// The producer is idempotent (issue 5), and New refuses a client that is
// not: it takes a producer id from the broker (InitProducerID) and numbers
// every batch per partition, so a request the client resends after a lost
// or failed reply is de-duplicated by the broker instead of written twice,
// and up to 5 requests can be in flight per broker without reordering a
// partition. franz-go has no option that turns idempotence on, only one
// that turns it off (DisableIdempotentWrite), which the sink never passes;
// idempotence needs acks=all, which the sink sets: every record waits for
// all in-sync replicas.
//
// # Retries
//
// Retries belong to the shipper (internal/ship), which backs off with
// jitter, honours Retry-After, counts and logs them. franz-go retries a
// produce on its own too, and that retrying is kept on purpose, but
// bounded. Only a resend by the same client, with the same producer id and
// sequence numbers, is de-duplicated by the broker: a batch whose reply
// was lost or timed out may have been written, and the shipper's resend
// after a failed Write would carry new sequence numbers and write it
// twice. So franz-go rides out short blips (a lost reply, a leader moving,
// for which it first reloads the metadata, at most once per metadataMinAge)
// for at most recordRetries resends, with a backoff capped at
// retryBackoffMax, and never for longer than Config.Timeout
// (RecordDeliveryTimeout, and Write's own deadline). After that Write fails
// with a retryable error and the shipper takes over; a batch refused with
// an error reply was not written, so that resend duplicates nothing.
// Without these bounds franz-go would retry until the delivery timeout, a
// second retry loop hidden from the shipper's backoff and metrics.
//
// A Write that runs out of time gives up its batch even if it is in flight
// (AllowIdempotentProduceCancellation), so a batch the shipper resends
// after such a Write may be duplicated: the guarantee is at least once, by
// record ID.
type Sink struct {
	cl        *kgo.Client
	topic     string
	key       string
	maxRecord int
	timeout   time.Duration
	auth      *authWatch
	closed    atomic.Bool
}

// franz-go's internal retry bounds (see Retries in the Sink doc).
const (
	// recordRetries is how many times franz-go resends a batch that failed
	// with a retriable error before Write fails and the shipper retries.
	recordRetries = 3
	// retryBackoffMin and retryBackoffMax bound franz-go's backoff between
	// those resends (its default grows to 5s): the shipper's backoff does
	// the long waits.
	retryBackoffMin = 100 * time.Millisecond
	retryBackoffMax = 800 * time.Millisecond
	// metadataMinAge is the least time between metadata reloads, which
	// franz-go makes before resending a batch refused by a partition error
	// (NOT_LEADER_FOR_PARTITION and the like). Its 5s default would make
	// every such resend wait 5s, the three of them longer than a leader
	// election usually takes.
	metadataMinAge = time.Second
)

// retryBackoff is franz-go's wait before its fails-th retry: doubling from
// retryBackoffMin up to retryBackoffMax, with ±20% jitter as franz-go's
// own backoff has, so that partitions that failed together do not retry
// together.
func retryBackoff(fails int) time.Duration {
	d := retryBackoffMax
	if fails < 8 {
		d = min(retryBackoffMin<<max(fails-1, 0), retryBackoffMax)
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// ErrAuthentication marks a Write or Check during which a broker refused the
// SASL authentication: wrong credentials, which retrying does not fix.
var ErrAuthentication = errors.New("broker refused the sasl authentication")

var (
	_ sink.Sink    = (*Sink)(nil)
	_ sink.Checker = (*Sink)(nil)
)

// New validates cfg and returns a sink whose client connects lazily: New
// itself does not reach the brokers (Check does).
func New(cfg Config, log *slog.Logger) (*Sink, error) {
	st, err := parse(cfg)
	if err != nil {
		return nil, fmt.Errorf("new kafka sink: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "sink_kafka")
	auth := &authWatch{}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(st.brokers...),
		kgo.DefaultProduceTopic(st.topic),
		// Idempotent producing (franz-go's default, checked below)
		// requires acks=all.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(st.maxRecord + batchOverhead)),
		// franz-go's own retries, bounded (see Retries above).
		kgo.RecordRetries(recordRetries),
		kgo.RetryBackoffFn(retryBackoff),
		kgo.MetadataMinAge(metadataMinAge),
		kgo.RecordDeliveryTimeout(st.timeout),
		// Without this, a batch in flight when a broker vanishes blocks
		// Write until the broker comes back, whatever the context says:
		// the client will not give up a request whose outcome it does not
		// know. The shipper needs Write to return, and resending such a
		// batch at worst duplicates it, which at least once allows.
		kgo.AllowIdempotentProduceCancellation(),
		kgo.WithLogger(logger{log}),
		kgo.WithHooks(auth),
	}, st.opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("new kafka sink: %w", err)
	}
	if off, _ := cl.OptValue(kgo.DisableIdempotentWrite).(bool); off {
		cl.Close()
		return nil, errors.New("new kafka sink: the producer is not idempotent")
	}
	return &Sink{
		cl:        cl,
		topic:     st.topic,
		key:       st.key,
		maxRecord: st.maxRecord,
		timeout:   st.timeout,
		auth:      auth,
	}, nil
}

// Write produces recs in order and returns after the brokers acknowledged
// every one. It checks every record's size first and, if any is over
// MaxRecordBytes, refuses them with sink.InvalidRecords without producing
// anything. Records that share a partition arrive in the order of recs.
func (s *Sink) Write(ctx context.Context, recs []record.Record) error {
	if s.closed.Load() {
		return fmt.Errorf("write kafka sink: %w", sink.ErrClosed)
	}
	if len(recs) == 0 {
		return nil
	}
	krs := make([]*kgo.Record, len(recs))
	var over []int
	var overSize int
	for i := range recs {
		kr := s.kafkaRecord(recs[i])
		if n := recordSize(kr); n > s.maxRecord {
			if len(over) == 0 {
				overSize = n
			}
			over = append(over, i)
		}
		krs[i] = kr
	}
	if len(over) > 0 {
		return fmt.Errorf("write kafka sink: %w", sink.InvalidRecords(nil, fmt.Sprintf(
			"record of %d bytes is over the destination's %d-byte limit", overSize, s.maxRecord), over...))
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	failed := s.auth.failures.Load()
	if err := s.cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		return fmt.Errorf("write kafka sink: %w", s.classify(ctx, err, failed))
	}
	return nil
}

// kafkaRecord builds the Kafka record of r. Its slices are new: Write must
// not retain the caller's records.
func (s *Sink) kafkaRecord(r record.Record) *kgo.Record {
	kr := &kgo.Record{
		Topic: s.topic,
		Value: record.AppendJSON(nil, r),
		Headers: []kgo.RecordHeader{
			{Key: HeaderID, Value: []byte(r.ID)},
			{Key: HeaderKind, Value: []byte(r.Kind)},
			{Key: HeaderVersion, Value: strconv.AppendInt(nil, int64(r.Version), 10)},
		},
	}
	if k := recordKey(s.key, r); k != "" {
		kr.Key = []byte(k)
	}
	return kr
}

// recordKey returns the key that mode gives r, "" for none.
func recordKey(mode string, r record.Record) string {
	switch {
	case mode == KeyPrincipal && r.Kind == record.KindGatewayRequest:
		return record.PrincipalID(r.Data)
	case mode == KeyScope && r.Kind == record.KindActivityLog:
		return record.ScopeKey(r.Data)
	}
	return ""
}

// recordSize is the bytes of kr that count against MaxRecordBytes: value,
// key and headers. The batch framing is covered by batchOverhead.
func recordSize(kr *kgo.Record) int {
	n := len(kr.Value) + len(kr.Key)
	for _, h := range kr.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Check asks the brokers for the topic's metadata, which proves that they are
// reachable, accept the credentials, and hold the topic. It writes nothing
// and does not create the topic.
func (s *Sink) Check(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("check kafka sink: %w", sink.ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(s.topic)
	req.Topics = append(req.Topics, t)
	req.AllowAutoTopicCreation = false
	failed := s.auth.failures.Load()
	resp, err := req.RequestWith(ctx, s.cl)
	if err != nil {
		return fmt.Errorf("check kafka sink: %w", s.classify(ctx, err, failed))
	}
	for _, rt := range resp.Topics {
		if rt.Topic == nil || *rt.Topic != s.topic {
			continue
		}
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			return fmt.Errorf("check kafka sink: topic %q: %w", s.topic, classify(ctx, err))
		}
		if len(rt.Partitions) == 0 {
			return fmt.Errorf("check kafka sink: topic %q has no partitions", s.topic)
		}
		return nil
	}
	return fmt.Errorf("check kafka sink: topic %q: %w", s.topic, kerr.UnknownTopicOrPartition)
}

// Close closes the client; records still buffered are failed. Later Writes
// fail with sink.ErrClosed. Closing twice is not an error.
func (s *Sink) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cl.Close()
	return nil
}

// authWatch counts the SASL exchanges that failed. Brokers differ in how
// they refuse a password: Kafka answers SASL_AUTHENTICATION_FAILED, others
// (kfake among them) just close the connection, which franz-go reports as a
// retryable EOF. A failed SASL read during a call tells the two apart.
type authWatch struct{ failures atomic.Int64 }

var _ kgo.HookBrokerRead = (*authWatch)(nil)

// OnBrokerRead counts failed reads of SASL handshake and authenticate
// responses.
func (w *authWatch) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err != nil && (key == saslHandshakeKey || key == saslAuthenticateKey) {
		w.failures.Add(1)
	}
}

// Kafka API keys of the SASL exchange.
var (
	saslHandshakeKey    = kmsg.NewPtrSASLHandshakeRequest().Key()
	saslAuthenticateKey = kmsg.NewPtrSASLAuthenticateRequest().Key()
)

// classify classifies err as the package-level classify does, except that
// a call during which SASL authentication failed (failures moved on from
// before) gives a plain ErrAuthentication error.
func (s *Sink) classify(ctx context.Context, err error, before int64) error {
	if s.auth.failures.Load() != before && !errors.Is(err, kerr.SaslAuthenticationFailed) {
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	return classify(ctx, err)
}

// classify tells the shipper what to do with a produce or metadata error
// (the error rules of the sink contract):
//   - the broker refused the batch's content (MESSAGE_TOO_LARGE,
//     INVALID_RECORD, CORRUPT_MESSAGE, RECORD_LIST_TOO_LARGE): a
//     sink.InvalidError for the whole batch, which the shipper bisects.
//     Records of other partitions may have been written: at least once.
//   - credentials, authorization and a missing topic: a plain error; the
//     shipper keeps retrying at its longest backoff and shows it.
//   - Kafka's retriable codes, network errors, timeouts (Config.Timeout
//     included) and a client that gave up retrying: *sink.RetryableError.
//
// None of these errors holds the password: franz-go does not put SASL
// secrets in its errors, and no message here adds them.
func classify(ctx context.Context, err error) error {
	if _, ok := errors.AsType[*kerr.Error](err); ok {
		return classifyCode(err)
	}
	var firstEOF *kgo.ErrFirstReadEOF
	switch {
	case errors.As(err, &firstEOF):
		// The broker hung up at once: franz-go's sign of a SASL or TLS
		// mismatch (a wrong password on some brokers), which retrying
		// does not fix.
		return err
	case errors.Is(err, context.Canceled) && ctx.Err() == context.Canceled:
		return err
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, kgo.ErrRecordTimeout),
		errors.Is(err, kgo.ErrRecordRetries),
		kgo.IsRetryableBrokerErr(err),
		isNetErr(err):
		return &sink.RetryableError{Err: err}
	}
	return err
}

// classifyCode classifies an error that carries a Kafka error code.
func classifyCode(err error) error {
	switch {
	case errors.Is(err, kerr.MessageTooLarge),
		errors.Is(err, kerr.InvalidRecord),
		errors.Is(err, kerr.CorruptMessage),
		errors.Is(err, kerr.RecordListTooLarge):
		return sink.Invalid(err, "the broker refused the batch's content")
	case errors.Is(err, kerr.SaslAuthenticationFailed),
		errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed),
		errors.Is(err, kerr.UnknownTopicOrPartition),
		errors.Is(err, kerr.InvalidTopicException),
		errors.Is(err, kerr.UnsupportedSaslMechanism),
		errors.Is(err, kerr.IllegalSaslState):
		return err
	case kerr.IsRetriable(err):
		return &sink.RetryableError{Err: err}
	}
	return err
}
