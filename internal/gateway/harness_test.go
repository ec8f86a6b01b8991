package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/auth"
	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

const upstreamKey = "backend-secret-key-0123456789"

// harness is a gateway in front of the Azure OpenAI emulator, on a real
// store, with one gateway key.
type harness struct {
	t        *testing.T
	aoai     *emulator.AOAI
	upstream *httptest.Server
	gw       *Gateway
	srv      *httptest.Server
	store    *store.Store
	key      string
	cfg      *config.Config
	entra    auth.TokenVerifier // nil unless the test set gateway.auth.entra
	idp      *emulator.Entra
	idpSrv   *httptest.Server
}

type setup func(*config.Config, *emulator.AOAIConfig)

func newHarness(t *testing.T, opts ...setup) *harness {
	t.Helper()
	return newHarnessWith(t, nil, opts...)
}

// newHarnessWith is newHarness with a last say on the gateway's Options
// (a limiter, a clock).
func newHarnessWith(t *testing.T, options func(*Options), opts ...setup) *harness {
	t.Helper()
	key, hash, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ecfg := emulator.AOAIConfig{
		Deployments: map[string]string{
			"gpt-4o":                 "gpt-4o-2024-08-06",
			"gpt-4":                  "gpt-4",
			"text-embedding-3-small": "text-embedding-3-small",
		},
		APIKeys: []string{upstreamKey},
	}
	cfg := &config.Config{
		Store: config.Store{Path: filepath.Join(t.TempDir(), "t.db")},
		Gateway: &config.Gateway{
			Listen: "127.0.0.1:0",
			Auth:   config.GatewayAuth{Keys: []config.Key{{Name: "tester", Hash: hash}}},
			Backends: []config.Backend{{Name: "emu", URL: "http://placeholder", Auth: config.AuthAPIKey,
				APIKey: upstreamKey}},
		},
	}
	for _, o := range opts {
		o(cfg, &ecfg)
	}
	h := &harness{t: t, key: key, cfg: cfg}
	storeMax := int64(cfg.Store.MaxBytes)
	if storeMax < 0 { // tests ask for a store that is already full
		storeMax, cfg.Store.MaxBytes = 1, 0
	}
	h.aoai = emulator.NewAOAI(ecfg, slog.New(slog.DiscardHandler))
	h.upstream = httptest.NewServer(h.aoai)
	t.Cleanup(h.upstream.Close)
	for i := range cfg.Gateway.Backends {
		if cfg.Gateway.Backends[i].URL == "http://placeholder" {
			cfg.Gateway.Backends[i].URL = h.upstream.URL
		}
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if storeMax == 0 {
		storeMax = int64(cfg.Store.MaxBytes)
	}
	h.store, err = store.Open(context.Background(), store.Config{Path: cfg.Store.Path,
		MaxBytes: storeMax, WhenFull: cfg.Store.WhenFull}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	keys, err := auth.NewKeys(cfg.Gateway.Auth.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Gateway.Auth.Entra; e != nil {
		h.idp, h.idpSrv = newEntraEmulator(t, e.Tenants[0])
		v, err := auth.NewEntra(auth.EntraConfig{Authority: h.idpSrv.URL, Tenants: e.Tenants, Audiences: e.Audiences,
			RequiredRoles: e.RequiredRoles}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		h.entra = v
	}
	o := Options{Config: cfg.Gateway, Journal: h.store, Auth: auth.NewCallers(keys, h.entra), Tokens: testTokens{}}
	if options != nil {
		options(&o)
	}
	h.gw, err = New(o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(h.gw)
	t.Cleanup(h.srv.Close)
	return h
}

// testTokens is the managed identity of the gateway in tests.
type testTokens struct{}

const testMIToken = "mi-token-for-tests"

func (testTokens) Token(context.Context) (string, error) { return testMIToken, nil }

// post sends a JSON call with the gateway key.
func (h *harness) post(path, body string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("api-key", h.key)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// records returns every gateway record in the store, oldest first.
func (h *harness) records() []record.GatewayRequest {
	h.t.Helper()
	var out []record.GatewayRequest
	err := h.store.Records(context.Background(), store.Filter{Kind: record.KindGatewayRequest}, func(r record.Record) error {
		var g record.GatewayRequest
		if err := json.Unmarshal(r.Data, &g); err != nil {
			return err
		}
		if g.RequestID != r.ID {
			h.t.Errorf("record id %s != request_id %s", r.ID, g.RequestID)
		}
		out = append(out, g)
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// only returns the one record the test made, failing if there is not one.
func (h *harness) only() record.GatewayRequest {
	h.t.Helper()
	return h.waitRecords(1)[0]
}

// waitRecords waits until n finished records are stored and returns them.
// A record is committed just after its response is flushed, so a caller
// can see its answer a moment before the store does.
func (h *harness) waitRecords(n int) []record.GatewayRequest {
	h.t.Helper()
	var recs []record.GatewayRequest
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		recs = h.records()
		if len(recs) == n && finished(recs) {
			return recs
		}
	}
	h.t.Fatalf("want %d finished records, got %d: %+v", n, len(recs), recs)
	return nil
}

func finished(recs []record.GatewayRequest) bool {
	for _, r := range recs {
		if r.State == record.StateStarted {
			return false
		}
	}
	return true
}

func sseEvents(b []byte) []string {
	var out []string
	for _, ev := range bytes.Split(bytes.TrimSpace(b), []byte("\n\n")) {
		out = append(out, string(ev))
	}
	return out
}
