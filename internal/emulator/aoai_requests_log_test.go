package emulator

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The request log keeps the most recent entries only, so a long-running
// emulator does not grow without bound; entries still in flight when they
// are forgotten are simply not updated.
func TestAOAIRequestLogIsBounded(t *testing.T) {
	a := NewAOAI(AOAIConfig{Deployments: map[string]string{"d": "gpt-4o"}, APIKeys: []string{"k"}, RequestLog: 10},
		slog.New(slog.DiscardHandler))
	for i := range 35 {
		r := httptest.NewRequest(http.MethodGet, "/openai/v1/models", nil)
		r.Header.Set("api-key", "k")
		r.Header.Set("x-ms-client-request-id", string(rune('a'+i%26))+string(rune('0'+i/26)))
		a.ServeHTTP(httptest.NewRecorder(), r)
	}
	got := a.Requests()
	if len(got) > 10 || len(got) < 5 {
		t.Fatalf("kept %d entries, want at most 10", len(got))
	}
	if last := got[len(got)-1]; last.ClientRequestID != "i1" || last.Status != 200 {
		t.Errorf("the newest entry is %+v", last)
	}
}
