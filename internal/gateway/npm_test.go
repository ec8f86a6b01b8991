package gateway

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/testenv"
)

// The npm openai package's AzureOpenAI client streams a chat through the
// gateway; the record has what it saw.
func TestNpmAzureOpenAIStream(t *testing.T) {
	node, modules := testenv.NodeModules(t, "openai")
	h := newHarness(t)
	cmd := exec.Command(node, "testdata/npm_azure_stream.cjs")
	cmd.Env = append(cmd.Environ(), "TAPLINE_NODE_MODULES="+modules, "GATEWAY_URL="+h.srv.URL, "GATEWAY_KEY="+h.key)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("node: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var got struct {
		Text   string
		Chunks int
		Usage  *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	rec := h.only()
	if got.Text == "" || rec.Response == nil || rec.Response.Text != got.Text || !rec.Stream {
		t.Errorf("client text %q, recorded %+v", got.Text, rec.Response)
	}
	if got.Usage == nil || rec.Usage == nil || rec.Usage.TotalTokens != got.Usage.TotalTokens ||
		rec.Usage.Source != record.UsageReported {
		t.Errorf("client usage %+v, recorded %+v", got.Usage, rec.Usage)
	}
	if rec.UserAgent == "" || rec.Principal.KeyName != "tester" {
		t.Errorf("record %+v", rec)
	}
}
