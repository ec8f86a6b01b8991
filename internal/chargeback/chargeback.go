// Package chargeback writes the store's token usage per group as the
// chargeback report: `tapline query usage` prints it and the dashboard's
// Usage view offers it as a CSV download, through this one writer, so that
// the two give the same bytes for the same filters.
package chargeback

import (
	"encoding/csv"
	"io"
	"slices"
	"strconv"

	"github.com/tapline/tapline/internal/store"
)

// Columns are the figures of a row, after its group keys.
var Columns = []string{"requests", "errors", "prompt_tokens", "completion_tokens",
	"total_tokens", "cached_tokens", "reasoning_tokens", "estimated"}

// Total is the index in Columns of total_tokens.
const Total = 4

// Header is the report's header for rows grouped by by: the group keys,
// then Columns.
func Header(by []string) []string { return slices.Concat(by, Columns) }

// Values returns r's figures in Columns order.
func Values(r store.UsageRow) []int64 {
	return []int64{r.Requests, r.Errors, r.PromptTokens, r.CompletionTokens,
		r.TotalTokens, r.CachedTokens, r.ReasoningTokens, r.Estimated}
}

// Cells returns r as the report's cells: its group keys, then its figures
// in decimal.
func Cells(r store.UsageRow) []string {
	out := slices.Clone(r.Keys)
	for _, v := range Values(r) {
		out = append(out, strconv.FormatInt(v, 10))
	}
	return out
}

// WriteCSV writes the header and one line per row, as encoding/csv quotes
// them (RFC 4180, "\n" line ends). An empty result is the header alone.
func WriteCSV(w io.Writer, by []string, rows []store.UsageRow) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(Header(by)); err != nil {
		return err
	}
	for _, r := range rows {
		if err := cw.Write(Cells(r)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
