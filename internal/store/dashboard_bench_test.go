package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/record"
)

// BenchmarkAppendDashboardCost measures what migration 4 (the dashboard's
// expression indexes and usage_hourly triggers) costs the writer, by
// appending batches of 1 KB gateway records with parts of it dropped.
func BenchmarkAppendDashboardCost(b *testing.B) {
	drops := map[string][]string{
		"migration 4": nil,
		"without triggers": {`DROP TRIGGER usage_hourly_insert`, `DROP TRIGGER usage_hourly_update`,
			`DROP TRIGGER usage_hourly_delete`},
		"without indexes": {`DROP INDEX records_principal_time`, `DROP INDEX records_deployment_time`,
			`DROP INDEX records_status_time`, `DROP INDEX records_throttled_time`},
		"principal and throttled indexes": {`DROP INDEX records_deployment_time`, `DROP INDEX records_status_time`},
		"without either": {`DROP TRIGGER usage_hourly_insert`, `DROP TRIGGER usage_hourly_update`,
			`DROP TRIGGER usage_hourly_delete`, `DROP INDEX records_principal_time`, `DROP INDEX records_deployment_time`,
			`DROP INDEX records_status_time`, `DROP INDEX records_throttled_time`},
	}
	large := record.GatewayRequest{State: "completed", Principal: record.Principal{Kind: record.PrincipalKey, KeyName: "bench"},
		Deployment: "gpt-4o", Status: 200, Usage: &record.Usage{PromptTokens: 1, TotalTokens: 1},
		Prompt: &record.Content{Text: strings.Repeat("p", 256<<10)}, Response: &record.Content{Text: strings.Repeat("r", 64<<10)}}
	for _, size := range []string{"1KB", "320KB"} {
		for _, name := range []string{"without either", "without triggers", "without indexes", "principal and throttled indexes", "migration 4"} {
			b.Run(size+"/"+name, func(b *testing.B) {
				s := openStore(b, Config{})
				for _, q := range drops[name] {
					if _, err := s.wdb.ExecContext(b.Context(), q); err != nil {
						b.Fatal(err)
					}
				}
				batch := 500
				if size != "1KB" {
					batch = 10
				}
				n := 0
				for b.Loop() {
					recs := make([]record.Record, batch)
					for i := range recs {
						if size == "1KB" {
							recs[i] = benchRecord(b, fmt.Sprintf("r%09d", n), "completed")
						} else {
							recs[i] = gwRec(b, fmt.Sprintf("r%09d", n), t0, large)
						}
						n++
					}
					mustAppend(b, s, recs...)
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}
