package loganalytics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/record"
)

// TestBicepMatchesSink parses deploy/loganalytics.bicep and checks that each
// table and stream declaration has exactly the columns the sink writes, so
// the two cannot drift apart.
func TestBicepMatchesSink(t *testing.T) {
	b, err := os.ReadFile("../../../deploy/loganalytics.bicep")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	vars := bicepColumnVars(t, src)
	for _, c := range []struct {
		kind          record.Kind
		variable      string
		table, stream string
	}{
		{record.KindGatewayRequest, "aiRequestsColumns", "TaplineAIRequests_CL", "Custom-TaplineAIRequests"},
		{record.KindActivityLog, "activityColumns", "TaplineActivity_CL", "Custom-TaplineActivity"},
	} {
		got, ok := vars[c.variable]
		if !ok {
			t.Errorf("no var %s in the Bicep file", c.variable)
			continue
		}
		if want := Columns(c.kind); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", c.variable, got, want)
		}
		// The table schema, the stream declaration and the data flow use them.
		checks := map[string]string{
			"table schema":       `schema: \{\s*name: '` + c.table + `'\s*columns: ` + c.variable + `\s*\}`,
			"stream declaration": `'` + c.stream + `': \{\s*columns: ` + c.variable + `\s*\}`,
			"data flow":          `streams: \[\s*'` + c.stream + `'\s*\][^}]*transformKql: 'source'\s*outputStream: 'Custom-` + c.table + `'`,
		}
		for what, re := range checks {
			if !regexp.MustCompile(re).MatchString(src) {
				t.Errorf("%s of %s not found (want /%s/)", what, c.table, re)
			}
		}
	}
	for _, want := range []string{
		"roleDefinitions', monitoringMetricsPublisher)",
		"var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'",
		"scope: dcr",
		"output logsIngestionEndpoint string = dce.properties.logsIngestion.endpoint",
		"output dcrImmutableId string = dcr.properties.immutableId",
		"param workspaceName string", "param location string", "param principalId string",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("the Bicep file lacks %q", want)
		}
	}
}

// bicepColumnVars returns the column lists of the `var x = [ {name type} ]`
// declarations in src.
func bicepColumnVars(t *testing.T, src string) map[string][]Column {
	t.Helper()
	varRe := regexp.MustCompile(`(?m)^var (\w+) = \[\n((?:.*\n)*?)\]`)
	colRe := regexp.MustCompile(`\{\s*name: '(\w+)'\s*type: '(\w+)'\s*\}`)
	out := map[string][]Column{}
	for _, m := range varRe.FindAllStringSubmatch(src, -1) {
		var cols []Column
		for _, c := range colRe.FindAllStringSubmatch(m[2], -1) {
			cols = append(cols, Column{Name: c[1], Type: c[2]})
		}
		out[m[1]] = cols
	}
	return out
}
