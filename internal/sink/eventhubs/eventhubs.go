// Package eventhubs is the sink that sends records as events to an Azure
// Event Hub through the azeventhubs SDK.
package eventhubs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
)

// Partition key choices for Config.PartitionKey.
const (
	// PartitionByPrincipal keys gateway_request records by their principal
	// (record.Principal.ID: key name, else UPN, else object id).
	PartitionByPrincipal = "principal"
	// PartitionByScope keys activity_log records by their scope id (the
	// management group or subscription id; "tenant" for the tenant scope).
	PartitionByScope = "scope"
)

// closeTimeout bounds Close: every shutdown has a deadline.
const closeTimeout = 10 * time.Second

// Config is the Event Hubs sink's configuration (DESIGN.md §4,
// sinks[].event_hubs). Exactly one of Credential and ConnectionString is set.
type Config struct {
	// Namespace is the fully qualified namespace, for example
	// contoso.servicebus.windows.net. Required with Credential.
	Namespace string
	// Hub is the event hub's name. Required with Credential, and with a
	// ConnectionString that has no EntityPath; must be empty if it has one.
	Hub string
	// Credential authenticates with Entra ID (azidentity); the identity needs
	// the "Azure Event Hubs Data Sender" role on the hub or namespace.
	Credential azcore.TokenCredential
	// ConnectionString is a SAS connection string
	// (Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...[;EntityPath=...]).
	// It is a secret: it never appears in errors or logs.
	ConnectionString string
	// PartitionKey is "" (no key: the service spreads events over
	// partitions), PartitionByPrincipal or PartitionByScope. Records of the
	// other kind, or without the field, are sent without a key.
	PartitionKey string
	// Properties are application properties added to every event, beside
	// id, kind and version, which they may not replace.
	Properties map[string]string
}

// Sink sends each record as one event whose body is the record envelope
// (record.AppendJSON) and whose application properties are id, kind and
// version, so that consumers can filter without parsing the body. Records
// go out in SDK-sized batches (EventDataBatch); consecutive records with the
// same partition key share a batch, and batches are sent in record order.
type Sink struct {
	client  *azeventhubs.ProducerClient
	keyMode string
	props   map[string]any
	log     *slog.Logger

	limit  uint64 // the link's message size limit once probed, 0 before
	closed bool
}

var (
	_ sink.Sink    = (*Sink)(nil)
	_ sink.Checker = (*Sink)(nil)
)

// reserved are the application properties the sink sets itself.
var reserved = []string{"id", "kind", "version"}

// New validates cfg and creates the producer client. It does not connect:
// the first Write or Check does.
func New(cfg Config, log *slog.Logger) (*Sink, error) {
	return build(cfg, log, nil)
}

