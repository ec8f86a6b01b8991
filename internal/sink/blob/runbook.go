package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	azblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tidwall/gjson"
)

// The runbook layout writes the events of one management group and one
// collection run as one JSON array (issue 5), although they arrive over
// many batches. The array is a block blob whose committed block list is
//
//	[first part] [next part]... [close]
//
// The first part holds "[\n" and its events joined by ",\n", every next
// part ",\n" and its events, the closing block "\n]\n". Each Write stages
// one part per group and commits the list with the new part before the
// closing block, on the ETag it read (If-None-Match: * for a new blob), so
// that the blob is a whole JSON array after every commit and no two
// writers interleave.
//
// A block id is its kind ('[', ',' or ']'), "rb1", and the first 16 bytes
// of the SHA-256 of the part's first and of its last record id (zeros for
// the closing block): 36 bytes, base64 without padding. Every id has the
// same length, as the service requires. The same records always give the
// same id and the same content, so a block staged again after a crash (or
// staged by a concurrent attempt) has the bytes its id stands for, and the
// committed list tells which record the blob ends with.
const (
	kindFirst = '['
	kindNext  = ','
	kindClose = ']'

	blockIDLen = 36
	hashLen    = 16
)

var closeBlockID = base64.StdEncoding.EncodeToString(append([]byte{kindClose, 'r', 'b', '1'}, make([]byte, 2*hashLen)...))

// closeBlock is the content of the closing block.
var closeBlock = []byte("\n]\n")

type idHash [hashLen]byte

func hashID(id string) idHash {
	sum := sha256.Sum256([]byte(id))
	return idHash(sum[:hashLen])
}

// blockID returns the id of a part of kind holding the records from first
// to last.
func blockID(kind byte, first, last string) string {
	raw := make([]byte, 0, blockIDLen)
	raw = append(raw, kind, 'r', 'b', '1')
	f, l := hashID(first), hashID(last)
	raw = append(append(raw, f[:]...), l[:]...)
	return base64.StdEncoding.EncodeToString(raw)
}

// part is a committed block of a run blob.
type part struct {
	id   string
	last idHash // of the part's last record id
}

// parseParts checks that blocks is a run blob's committed list, parts then
// the closing block, and returns its parts.
func parseParts(blocks []*blockblob.Block) ([]part, error) {
	if len(blocks) < 2 {
		return nil, errors.New("it holds no parts and closing block")
	}
	parts := make([]part, 0, len(blocks)-1)
	for i, b := range blocks {
		if b == nil || b.Name == nil {
			return nil, fmt.Errorf("block %d has no id", i)
		}
		raw, err := base64.StdEncoding.DecodeString(*b.Name)
		if err != nil || len(raw) != blockIDLen || string(raw[1:4]) != "rb1" {
			return nil, fmt.Errorf("block %d has a foreign id", i)
		}
		want := byte(kindNext)
		switch i {
		case 0:
			want = kindFirst
		case len(blocks) - 1:
			if *b.Name != closeBlockID {
				return nil, errors.New("it does not end with the closing block")
			}
			return parts, nil
		}
		if raw[0] != want {
			return nil, fmt.Errorf("block %d is of kind %q, want %q", i, raw[0], want)
		}
		p := part{id: *b.Name}
		copy(p.last[:], raw[4+hashLen:])
		parts = append(parts, p)
	}
	return parts, nil
}

// runGroup is the events of one management group and one collection run
// in a batch, in batch order.
type runGroup struct {
	name   string   // the run blob
	ids    []string // record ids
	events [][]byte // the original events, as the records embed them
}

// runGroups gathers the activity records of recs that have an event and a
// collection run by (scope, run), in order of their first record.
func runGroups(prefix string, recs []record.Record) []*runGroup {
	var out []*runGroup
	index := make(map[string]*runGroup)
	for i := range recs {
		if recs[i].Kind != record.KindActivityLog {
			continue
		}
		ev, run := eventRun(recs[i])
		if !ev.Exists() || run == "" {
			continue
		}
		_, scope := kindScope(recs[i])
		name := runbookRunName(prefix, scope, run)
		g := index[name]
		if g == nil {
			g = &runGroup{name: name}
			index[name] = g
			out = append(out, g)
		}
		g.ids = append(g.ids, recs[i].ID)
		g.events = append(g.events, []byte(ev.Raw))
	}
	return out
}

