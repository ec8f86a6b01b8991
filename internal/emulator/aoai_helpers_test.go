package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testKey = "test-key"

// testDeployments covers each model family the stand-in distinguishes; the
// gpt-4-0613 and gpt-4o-0806 names are the recorded deployments.
var testDeployments = map[string]string{
	"gpt-4o":                 "gpt-4o-2024-08-06",
	"gpt-4o-0806":            "gpt-4o-2024-08-06",
	"gpt-4-0613":             "gpt-4",
	"o1":                     "o1-2024-12-17",
	"text-embedding-3-small": "text-embedding-3-small",
	"gpt-4.1-nano":           "gpt-4.1-nano",
	"dall-e-3":               "dall-e-3",
	"tts":                    "tts-1",
	"whisper":                "whisper",
}

// newTestAOAI serves a stand-in with the test deployments and key; edit
// adjusts the config first.
func newTestAOAI(t *testing.T, edit func(*AOAIConfig)) (*AOAI, *httptest.Server) {
	t.Helper()
	cfg := AOAIConfig{Deployments: testDeployments, APIKeys: []string{testKey}}
	if edit != nil {
		edit(&cfg)
	}
	a := NewAOAI(cfg, nil)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv
}

// recording is the layout of the *.recorded.json fixtures.
type recording struct {
	RequestURI      string            `json:"RequestUri"`
	RequestHeaders  map[string]string `json:"RequestHeaders"`
	RequestBody     json.RawMessage   `json:"RequestBody"`
	StatusCode      int               `json:"StatusCode"`
	ResponseHeaders map[string]string `json:"ResponseHeaders"`
	ResponseBody    json.RawMessage   `json:"ResponseBody"`
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readRecording(t *testing.T, name string) recording {
	t.Helper()
	var r recording
	if err := json.Unmarshal(readFixture(t, name), &r); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return r
}

// send makes one request and returns the response with its whole body.
func send(t *testing.T, method, url, body string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, b
}

func keyHeader() map[string]string { return map[string]string{"api-key": testKey} }

// sseData returns the data payloads of an SSE body, in order.
func sseData(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	for _, ev := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		for _, line := range strings.Split(ev, "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				out = append(out, d)
			}
		}
	}
	return out
}

// skeleton renders a JSON document with its keys in wire order and every
// value replaced by its type; an array shows its first element only. Two
// events with the same skeleton have the same shape, byte for byte.
func skeleton(t *testing.T, doc string) string {
	t.Helper()
	var v json.RawMessage
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, doc)
	}
	var sb strings.Builder
	writeSkeleton(t, &sb, v)
	return sb.String()
}

func writeSkeleton(t *testing.T, sb *strings.Builder, raw json.RawMessage) {
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case '{':
		dec := json.NewDecoder(bytes.NewReader(raw))
		_, _ = dec.Token()
		sb.WriteByte('{')
		for i := 0; dec.More(); i++ {
			k, _ := dec.Token()
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`"` + k.(string) + `":`)
			writeSkeleton(t, sb, v)
		}
		sb.WriteByte('}')
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			t.Fatal(err)
		}
		sb.WriteByte('[')
		if len(items) > 0 {
			writeSkeleton(t, sb, items[0])
		}
		sb.WriteByte(']')
	case '"':
		sb.WriteString("string")
	case 'n':
		sb.WriteString("null")
	case 't', 'f':
		sb.WriteString("bool")
	default:
		sb.WriteString("number")
	}
}

// compact returns the compact form of a JSON document.
func compact(t *testing.T, doc []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, doc); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
