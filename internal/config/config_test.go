package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const hashA = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseFullExampleWithEnv(t *testing.T) {
	y := `
store:
  path: /var/lib/tapline/tapline.db
  retention: 30d
  max_bytes: 10GiB
  when_full: drop_oldest
azure:
  tenant_id: ${AZURE_TENANT_ID}
gateway:
  listen: 127.0.0.1:9999
  audit: standard
  capture: metadata
  max_capture_bytes: 64KiB
  redact:
    - {name: email, pattern: '[\w.+-]+@[\w-]+\.[\w.]+'}
  trusted_proxies: [10.0.0.0/8, 192.168.1.7]
  auth:
    keys:
      - {name: build-bot, hash: "` + hashA + `"}
  backends:
    - name: eastus
      url: https://contoso-eastus.openai.azure.com
      auth: api_key
      api_key: ${AOAI_KEY}
      priority: ${PRIO}
`
	cfg, err := Parse([]byte(y), env(map[string]string{"AZURE_TENANT_ID": "tid-1", "AOAI_KEY": "secret-key", "PRIO": "3"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Retention.D() != 30*24*time.Hour || cfg.Store.MaxBytes != 10<<30 || cfg.Store.WhenFull != "drop_oldest" {
		t.Errorf("store = %+v", cfg.Store)
	}
	if cfg.Azure.TenantID != "tid-1" || cfg.Azure.ARMEndpoint != "https://management.azure.com" {
		t.Errorf("azure = %+v", cfg.Azure)
	}
	g := cfg.Gateway
	want := Backend{Name: "eastus", URL: "https://contoso-eastus.openai.azure.com", API: "azure", Auth: "api_key",
		APIKey: "secret-key", APIVersion: "2024-10-21", Deployments: []string{"*"}, Priority: 3, Weight: 1}
	if d := cmp.Diff(want, g.Backends[0]); d != "" {
		t.Errorf("backend (-want +got):\n%s", d)
	}
	if g.MaxCaptureBytes != 64<<10 || g.Capture != "metadata" || g.Audit != "standard" || g.Timeout.D() != 10*time.Minute {
		t.Errorf("gateway = %+v", g)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte("gateway:\n  auth: {keys: [{name: a, hash: \""+hashA+"\"}]}\n  backends: [{url: 'http://127.0.0.1:1', api_key: k}]\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	got := []string{cfg.Store.Path, cfg.Store.WhenFull, g.Listen, g.Audit, g.Capture, g.Backends[0].Name, g.Backends[0].Auth}
	want := []string{"./tapline.db", "reject", "127.0.0.1:8080", "strict", "full", "127.0.0.1", "api_key"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	if g.MaxCaptureBytes != 1<<20 || cfg.Store.Retention.D() != 720*time.Hour {
		t.Errorf("sizes: %d %v", g.MaxCaptureBytes, cfg.Store.Retention)
	}
	cfg, err = Parse([]byte("store: {path: x.db}\n"), env(nil))
	if err != nil || cfg.Gateway != nil {
		t.Errorf("an absent gateway section must turn the gateway off: %v %v", cfg, err)
	}
}

func TestEveryProblemReportedWithItsPath(t *testing.T) {
	y := `
store:
  when_full: maybe
  retention: forever
gateway:
  listn: 127.0.0.1:8080
  audit: sometimes
  trusted_proxies: [not-an-ip]
  auth:
    keys:
      - {name: a, hash: plaintext-key}
      - {name: a, hash: "` + hashA + `"}
    entra: {tenants: [contoso.onmicrosoft.com]}
  backends:
    - {name: b1, url: http://contoso.openai.azure.com, auth: api_key}
    - {name: b1, url: https://x, api: openai, auth: managed_identity, colour: red}
  redact:
    - {name: bad, pattern: '('}
`
	_, err := Parse([]byte(y), env(nil))
	if !IsInvalid(err) {
		t.Fatalf("want a config error, got %v", err)
	}
	// Unknown keys are found before decoding; fix them to see the rest.
	for _, want := range []string{"gateway.listn: unknown key (line 6)", "gateway.backends[1].colour: unknown key", "store.retention: invalid duration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	y = strings.NewReplacer("listn", "listen", ", colour: red", "", "retention: forever", "retention: 1h").Replace(y)
	_, err = Parse([]byte(y), env(nil))
	for _, want := range []string{
		`store.when_full: "maybe" is not one of reject, drop_oldest`,
		`gateway.audit: "sometimes" is not one of strict, standard`,
		`gateway.trusted_proxies[0]: "not-an-ip" is not an IP address or CIDR prefix`,
		`gateway.auth.keys[0].hash: must be "sha256:"`,
		`gateway.auth.keys[1].name: duplicate key name "a"`,
		`gateway.backends[0].url: http:// is allowed only for emulators on loopback`,
		`gateway.backends[0].api_key: required with auth: api_key`,
		`gateway.backends[1].name: duplicate backend name "b1"`,
		`gateway.backends[1].auth: managed_identity works only with api: azure`,
		`gateway.redact[0].pattern: not a valid regular expression`,
		`gateway.auth.entra.tenants[0]: "contoso.onmicrosoft.com" is not a tenant id`,
		`gateway.auth.entra.audiences: at least one audience is required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "plaintext-key") {
		t.Errorf("the error echoes a credential-looking value:\n%v", err)
	}
}

func TestUnsetEnvIsAProblemAndNeverEchoed(t *testing.T) {
	y := "gateway:\n  auth: {keys: [{name: a, hash: \"" + hashA + "\"}]}\n  backends: [{url: https://x.openai.azure.com, api_key: '${AOAI_KEY}'}]\n"
	_, err := Parse([]byte(y), env(nil))
	if err == nil || !strings.Contains(err.Error(), "gateway.backends[0].api_key: environment variable AOAI_KEY is not set") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if !IsInvalid(err) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("a missing file must be a config error naming it, got %v", err)
	}
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("gateway: [unclosed"), 0o600)
	if _, err := Load(p, nil); !IsInvalid(err) {
		t.Fatalf("bad YAML must be a config error, got %v", err)
	}
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "7d": 168 * time.Hour, "1d12h": 36 * time.Hour, "720h": 720 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]int64{"1MiB": 1 << 20, "10GiB": 10 << 30, "500KB": 500e3, "42": 42, "256MiB": 256 << 20} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "5 parsecs"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	if _, err := ParseByteSize("-1MiB"); err == nil {
		t.Error("negative size accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("gateway:\n  listen: 127.0.0.1:1\n  backends: [{url: 'https://a', api_key: '${K}'}]\n"))
	f.Add([]byte("store: {max_bytes: 1MiB, retention: 1d}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, env(map[string]string{"K": "v"}))
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
	})
}
