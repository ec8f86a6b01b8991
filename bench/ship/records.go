package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/ship"
	"github.com/tapline/tapline/internal/sink/file"
	"github.com/tapline/tapline/internal/store"
)

// fill appends n records to a new store at path, in transactions of 5000.
func fill(path string, n int) error {
	st, err := store.Open(context.Background(), store.Config{Path: path, MaxBytes: 1 << 40},
		slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer st.Close()
	base := time.Now().Add(-time.Hour).UTC()
	const chunk = 5000
	recs := make([]record.Record, 0, chunk)
	for i := 0; i < n; i++ {
		recs = append(recs, benchRecord(i, base))
		if len(recs) == chunk || i == n-1 {
			if _, err := st.Append(context.Background(), recs); err != nil {
				return fmt.Errorf("fill store: %w", err)
			}
			recs = recs[:0]
		}
	}
	return nil
}

// benchRecord is record i: three gateway calls for each Activity Log event,
// the mix of a busy gateway beside a collector.
func benchRecord(i int, base time.Time) record.Record {
	at := base.Add(time.Duration(i) * time.Millisecond)
	if i%4 == 3 {
		data := fmt.Sprintf(`{"scope":{"kind":"management_group","id":"mg-%02d"},"event_data_id":"ev-%09d","operation_name":"Microsoft.Authorization/roleAssignments/write","status":"Succeeded","caller":"ana@contoso.example","event":{"authorization":{"action":"Microsoft.Authorization/roleAssignments/write","scope":"/providers/Microsoft.Management/managementGroups/mg-%02d/providers/Microsoft.Authorization/roleAssignments/%09d"},"caller":"ana@contoso.example","channels":"Operation","claims":{"aud":"https://management.core.windows.net/","iss":"https://sts.windows.net/9f3c1b2a-7d4e-4c6f-8a1b-2c3d4e5f6a7b/","name":"Ana Demo","oid":"5f1c8e2a-0b1d-4c3e-9f8a-7b6c5d4e3f2a"},"correlationId":"c0ffee00-%09d","eventDataId":"ev-%09d","eventName":{"value":"EndRequest","localizedValue":"End request"},"category":{"value":"Administrative","localizedValue":"Administrative"},"eventTimestamp":"%s","level":"Informational","operationName":{"value":"Microsoft.Authorization/roleAssignments/write","localizedValue":"Create role assignment"},"status":{"value":"Succeeded","localizedValue":"Succeeded"},"submissionTimestamp":"%s"}}`,
			i%13, i, i%13, i, i, i, at.Format(time.RFC3339Nano), at.Add(9*time.Second).Format(time.RFC3339Nano))
		return record.Record{ID: fmt.Sprintf("al-%09d", i), Kind: record.KindActivityLog, Version: 1, Time: at, Data: json.RawMessage(data)}
	}
	data := fmt.Sprintf(`{"state":"completed","request_id":"req-%09d","start":"%s","duration_ms":812,"ttft_ms":240,"principal":{"kind":"key","key_name":"team-%d"},"client_ip":"10.1.%d.%d","user_agent":"AzureOpenAI/JS 7.57.0","method":"POST","path":"/openai/deployments/gpt-4o/chat/completions","operation":"chat.completions","api_version":"2024-10-21","deployment":"gpt-4o","model_returned":"gpt-4o-2024-08-06","stream":%t,"backend":"eastus","upstream_status":200,"status":200,"upstream_ids":{"apim_request_id":"b1c2d3e4-%09d","x_ms_region":"East US"},"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"source":"reported"},"finish_reasons":["stop"],"request_bytes":412,"response_bytes":%d,"prompt":{"content":"{\"messages\":[{\"role\":\"system\",\"content\":\"You are a helpful assistant for the finance team.\"},{\"role\":\"user\",\"content\":\"%s\"}]}"},"response":{"content":"%s"}}`,
		i, at.Format(time.RFC3339Nano), i%17, i%250, i%200, i%3 == 0, i, 40+i%60, 30+i%90, 70+i%150, 600+i%400, words(i, 40), words(i+7, 60))
	return record.Record{ID: fmt.Sprintf("gw-%09d", i), Kind: record.KindGatewayRequest, Version: 1, Time: at, Data: json.RawMessage(data)}
}

// vocabulary is what prompts and responses are made of: real prompts vary,
// and a benchmark whose text repeats would compress far better than real
// traffic (Logs Ingestion's requests are sized after gzip).
var vocabulary = strings.Fields(`revenue cost margin forecast quarter region customer contract renewal churn
	invoice supplier audit policy access role subscription tenant budget variance growth decline risk control
	summary table chart report draft email meeting agenda action owner deadline review approve reject escalate
	the a of to in for on with by from as at is are was were be been has have had not no yes and or but if then
	Contoso Fabrikam Northwind Tailspin Woodgrove 2024 2025 2026 Q1 Q2 Q3 Q4 EMEA APAC AMER 3% 7% 12% 41%`)

// words returns n words of vocabulary chosen by a small generator seeded
// with seed, so each record's text differs but runs are reproducible.
func words(seed, n int) string {
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	var b strings.Builder
	for k := range n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(vocabulary[x%uint64(len(vocabulary))])
	}
	return b.String()
}

var destinations = map[string]destination{
	"file": {name: "file", target: fileTarget},
}

func names() []string {
	var out []string
	for k := range destinations {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// fileTarget is the file sink with its default rotation; it counts the
// lines of every file it wrote.
func fileTarget(dir string) ([]ship.Target, func() (int64, string, error), func(), error) {
	s, err := file.New(file.Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, nil, err
	}
	count := func() (int64, string, error) {
		files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
		if err != nil {
			return 0, "", err
		}
		var n int64
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				return 0, "", err
			}
			sc := bufio.NewScanner(fh)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				n++
			}
			fh.Close()
		}
		return n, fmt.Sprintf("%d files, fsync per batch", len(files)), nil
	}
	return []ship.Target{{Name: "file", Sink: s}}, count, func() {}, nil
}
