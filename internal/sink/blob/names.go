package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tidwall/gjson"
)

// gatewayScope is the scope segment of every gateway_request blob. Gateway
// records have no tenant scope, and splitting them per deployment would
// multiply small blobs for no gain: each record names its deployment.
const gatewayScope = "all"

// unscoped is the scope segment of an activity record without a scope.
const unscoped = "unscoped"

// maxSegment bounds one encoded name segment; longer ones are cut and end
// with a hash of the whole value, so they stay distinct (a blob name may
// hold 1,024 characters).
const maxSegment = 200

// group is the records of one batch that share a blob: same kind, scope and
// UTC hour, in batch order.
type group struct {
	kind  string // encoded kind segment
	scope string // encoded scope segment
	hour  string // yyyy/mm/dd/hh of the records' UTC time
	recs  []int  // indexes into the batch
	// mg is the runbook layout's folder: the scope of an activity group.
	mg string
}

// groups splits recs into (kind, scope, hour) groups, ordered by their first
// record, each holding its records in batch order. The same batch always
// gives the same groups, and so the same blob names.
func groups(recs []record.Record) []*group {
	var out []*group
	index := make(map[string]*group)
	for i := range recs {
		kind, scope := kindScope(recs[i])
		hour := recs[i].Time.UTC().Format("2006/01/02/15")
		key := kind + "/" + scope + "/" + hour
		g := index[key]
		if g == nil {
			g = &group{kind: kind, scope: scope, hour: hour, mg: scope}
			index[key] = g
			out = append(out, g)
		}
		g.recs = append(g.recs, i)
	}
	return out
}

// kindScope returns the encoded kind and scope segments of r. An
// activity_log record's scope is its data's scope: a management group by
// its id, "tenant" for the tenant-level log, "subscription-{id}" for a
// subscription (DESIGN.md §5). Every blob name ends with a unique record
// id, so two scopes that happened to share a segment would share a folder,
// never a blob.
func kindScope(r record.Record) (kind, scope string) {
	kind = segment(string(r.Kind))
	if kind == "" {
		kind = "unknown"
	}
	if r.Kind != record.KindActivityLog {
		return kind, gatewayScope
	}
	sc := gjson.GetBytes(r.Data, "scope")
	id := sc.Get("id").String()
	switch sc.Get("kind").String() {
	case record.ScopeTenant:
		return kind, "tenant"
	case record.ScopeSubscription:
		if id != "" {
			return kind, "subscription-" + segment(id)
		}
	default:
		if id != "" {
			return kind, segment(id)
		}
	}
	return kind, unscoped
}

// blobName is the JSON Lines blob of g's records from the one named first:
// {prefix}{kind}/{scope}/yyyy/mm/dd/hh/{first-id}.jsonl.
func blobName(prefix string, g *group, firstID string) string {
	return prefix + g.kind + "/" + g.scope + "/" + g.hour + "/" + segment(firstID) + ".jsonl"
}

// runbookName is the runbook layout's blob of an activity group of records
// without a collection run (stored by a version before it), from the
// record first: {prefix}runbook/{management group}/{yyyy-mm-ddThh-mm-ssZ}-{first-id}.json.
func runbookName(prefix string, g *group, first record.Record) string {
	return prefix + "runbook/" + g.mg + "/" + runbookStamp(first.Time) + "-" + segment(first.ID) + ".json"
}

// runbookRunName is the runbook layout's blob of the events of one
// management group (its scope segment) and one collection run:
// {prefix}runbook/{management group}/{yyyy-mm-ddThh-mm-ssZ}.json, the
// run's start; a run that is not an RFC 3339 time is encoded as it is.
func runbookRunName(prefix, scope, run string) string {
	stamp := segment(run)
	if t, err := time.Parse(time.RFC3339, run); err == nil {
		stamp = runbookStamp(t)
	}
	return prefix + "runbook/" + scope + "/" + stamp + ".json"
}

// segment encodes s as one safe blob-name segment: letters, digits and
// ". _ - ( )" stay (everything a management group id may hold), every
// other byte becomes ~XX, and "." or ".." are encoded whole. The encoding
// is injective, so distinct ids never share a name.
func segment(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safeByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	out := b.String()
	if out == "." || out == ".." {
		out = strings.Repeat("~2E", len(out))
	}
	if len(out) > maxSegment {
		sum := sha256.Sum256([]byte(s))
		out = out[:maxSegment-17] + "~" + hex.EncodeToString(sum[:8])
	}
	return out
}

func safeByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._-()", c) >= 0
}

// runbookStamp formats t as the runbook layout's file name time.
func runbookStamp(t time.Time) string { return t.UTC().Format("2006-01-02T15-04-05Z") }
