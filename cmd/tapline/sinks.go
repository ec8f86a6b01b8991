package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapline/tapline/internal/azure"
	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/ship"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/blob"
	"github.com/tapline/tapline/internal/sink/eventhubs"
	"github.com/tapline/tapline/internal/sink/file"
	"github.com/tapline/tapline/internal/sink/kafka"
	"github.com/tapline/tapline/internal/sink/loganalytics"
	"github.com/tapline/tapline/internal/sink/splunk"
)

// sinkBuilder builds the sinks of a configuration; it makes the azure
// credential once, and only if a sink needs it.
type sinkBuilder struct {
	cfg  *config.Config
	log  *slog.Logger
	cred azcore.TokenCredential
}

// credential is the azure section's credential, built on first use.
func (b *sinkBuilder) credential() (azcore.TokenCredential, error) {
	if b.cred == nil {
		cred, err := azure.NewCredential(b.cfg.Azure)
		if err != nil {
			return nil, err
		}
		b.cred = cred
	}
	return b.cred, nil
}

// build returns the sink of one sinks entry: the one switch from
// configuration to destination (no registry).
func (b *sinkBuilder) build(s config.Sink) (sink.Sink, error) {
	log := b.log.With("sink", s.Name)
	switch {
	case s.File != nil:
		return file.New(file.Config{Dir: s.File.Dir, MaxBytes: int64(s.File.MaxBytes)}, log)
	case s.EventHubs != nil:
		c := s.EventHubs
		cfg := eventhubs.Config{Namespace: c.Namespace, Hub: c.Hub, ConnectionString: c.ConnectionString,
			PartitionKey: keyMode(c.PartitionKey)}
		if c.ConnectionString == "" {
			cred, err := b.credential()
			if err != nil {
				return nil, err
			}
			cfg.Credential = cred
		}
		return eventhubs.New(cfg, log)
	case s.AzureBlob != nil:
		c := s.AzureBlob
		cfg := blob.Config{AccountURL: c.AccountURL, ConnectionString: c.ConnectionString, SASURL: c.SASURL,
			Container: c.Container, Prefix: c.Prefix, RunbookLayout: c.RunbookLayout}
		if c.AccountURL != "" {
			cred, err := b.credential()
			if err != nil {
				return nil, err
			}
			cfg.Credential = cred
		}
		return blob.New(cfg, log)
	case s.LogAnalytics != nil:
		c := s.LogAnalytics
		cred, err := b.credential()
		if err != nil {
			return nil, err
		}
		insecure := !isHTTPS(c.Endpoint) // config allows http only on loopback
		if insecure {
			log.Warn("sending a bearer token over http to a loopback Logs Ingestion emulator", "endpoint", c.Endpoint)
		}
		return loganalytics.New(loganalytics.Config{Endpoint: c.Endpoint, DCRImmutableID: c.DCRImmutableID,
			Streams: kinds(c.Streams), Credential: cred, Scope: monitorScopes[b.cfg.Azure.Cloud],
			InsecureAllowHTTP: insecure, MaxRequestBytes: int(c.MaxRequestBytes)}, log)
	case s.Kafka != nil:
		c := s.Kafka
		cfg := kafka.Config{Brokers: c.Brokers, Topic: c.Topic, EventHubsConnectionString: c.EventHubsConnectionString,
			Key: keyMode(c.Key), MaxRecordBytes: int(c.MaxRecordBytes)}
		if c.SASL != nil {
			cfg.SASL = kafka.SASL{Mechanism: c.SASL.Mechanism, Username: c.SASL.Username, Password: c.SASL.Password}
		}
		if c.TLS != nil {
			cfg.TLS = kafka.TLS{Enabled: c.TLS.Enabled, CAFile: c.TLS.CAFile, ServerName: c.TLS.ServerName}
		}
		return kafka.New(cfg, log)
	case s.SplunkHEC != nil:
		c := s.SplunkHEC
		return splunk.New(splunk.Config{URL: c.URL, Token: c.Token, Index: c.Index, Indexes: kinds(c.Indexes),
			Sourcetypes: kinds(c.Sourcetypes), Source: c.Source, Host: c.Host, IndexerAck: c.IndexerAck,
			AckTimeout: c.AckTimeout.D(), InsecureSkipVerify: c.InsecureSkipVerify,
			MaxRequestBytes: int(c.MaxRequestBytes)}, log)
	}
	return nil, fmt.Errorf("sink %q: destination %q is not supported by this build", s.Name, s.Destination())
}

