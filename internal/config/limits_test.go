package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const limitsYAML = `
gateway:
  auth:
    keys:
      - {name: build-bot, hash: "` + hashA + `", limits: {rpm: 60, tpm: 40000}}
  limits:
    default: {rpm: 120, tpm: 100000, tokens_per_day: 2000000, tokens_per_month: 0}
    groups:
      - {role: Tapline.Batch, limits: {rpm: 600, tpm: 1000000, tokens_per_month: 50000000}}
    max_output_tokens: 2048
    redis: redis://:s3cret@localhost:6379/0
    on_redis_error: local
    key_prefix: "t:rl:"
    time_zone: Europe/Paris
  backends: [{url: https://x.openai.azure.com, api_key: k}]
`

func TestParseLimits(t *testing.T) {
	cfg, err := Parse([]byte(limitsYAML), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := &Limits{
		Default:         LimitValues{RPM: 120, TPM: 100000, TokensPerDay: 2000000},
		Groups:          []LimitGroup{{Role: "Tapline.Batch", Limits: LimitValues{RPM: 600, TPM: 1000000, TokensPerMonth: 50000000}}},
		MaxOutputTokens: 2048,
		Redis:           "redis://:s3cret@localhost:6379/0",
		OnRedisError:    OnRedisErrorLocal,
		KeyPrefix:       "t:rl:",
		TimeZone:        "Europe/Paris",
	}
	if d := cmp.Diff(want, cfg.Gateway.Limits); d != "" {
		t.Errorf("limits (-want +got):\n%s", d)
	}
	if d := cmp.Diff(&LimitValues{RPM: 60, TPM: 40000}, cfg.Gateway.Auth.Keys[0].Limits); d != "" {
		t.Errorf("key limits (-want +got):\n%s", d)
	}
}

func TestLimitDefaults(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want *Limits
	}{
		{"no limits anywhere: off", `gateway:
  auth: {keys: [{name: a, hash: "` + hashA + `"}]}
  backends: [{url: https://x.openai.azure.com, api_key: k}]
`, nil},
		{"an empty section: on, unlimited default", `gateway:
  auth: {keys: [{name: a, hash: "` + hashA + `"}]}
  limits: {}
  backends: [{url: https://x.openai.azure.com, api_key: k}]
`, &Limits{MaxOutputTokens: 4096, OnRedisError: "fail_closed", KeyPrefix: "tapline:rl:", TimeZone: "UTC"}},
		{"a key's limits alone turn limits on", `gateway:
  auth: {keys: [{name: a, hash: "` + hashA + `", limits: {rpm: 5}}]}
  backends: [{url: https://x.openai.azure.com, api_key: k}]
`, &Limits{MaxOutputTokens: 4096, OnRedisError: "fail_closed", KeyPrefix: "tapline:rl:", TimeZone: "UTC"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.yaml), env(nil))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, cfg.Gateway.Limits); d != "" {
				t.Errorf("limits (-want +got):\n%s", d)
			}
		})
	}
}

func TestLimitProblems(t *testing.T) {
	y := `
gateway:
  auth:
    keys:
      - {name: a, hash: "` + hashA + `", limits: {rpm: -1, rps: 3}}
  limits:
    default: {tpm: -5}
    groups:
      - {role: Tapline.Batch, limits: {rpm: 1}, priority: 2}
  backends: [{url: https://x.openai.azure.com, api_key: k}]
`
	_, err := Parse([]byte(y), env(nil))
	if !IsInvalid(err) {
		t.Fatalf("want a config error, got %v", err)
	}
	for _, want := range []string{"gateway.auth.keys[0].limits.rps: unknown key", "gateway.limits.groups[0].priority: unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}

	// Fix the unknown keys to see the rest.
	y = `
gateway:
  auth:
    keys:
      - {name: a, hash: "` + hashA + `", limits: {rpm: -1}}
  limits:
    default: {tpm: -5}
    groups:
      - {role: Tapline.Batch, limits: {tokens_per_day: -3}}
      - {role: Tapline.Batch}
      - {role: ""}
    max_output_tokens: -1
    redis: "redis://:hunter2@local host:6379/0"
    on_redis_error: open
    time_zone: Mars/Olympus
  backends: [{url: https://x.openai.azure.com, api_key: k}]
`
	_, err = Parse([]byte(y), env(nil))
	if !IsInvalid(err) {
		t.Fatalf("want a config error, got %v", err)
	}
	for _, want := range []string{
		"gateway.auth.keys[0].limits.rpm: must not be negative",
		"gateway.limits.default.tpm: must not be negative",
		"gateway.limits.groups[0].limits.tokens_per_day: must not be negative",
		`gateway.limits.groups[1].role: duplicate role "Tapline.Batch"`,
		"gateway.limits.groups[2].role: must not be empty",
		"gateway.limits.max_output_tokens: must not be negative",
		"gateway.limits.redis: not a valid URL",
		`gateway.limits.on_redis_error: "open" is not one of fail_closed, local`,
		`gateway.limits.time_zone: "Mars/Olympus" is not an IANA time zone`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error echoes the Redis password:\n%v", err)
	}
}

func TestRedisURLProblemsNeverEchoThePassword(t *testing.T) {
	for _, u := range []string{
		"http://:hunter2@localhost:6379",
		"redis://:hunter2@localhost:6379/notadb",
		"redis://:hunter2@localhost:port/0",
		"redis://:hunter2@[::1:6379/0",
	} {
		t.Run(u, func(t *testing.T) {
			y := `
gateway:
  auth: {keys: [{name: a, hash: "` + hashA + `"}]}
  limits: {redis: "` + u + `"}
  backends: [{url: https://x.openai.azure.com, api_key: k}]
`
			_, err := Parse([]byte(y), env(nil))
			if err == nil || !strings.Contains(err.Error(), "gateway.limits.redis:") {
				t.Fatalf("want a problem at gateway.limits.redis, got %v", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error echoes the Redis password:\n%v", err)
			}
		})
	}
}