// eventRun returns the original event an activity record embeds and the
// collection run that stored it ("" for a record stored before the field).
func eventRun(rec record.Record) (gjson.Result, string) {
	res := gjson.GetManyBytes(rec.Data, "event", "collection_run")
	if res[1].Type != gjson.String {
		return res[0], ""
	}
	return res[0], res[1].Str
}

// appendRun adds the events of g that its blob lacks as one part. It
// returns the blob's ETag when the blob then ends with g's last event
// (the next batch starts after it), "" when it holds more.
//
// Batches arrive in order and at least once: the blob holds the run's
// events up to some point and a batch starts at or before it, so the
// events of g already there are a prefix of g's. Which prefix is told by
// the committed list when g holds the blob's last record, else by what
// this sink last committed, else by reading the blob.
func (s *Sink) appendRun(ctx context.Context, g *runGroup) (string, error) {
	bb := s.cc.NewBlockBlobClient(g.name)
	var parts []part
	var etag *azcore.ETag
	list, err := bb.GetBlockList(ctx, blockblob.BlockListTypeCommitted, nil)
	switch {
	case bloberror.HasCode(err, bloberror.BlobNotFound):
	case err != nil:
		return "", s.classify("get block list", g.name, err)
	case len(list.CommittedBlocks) == 0:
		// Blocks staged by an attempt that did not commit make a blob
		// that only Get Block List sees; one written whole (Put Blob)
		// has no blocks either, and is not ours.
		if err := s.absent(ctx, g.name); err != nil {
			return "", err
		}
	default:
		if parts, err = parseParts(list.CommittedBlocks); err != nil {
			return "", fmt.Errorf("blob %q already exists and is not a runbook array this sink wrote: %w", g.name, err)
		}
		if etag = list.ETag; etag == nil {
			return "", fmt.Errorf("get block list %q: the service sent no ETag to append on", g.name)
		}
	}
	skip, ahead, err := s.skipCommitted(ctx, g, parts, etag)
	if err != nil {
		return "", err
	}
	if skip == len(g.events) {
		s.log.Debug("run blob already holds the batch's events", "blob", g.name, "events", skip)
		if ahead {
			return "", nil
		}
		return normETag(etag), nil
	}
	kind := byte(kindNext)
	if len(parts) == 0 {
		kind = kindFirst
	}
	id := blockID(kind, g.ids[skip], g.ids[len(g.ids)-1])
	if err := s.stage(ctx, bb, g.name, id, encodePart(kind, g.events[skip:])); err != nil {
		return "", err
	}
	ids := make([]string, 0, len(parts)+2)
	for _, p := range parts {
		ids = append(ids, p.id)
	}
	ids = append(ids, id, closeBlockID)
	cond := &azblob.ModifiedAccessConditions{IfMatch: etag}
	if etag == nil {
		if err := s.stage(ctx, bb, g.name, closeBlockID, closeBlock); err != nil {
			return "", err
		}
		etagAny := azcore.ETagAny
		cond = &azblob.ModifiedAccessConditions{IfNoneMatch: &etagAny}
	}
	resp, err := bb.CommitBlockList(ctx, ids, &blockblob.CommitBlockListOptions{
		HTTPHeaders:      &azblob.HTTPHeaders{BlobContentType: contentType(g.name)},
		AccessConditions: &azblob.AccessConditions{ModifiedAccessConditions: cond},
	})
	switch {
	case err == nil:
		return normETag(resp.ETag), nil
	case bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.BlobAlreadyExists):
		return "", changedError(g.name, err)
	}
	err = s.classify("put block list", g.name, err)
	if se := (*StatusError)(nil); errors.As(err, &se) && se.Code == string(bloberror.BlockCountExceedsLimit) {
		se.Hint = "the run's array has the 50,000 parts a blob may hold"
	}
	return "", err
}

// skipCommitted returns how many of g's events the blob with parts (at
// etag) already holds, and whether it holds events after them.
func (s *Sink) skipCommitted(ctx context.Context, g *runGroup, parts []part, etag *azcore.ETag) (int, bool, error) {
	if len(parts) == 0 {
		return 0, false, nil
	}
	pos := make(map[idHash]int, len(g.ids))
	for i, id := range g.ids {
		pos[hashID(id)] = i
	}
	// The blob's last record is in g: everything up to it is there.
	if j, ok := pos[parts[len(parts)-1].last]; ok {
		return j + 1, false, nil
	}
	// Else either g follows the blob, which the sink knows if its last
	// successful Write left the blob at this ETag, or g ends before the
	// blob does (after a restart, a retry with a smaller batch and the
	// batches after it): only the content tells.
	if e, ok := s.runEnds[g.name]; ok && e == normETag(etag) {
		return 0, false, nil
	}
	return s.readCommitted(ctx, g, etag)
}