// monitorScopes is the Logs Ingestion token scope of each cloud: the
// audience plus "/.default", hence the double slash (azure-contracts §4.2).
var monitorScopes = map[string]string{
	"public":       "https://monitor.azure.com//.default",
	"usgovernment": "https://monitor.azure.us//.default",
	"china":        "https://monitor.azure.cn//.default",
}

// kinds keys a per-kind map of the configuration by record kind.
func kinds(m map[string]string) map[record.Kind]string {
	if m == nil {
		return nil
	}
	out := make(map[record.Kind]string, len(m))
	for k, v := range m {
		out[record.Kind(k)] = v
	}
	return out
}

// keyMode maps the configuration's partition key choice to the sinks'
// ("none" is the same as unset).
func keyMode(k string) string {
	if k == "none" {
		return ""
	}
	return k
}

// newShipper builds every configured sink and the shipper over st, with
// its metrics on reg. On error, the sinks already built are closed.
func newShipper(cfg *config.Config, st ship.Store, reg prometheus.Registerer, log *slog.Logger) (*ship.Shipper, error) {
	b := &sinkBuilder{cfg: cfg, log: log}
	var targets []ship.Target
	for _, s := range cfg.Sinks {
		batch := defaultBatch(s)
		if bc := s.Batch; bc != nil {
			batch = ship.Batch{MaxRecords: bc.MaxRecords, MaxBytes: int(bc.MaxBytes), MaxWait: bc.MaxWait.D()}
		}
		for _, l := range loops(s) {
			dst, err := b.build(s)
			if err != nil {
				for _, t := range targets {
					t.Sink.Close()
				}
				return nil, fmt.Errorf("sink %q: %w", s.Name, err)
			}
			targets = append(targets, ship.Target{Name: l.name, Sink: dst, Kinds: l.kinds, Batch: batch})
		}
	}
	return ship.New(st, targets, reg, log)
}

// sinkLoop is one delivery loop of a configured sink: its cursor name and
// the record kinds it takes (nil: all).
type sinkLoop struct {
	name  string
	kinds []record.Kind
}

// loops returns the delivery loops of a configured sink. Logs Ingestion
// takes one stream per record kind, and a request holds one stream, so it
// runs one loop per kind ("NAME.KIND"): each batch then fills its requests
// instead of ending in a part-empty request per stream (BENCHMARKS.md,
// fill ratio). Every other sink is one loop named as configured.
func loops(s config.Sink) []sinkLoop {
	if s.LogAnalytics == nil || len(s.LogAnalytics.Streams) < 2 {
		return []sinkLoop{{name: s.Name}}
	}
	var out []sinkLoop
	for _, k := range slices.Sorted(maps.Keys(s.LogAnalytics.Streams)) {
		out = append(out, sinkLoop{name: s.Name + "." + k, kinds: []record.Kind{record.Kind(k)}})
	}
	return out
}

// defaultBatch is the batching a destination works best with. Logs
// Ingestion packs a batch into requests of 1 MB after gzip (about 7 MB of
// records), and only the last request of a batch is part empty, so its
// batches are large: 64 MiB fill about 96% of each request under load
// (BENCHMARKS.md, fill ratio), for up to twice that in memory per stream
// (the batch in flight and the one read ahead).
func defaultBatch(s config.Sink) ship.Batch {
	if s.LogAnalytics != nil {
		return ship.Batch{MaxRecords: 100000, MaxBytes: 64 << 20}
	}
	return ship.Batch{}
}

// probeSinks runs every sink's Check, which writes nothing, and prints a
// table. It returns an error if any failed.
func probeSinks(ctx context.Context, w io.Writer, cfg *config.Config, log *slog.Logger) error {
	b := &sinkBuilder{cfg: cfg, log: log}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tDESTINATION\tRESULT")
	failed := 0
	for _, s := range cfg.Sinks {
		result := "ok"
		if err := probeSink(ctx, b, s); err != nil {
			result, failed = "FAILED: "+err.Error(), failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Destination(), result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d sinks failed their probe", failed, len(cfg.Sinks))
	}
	return nil
}

func probeSink(ctx context.Context, b *sinkBuilder, s config.Sink) (err error) {
	dst, err := b.build(s)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, dst.Close()) }()
	c, ok := dst.(sink.Checker)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.Check(ctx)
}