// build is New with a TLS configuration, which tests use to trust the
// stand-in's certificate on the credential path (always TLS).
func build(cfg Config, log *slog.Logger, tlsConfig *tls.Config) (*Sink, error) {
	if err := validate(cfg); err != nil {
		return nil, fmt.Errorf("new event hubs sink: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The shipper owns retries (sink.Sink): the SDK makes one attempt per
	// call (MaxRetries < 0), still recovering a broken link or connection
	// for the next call, and never sleeps inside Write.
	opts := &azeventhubs.ProducerClientOptions{
		ApplicationID: "tapline",
		RetryOptions:  azeventhubs.RetryOptions{MaxRetries: -1},
		TLSConfig:     tlsConfig,
	}
	var (
		client *azeventhubs.ProducerClient
		err    error
	)
	if cfg.ConnectionString != "" {
		client, err = azeventhubs.NewProducerClientFromConnectionString(cfg.ConnectionString, cfg.Hub, opts)
	} else {
		client, err = azeventhubs.NewProducerClient(cfg.Namespace, cfg.Hub, cfg.Credential, opts)
	}
	if err != nil {
		// The SDK's parse errors name keys, never their values.
		return nil, fmt.Errorf("new event hubs sink: %w", err)
	}
	props := make(map[string]any, len(cfg.Properties)+len(reserved))
	for k, v := range cfg.Properties {
		props[k] = v
	}
	return &Sink{
		client:  client,
		keyMode: cfg.PartitionKey,
		props:   props,
		log:     log.With("component", "sink_eventhubs"),
	}, nil
}

func validate(cfg Config) error {
	switch {
	case cfg.ConnectionString != "" && cfg.Credential != nil:
		return errors.New("set either a connection string or a credential, not both")
	case cfg.ConnectionString == "" && cfg.Credential == nil:
		return errors.New("set a connection string or a credential")
	case cfg.Credential != nil && cfg.Namespace == "":
		return errors.New("namespace is empty")
	case cfg.Credential != nil && strings.Contains(cfg.Namespace, "://"):
		return fmt.Errorf("namespace %q must be a host name such as contoso.servicebus.windows.net, not a URL", cfg.Namespace)
	case cfg.Credential != nil && cfg.Hub == "":
		return errors.New("hub is empty")
	}
	switch cfg.PartitionKey {
	case "", PartitionByPrincipal, PartitionByScope:
	default:
		return fmt.Errorf("partition_key %q is not %q, %q or empty", cfg.PartitionKey, PartitionByPrincipal, PartitionByScope)
	}
	for _, k := range reserved {
		if _, ok := cfg.Properties[k]; ok {
			return fmt.Errorf("property %q is set by the sink itself", k)
		}
	}
	return nil
}

// Write sends recs in order. It first packs every record into batches and
// refuses the whole Write with sink.InvalidRecords, sending nothing, if any
// record alone does not fit the hub's message size limit. A failure after
// some batches were sent leaves them delivered: the shipper's retry
// duplicates them, which at-least-once allows (consumers dedupe on id).
func (s *Sink) Write(ctx context.Context, recs []record.Record) error {
	if s.closed {
		return fmt.Errorf("write event hubs sink: %w", sink.ErrClosed)
	}
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write event hubs sink: %w", &sink.RetryableError{Err: err})
	}
	batches, err := s.pack(ctx, recs)
	if err != nil {
		return fmt.Errorf("write event hubs sink: %w", err)
	}
	for i, b := range batches {
		if err := s.client.SendEventDataBatch(ctx, b, nil); err != nil {
			if i > 0 {
				s.log.Debug("batch failed after earlier batches were sent", "sent_batches", i, "batches", len(batches))
			}
			return fmt.Errorf("write event hubs sink: send batch %d of %d: %w", i+1, len(batches), classify(err))
		}
	}
	return nil
}

// pack builds the SDK batches for recs, or returns an *sink.InvalidError
// naming every record that does not fit an empty batch.
func (s *Sink) pack(ctx context.Context, recs []record.Record) ([]*azeventhubs.EventDataBatch, error) {
	var (
		out    []*azeventhubs.EventDataBatch
		cur    *azeventhubs.EventDataBatch
		curKey string
		bad    []int
		sizes  []int
	)
	for i := range recs {
		key := s.partitionKey(recs[i])
		ev := s.event(recs[i])
		if cur != nil && key == curKey {
			err := cur.AddEventData(ev, nil)
			if err == nil {
				continue
			}
			if !errors.Is(err, azeventhubs.ErrEventDataTooLarge) {
				return nil, fmt.Errorf("add event: %w", err)
			}
		}
		if cur != nil && cur.NumEvents() > 0 {
			out = append(out, cur)
		}
		b, err := s.newBatch(ctx, key)
		if err != nil {
			return nil, err
		}
		cur, curKey = b, key
		err = cur.AddEventData(ev, nil)
		switch {
		case errors.Is(err, azeventhubs.ErrEventDataTooLarge):
			bad = append(bad, i)
			sizes = append(sizes, len(ev.Body))
		case err != nil:
			return nil, fmt.Errorf("add event: %w", err)
		}
	}
	if len(bad) > 0 {
		return nil, sink.InvalidRecords(nil, s.tooLarge(ctx, recs, bad, sizes), bad...)
	}
	if cur != nil && cur.NumEvents() > 0 {
		out = append(out, cur)
	}
	return out, nil
}

func (s *Sink) newBatch(ctx context.Context, key string) (*azeventhubs.EventDataBatch, error) {
	var opts azeventhubs.EventDataBatchOptions
	if key != "" {
		opts.PartitionKey = &key
	}
	b, err := s.client.NewEventDataBatch(ctx, &opts)
	if err != nil {
		return nil, fmt.Errorf("new batch: %w", classify(err))
	}
	return b, nil
}

// tooLarge is the dead-letter reason for records over the size limit.
func (s *Sink) tooLarge(ctx context.Context, recs []record.Record, bad, sizes []int) string {
	limit := "message size limit"
	if n := s.sizeLimit(ctx); n > 0 {
		limit = fmt.Sprintf("%d-byte message size limit", n)
	}
	// The SDK counts the AMQP framing and properties too, so a record a
	// little under the limit as JSON may still be over it.
	if len(bad) == 1 {
		return fmt.Sprintf("record %q of %d bytes (as JSON, before AMQP framing) is over the event hub's %s",
			recs[bad[0]].ID, sizes[0], limit)
	}
	return fmt.Sprintf("%d records (the first %q of %d bytes as JSON, before AMQP framing) are over the event hub's %s",
		len(bad), recs[bad[0]].ID, sizes[0], limit)
}

// sizeLimit finds the link's max message size, which the SDK does not
// expose, from the documented rule that NewEventDataBatch refuses a MaxBytes
// above it; the link is cached, so the probes stay local. It returns 0 if
// the probes give no answer. Only a refused record pays for it, once.
func (s *Sink) sizeLimit(ctx context.Context) uint64 {
	if s.limit > 0 {
		return s.limit
	}
	fits := func(n uint64) bool {
		_, err := s.client.NewEventDataBatch(ctx, &azeventhubs.EventDataBatchOptions{MaxBytes: n})
		return err == nil
	}
	lo, hi := uint64(1), uint64(1)<<40 // fits(lo), !fits(hi)
	if !fits(lo) || fits(hi) {
		return 0
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	s.limit = lo
	return lo
}

// event builds rec's event. Body is a fresh buffer, so Write keeps no
// reference to the caller's records.
func (s *Sink) event(r record.Record) *azeventhubs.EventData {
	props := make(map[string]any, len(s.props)+len(reserved))
	for k, v := range s.props {
		props[k] = v
	}
	props["id"] = r.ID
	props["kind"] = string(r.Kind)
	props["version"] = int64(r.Version)
	ct, id := "application/json", r.ID
	return &azeventhubs.EventData{
		Body:        record.AppendJSON(nil, r),
		ContentType: &ct,
		MessageID:   &id,
		Properties:  props,
	}
}

// partitionKey returns the record's partition key under the configured
// mode, "" for none.
func (s *Sink) partitionKey(r record.Record) string {
	switch {
	case s.keyMode == PartitionByPrincipal && r.Kind == record.KindGatewayRequest:
		return record.PrincipalID(r.Data)
	case s.keyMode == PartitionByScope && r.Kind == record.KindActivityLog:
		return record.ScopeKey(r.Data)
	}
	return ""
}

// Check reads the hub's properties and opens the send link (a $cbs claim
// for sending and an attach to the hub), which proves the hub exists and
// the credential may send to it. It sends no event.
func (s *Sink) Check(ctx context.Context) error {
	if s.closed {
		return fmt.Errorf("check event hubs sink: %w", sink.ErrClosed)
	}
	if _, err := s.client.GetEventHubProperties(ctx, nil); err != nil {
		return fmt.Errorf("check event hubs sink: get hub properties: %w", classify(err))
	}
	if _, err := s.client.NewEventDataBatch(ctx, nil); err != nil {
		return fmt.Errorf("check event hubs sink: open sender: %w", classify(err))
	}
	return nil
}

// Close closes the producer client, within closeTimeout. Later Writes fail
// with sink.ErrClosed. Closing twice is not an error.
func (s *Sink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := s.client.Close(ctx); err != nil {
		return fmt.Errorf("close event hubs sink: %w", err)
	}
	return nil
}
