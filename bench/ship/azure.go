package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/ship"
	"github.com/tapline/tapline/internal/sink/blob"
	"github.com/tapline/tapline/internal/sink/loganalytics"
	"github.com/tapline/tapline/internal/testenv"
)

func init() {
	destinations["azure_blob"] = destination{name: "azure_blob", target: blobTarget}
	destinations["log_analytics"] = destination{name: "log_analytics", target: logAnalyticsTarget}
}

// blobTarget is the blob sink on Azurite persisting to disk under dir
// (--location, not in memory), its own node process.
func blobTarget(dir string) ([]ship.Target, func() (int64, string, error), func(), error) {
	conn, stop, err := testenv.Azurite(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	client, err := azblob.NewClientFromConnectionString(conn, nil)
	if err == nil {
		_, err = client.CreateContainer(context.Background(), "audit", nil)
	}
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	s, err := blob.New(blob.Config{ConnectionString: conn, Container: "audit"}, slog.New(slog.DiscardHandler))
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	count := func() (int64, string, error) {
		var n, blobs int64
		pager := client.NewListBlobsFlatPager("audit", nil)
		for pager.More() {
			page, err := pager.NextPage(context.Background())
			if err != nil {
				return 0, "", err
			}
			for _, it := range page.Segment.BlobItems {
				resp, err := client.DownloadStream(context.Background(), "audit", *it.Name, nil)
				if err != nil {
					return 0, "", err
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					return 0, "", err
				}
				n += int64(bytes.Count(body, []byte("\n")))
				blobs++
			}
		}
		return n, fmt.Sprintf("%d blobs on Azurite (--location on disk)", blobs), nil
	}
	return []ship.Target{{Name: "azure_blob", Sink: s}}, count, func() { stop() }, nil
}

type benchToken string

func (c benchToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(c), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// logAnalyticsTarget is the Logs Ingestion sink on the emulator, which
// runs in this process (its gunzip and JSON checks share the CPU). Its
// note reports the fill ratio of the requests against the 1 MB limit.
func logAnalyticsTarget(string) ([]ship.Target, func() (int64, string, error), func(), error) {
	const dcr, token = "dcr-00000000000000000000000000000000", "bench-token"
	streams := map[record.Kind]string{record.KindGatewayRequest: "Custom-TaplineAIRequests", record.KindActivityLog: "Custom-TaplineActivity"}
	decl := map[string][]emulator.LogsIngestionColumn{}
	for k, s := range streams {
		for _, c := range loganalytics.Columns(k) {
			decl[s] = append(decl[s], emulator.LogsIngestionColumn{Name: c.Name, Type: c.Type})
		}
	}
	url, li, stop, err := emulator.ListenLogsIngestion(context.Background(), "", emulator.LogsIngestionConfig{
		DCRImmutableID: dcr, Tokens: []string{token}, Streams: decl}, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	// As the composition root runs it (cmd/tapline/sinks.go): one loop,
	// with a sink of its own, per stream, and large batches.
	var targets []ship.Target
	for _, k := range []record.Kind{record.KindActivityLog, record.KindGatewayRequest} {
		s, err := loganalytics.New(loganalytics.Config{Endpoint: url, DCRImmutableID: dcr, Streams: streams,
			Credential: benchToken(token), InsecureAllowHTTP: true}, slog.New(slog.DiscardHandler))
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		targets = append(targets, ship.Target{Name: "log_analytics." + string(k), Sink: s, Kinds: []record.Kind{k},
			Batch: ship.Batch{MaxRecords: 100000, MaxBytes: 64 << 20}})
	}
	count := func() (int64, string, error) {
		var n int64
		for _, st := range streams {
			for _, row := range li.Rows(st) {
				if bytes.Contains(row, []byte(`"DataPart":1,`)) {
					n++
				}
			}
		}
		sizes := li.AcceptedSizes()
		var full, all float64
		for i, sz := range sizes {
			all += float64(sz)
			if i < len(sizes)-1 && sz > 0 {
				full += float64(sz)
			}
		}
		const limit = 1 << 20
		over90 := 0
		for _, sz := range sizes {
			if sz*10 >= limit*9 {
				over90++
			}
		}
		note := fmt.Sprintf("%d requests, %d of them over 90%% full; mean fill %.1f%% of 1,048,576 bytes (%.1f%% over all requests); largest %d bytes",
			len(sizes), over90, 100*full/float64(max(len(sizes)-1, 1))/limit, 100*all/float64(max(len(sizes), 1))/limit, maxOf(sizes))
		return n, note, nil
	}
	return targets, count, stop, nil
}

func maxOf(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