// absent returns nil if blob name does not exist, an error saying it is
// not a runbook array if it does.
func (s *Sink) absent(ctx context.Context, name string) error {
	_, err := s.cc.NewBlobClient(name).GetProperties(ctx, nil)
	switch {
	case bloberror.HasCode(err, bloberror.BlobNotFound):
		return nil
	case err != nil:
		return s.classify("get blob properties", name, err)
	}
	return fmt.Errorf("blob %q already exists and is not a runbook array this sink wrote: it holds no blocks", name)
}

// readCommitted finds g's events in the blob's content.
func (s *Sink) readCommitted(ctx context.Context, g *runGroup, etag *azcore.ETag) (int, bool, error) {
	resp, err := s.cc.NewBlobClient(g.name).DownloadStream(ctx, &azblob.DownloadStreamOptions{
		AccessConditions: &azblob.AccessConditions{ModifiedAccessConditions: &azblob.ModifiedAccessConditions{IfMatch: etag}},
	})
	if bloberror.HasCode(err, bloberror.ConditionNotMet) {
		return 0, false, changedError(g.name, err)
	}
	if err != nil {
		return 0, false, s.classify("get blob", g.name, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, false, s.classify("get blob", g.name, err)
	}
	arr := gjson.ParseBytes(body)
	if !gjson.ValidBytes(body) || !arr.IsArray() {
		return 0, false, fmt.Errorf("blob %q already exists and is not a JSON array", g.name)
	}
	have := arr.Array()
	at := -1
	for i, v := range have {
		if v.Raw == string(g.events[0]) {
			at = i
			break
		}
	}
	if at < 0 {
		return 0, false, nil
	}
	n := min(len(have)-at, len(g.events))
	for i := range n {
		if have[at+i].Raw != string(g.events[i]) {
			return 0, false, fmt.Errorf("blob %q holds other events (element %d is %.80q, want %.80q)",
				g.name, at+i, have[at+i].Raw, g.events[i])
		}
	}
	s.log.Info("run blob holds part of a retried batch", "blob", g.name, "events", n, "rest", len(g.events)-n)
	return n, len(have)-at > len(g.events), nil
}

// stage puts one block of the blob name.
func (s *Sink) stage(ctx context.Context, bb *blockblob.Client, name, id string, body []byte) error {
	if _, err := bb.StageBlock(ctx, id, streaming.NopCloser(bytes.NewReader(body)), nil); err != nil {
		return s.classify("put block", name, err)
	}
	return nil
}

// encodePart is a part of kind holding events.
func encodePart(kind byte, events [][]byte) []byte {
	n := 2
	for _, ev := range events {
		n += len(ev) + 2
	}
	buf := make([]byte, 0, n)
	for i, ev := range events {
		if i == 0 && kind == kindFirst {
			buf = append(buf, "[\n"...)
		} else {
			buf = append(buf, ",\n"...)
		}
		buf = append(buf, ev...)
	}
	return buf
}

// changedError is a run blob changed by another writer between the read
// and the commit: the next attempt reads it again.
func changedError(name string, err error) error {
	return &sink.RetryableError{Err: &safeError{
		msg: fmt.Sprintf("blob %q changed while this sink appended to it (another writer?)", name), err: err}}
}

// normETag is an ETag without its quotes: the service quotes the one of
// Put Block List and Azurite not the one of Get Block List.
func normETag(e *azcore.ETag) string {
	if e == nil {
		return ""
	}
	return strings.Trim(string(*e), `"`)
}

// maxRunEnds bounds the run blobs whose end the sink remembers.
const maxRunEnds = 4096

// rememberRuns records, after a Write, where each run blob it wrote ends:
// ends[i] is runs[i]'s ETag when the blob ends with the batch's last event
// of that run. A failed Write forgets the blobs it touched, since the
// shipper repeats its batch.
func (s *Sink) rememberRuns(runs []*runGroup, ends []string, failed bool) {
	if len(s.runEnds)+len(runs) > maxRunEnds {
		clear(s.runEnds)
	}
	for i, g := range runs {
		if failed || ends[i] == "" {
			delete(s.runEnds, g.name)
			continue
		}
		s.runEnds[g.name] = ends[i]
	}
}
