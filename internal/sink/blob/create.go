package blob

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	azblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/tapline/tapline/internal/record"
	"github.com/tidwall/gjson"
)

// layout is one way of writing a group of items as blobs: the JSON Lines
// blobs of records, or the runbook layout's JSON arrays of events.
type layout struct {
	// name is the blob that holds the items from index first on.
	name func(first int) string
	// encode returns the blob content of items[from:].
	encode func(from int) []byte
	// keys returns the keys of the items a blob holds, in order; an error
	// means the blob is not one this layout wrote.
	keys func(body []byte) ([][]byte, error)
	// key is the key of item i, compared with what keys returns.
	key func(i int) []byte
	// n is the number of items.
	n int
}

// putCreateOnly writes the items of l create-only (If-None-Match: *), so a
// retry never overwrites a blob. When the blob is already there, an earlier
// attempt of this batch wrote it, maybe holding fewer or more records
// (after a restart the shipper may retry from the same record with a
// different batch size):
//   - it holds exactly these items, or these and more: done;
//   - it holds a prefix of them: the rest goes, create-only again, to the
//     blob named after the first record of the rest;
//   - anything else is another record under this name: an error naming the
//     blob, as the sink never overwrites and never loses a record.
func (s *Sink) putCreateOnly(ctx context.Context, l layout) error {
	for start := 0; start < l.n; {
		name := l.name(start)
		err := s.upload(ctx, name, l.encode(start))
		if err == nil {
			return nil
		}
		if !bloberror.HasCode(err, bloberror.BlobAlreadyExists) {
			return s.classify("put blob", name, err)
		}
		body, err := s.download(ctx, name)
		if err != nil {
			return s.classify("get blob", name, err)
		}
		have, err := l.keys(body)
		if err != nil || len(have) == 0 {
			return fmt.Errorf("blob %q already exists and is not one this sink wrote", name)
		}
		rest := l.n - start
		for i := range min(len(have), rest) {
			if !bytes.Equal(have[i], l.key(start+i)) {
				return fmt.Errorf("blob %q already exists and holds other records (item %d is %.80q, want %.80q)",
					name, i, have[i], l.key(start+i))
			}
		}
		if len(have) >= rest {
			s.log.Debug("blob already written by an earlier attempt", "blob", name, "records", len(have))
			return nil
		}
		s.log.Info("blob holds part of a retried batch, writing the rest", "blob", name,
			"records", len(have), "rest", rest-len(have))
		start += len(have)
	}
	return nil
}

// upload puts body as a new block blob, failing with 409 BlobAlreadyExists
// if the name is taken. Put Blob is atomic: a blob is whole or absent.
func (s *Sink) upload(ctx context.Context, name string, body []byte) error {
	bb := s.cc.NewBlockBlobClient(name)
	etagAny := azcore.ETagAny
	_, err := bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(body)), &blockblob.UploadOptions{
		HTTPHeaders: &azblob.HTTPHeaders{BlobContentType: contentType(name)},
		AccessConditions: &azblob.AccessConditions{
			ModifiedAccessConditions: &azblob.ModifiedAccessConditions{IfNoneMatch: &etagAny},
		},
	})
	return err
}

// download returns a blob's content.
func (s *Sink) download(ctx context.Context, name string) ([]byte, error) {
	resp, err := s.cc.NewBlobClient(name).DownloadStream(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func contentType(name string) *string {
	ct := "application/json"
	if strings.HasSuffix(name, ".jsonl") {
		ct = "application/x-ndjson"
	}
	return &ct
}

// linesLayout writes the records g names from batch as JSON Lines, one
// envelope per line, keyed by record id.
func (s *Sink) linesLayout(recs []record.Record, g *group) layout {
	return layout{
		n:    len(g.recs),
		name: func(first int) string { return blobName(s.prefix, g, recs[g.recs[first]].ID) },
		encode: func(from int) []byte {
			var buf []byte
			for _, i := range g.recs[from:] {
				buf = record.AppendJSON(buf, recs[i])
				buf = append(buf, '\n')
			}
			return buf
		},
		key: func(i int) []byte { return []byte(recs[g.recs[i]].ID) },
		keys: func(body []byte) ([][]byte, error) {
			var ids [][]byte
			for line := range bytes.Lines(body) {
				id := gjson.GetBytes(line, "id")
				if id.Type != gjson.String {
					return nil, fmt.Errorf("line without an id")
				}
				ids = append(ids, []byte(id.String()))
			}
			return ids, nil
		},
	}
}

// runbookLayout writes the original ARM events of an activity group as one
// JSON array, the layout the management-group runbook produced, keyed by
// the event's bytes. It takes only the records without a collection run
// (stored by a version before the field); those with one go to their
// run's blob (appendRun). Records without an event are left out.
func (s *Sink) runbookLayout(recs []record.Record, g *group) layout {
	var idx []int
	var events [][]byte
	for _, i := range g.recs {
		ev, run := eventRun(recs[i])
		if !ev.Exists() || run != "" {
			continue
		}
		idx = append(idx, i)
		events = append(events, []byte(ev.Raw))
	}
	return layout{
		n:    len(idx),
		name: func(first int) string { return runbookName(s.prefix, g, recs[idx[first]]) },
		encode: func(from int) []byte {
			buf := []byte("[\n")
			for j, ev := range events[from:] {
				if j > 0 {
					buf = append(buf, ",\n"...)
				}
				buf = append(buf, ev...)
			}
			return append(buf, "\n]\n"...)
		},
		key: func(i int) []byte { return events[i] },
		keys: func(body []byte) ([][]byte, error) {
			arr := gjson.ParseBytes(body)
			if !arr.IsArray() {
				return nil, fmt.Errorf("not a JSON array")
			}
			var out [][]byte
			arr.ForEach(func(_, v gjson.Result) bool {
				out = append(out, []byte(v.Raw))
				return true
			})
			return out, nil
		},
	}
}
