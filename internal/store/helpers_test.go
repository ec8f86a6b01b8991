package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

// t0 is the time the test records are built around.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testConfig is a config with a fresh database under t.TempDir.
func testConfig(t testing.TB) Config {
	return Config{Path: filepath.Join(t.TempDir(), "tapline.db")}
}

// openStore opens cfg (a fresh database when Path is empty) and closes it
// when the test ends.
func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = testConfig(t).Path
	}
	s, err := Open(t.Context(), cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// rec is a record with an activity_log kind and the given JSON payload.
func rec(id string, at time.Time, data string) record.Record {
	return record.Record{ID: id, Kind: record.KindActivityLog, Version: 1, Time: at, Data: json.RawMessage(data)}
}

// gwRec is a gateway_request record carrying g.
func gwRec(t testing.TB, id string, at time.Time, g record.GatewayRequest) record.Record {
	t.Helper()
	data, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return record.Record{ID: id, Kind: record.KindGatewayRequest, Version: record.GatewayRequestVersion, Time: at, Data: data}
}

// stateRec is a small gateway-like record in the given state.
func stateRec(id, state string) record.Record {
	return record.Record{
		ID: id, Kind: record.KindGatewayRequest, Version: 1, Time: t0,
		Data: json.RawMessage(fmt.Sprintf(`{"request_id":%q,"state":%q}`, id, state)),
	}
}

// mustAppend appends recs and fails the test on error.
func mustAppend(t testing.TB, s *Store, recs ...record.Record) int {
	t.Helper()
	n, err := s.Append(t.Context(), recs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return n
}

// allRecords returns every record in Records order.
func allRecords(t testing.TB, s *Store, f Filter) []record.Record {
	t.Helper()
	var out []record.Record
	if err := s.Records(t.Context(), f, func(r record.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("Records: %v", err)
	}
	return out
}

// released is the (seq, id, state) of a released record.
type released struct {
	Seq   int64
	ID    string
	State string
}

// readReleased returns every released record, by seq.
func readReleased(t testing.TB, s *Store) []released {
	t.Helper()
	got, err := s.ReadAfter(t.Context(), 0, 1<<20)
	if err != nil {
		t.Fatalf("ReadAfter: %v", err)
	}
	var out []released
	for _, st := range got {
		out = append(out, released{Seq: st.Seq, ID: st.Record.ID, State: payloadState(t, st.Record.Data)})
	}
	return out
}

// payloadState is the payload's "state" field.
func payloadState(t testing.TB, data []byte) string {
	t.Helper()
	var p struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatalf("decode payload %s: %v", data, err)
	}
	return p.State
}

// checkStats compares the writer's in-memory counts with the database,
// once the begin log's entries are in it.
func checkStats(t testing.TB, s *Store) Stats {
	t.Helper()
	if err := s.showBegun(t.Context()); err != nil {
		t.Fatalf("materialize begun records: %v", err)
	}
	st, err := s.Stats(t.Context())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	var db Stats
	const q = `SELECT count(*), count(*) - count(seq), coalesce(sum(size), 0),
		coalesce(sum(size = length(CAST(data AS BLOB))), 0) FROM ` + everyRecord
	var sizesRight int64
	if err := s.rdb.QueryRowContext(context.Background(), q).Scan(&db.Records, &db.Pending, &db.Bytes, &sizesRight); err != nil {
		t.Fatalf("count records: %v", err)
	}
	got := Stats{Records: st.Records, Pending: st.Pending, Bytes: st.Bytes}
	if diff := cmp.Diff(db, got); diff != "" {
		t.Errorf("Stats disagree with the database (-db +stats):\n%s", diff)
	}
	if sizesRight != db.Records {
		t.Errorf("%d of %d rows have size = len(data)", sizesRight, db.Records)
	}
	return st
}
