package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseSinks(t *testing.T) {
	y := `
sinks:
  - name: archive
    azure_blob: {account_url: https://contoso.blob.core.windows.net, container: audit}
  - name: workspace
    batch: {max_records: 20000, max_bytes: 32MiB, max_wait: 5s}
    log_analytics:
      endpoint: https://contoso-xyz.eastus-1.ingest.monitor.azure.com
      dcr_immutable_id: dcr-0000
      streams: {gateway_request: Custom-TaplineAIRequests, activity_log: Custom-TaplineActivity}
  - name: siem
    event_hubs: {namespace: contoso.servicebus.windows.net, hub: audit, partition_key: principal}
  - name: lake
    kafka: {brokers: ["b1:9093"], topic: audit, sasl: {mechanism: PLAIN, username: x, password: "${P}"}, tls: {enabled: true}}
  - name: splunk
    splunk_hec: {url: https://splunk:8088, token: "${HEC_TOKEN}", index: azure, indexer_ack: true}
  - name: local
    file: {dir: /var/log/tapline, max_bytes: 256MiB}
metrics:
  listen: 127.0.0.1:9090
`
	cfg, err := Parse([]byte(y), env(map[string]string{"P": "kafka-pass", "HEC_TOKEN": "hec-token"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"azure_blob", "log_analytics", "event_hubs", "kafka", "splunk_hec", "file"}
	for i, s := range cfg.Sinks {
		if got := s.Destination(); got != want[i] {
			t.Errorf("sinks[%d] destination = %q, want %q", i, got, want[i])
		}
	}
	if b := cfg.Sinks[1].Batch; b.MaxRecords != 20000 || b.MaxBytes != 32<<20 || b.MaxWait.D() != 5*time.Second {
		t.Errorf("batch = %+v", b)
	}
	if k := cfg.Sinks[3].Kafka; k.SASL.Password != "kafka-pass" || !k.TLS.Enabled {
		t.Errorf("kafka = %+v", k)
	}
	if s := cfg.Sinks[4].SplunkHEC; s.Token != "hec-token" || s.AckTimeout.D() != time.Minute {
		t.Errorf("splunk = %+v", s)
	}
	if cfg.Metrics.Listen != "127.0.0.1:9090" || cfg.Sinks[5].File.MaxBytes != 256<<20 {
		t.Errorf("metrics or file = %+v %+v", cfg.Metrics, cfg.Sinks[5].File)
	}
}

func TestSinkProblems(t *testing.T) {
	y := `
sinks:
  - name: Bad Name
    file: {dir: /tmp/x}
  - name: two
    file: {dir: /tmp/x}
    kafka: {brokers: ["b:9093"], topic: t}
  - name: two
    file: {}
  - name: blob
    azure_blob: {connection_string: "DefaultEndpointsProtocol=https;AccountKey=c2VjcmV0LWtleQ==", sas_url: "https://a.blob.core.windows.net/c?sig=s3cr3t"}
  - name: la
    log_analytics: {endpoint: http://contoso.ingest.monitor.azure.com, streams: {gateway_request: TaplineAIRequests, audit: Custom-X}}
  - name: eh
    event_hubs: {namespace: sb://contoso.servicebus.windows.net/, partition_key: tenant}
  - name: kafka
    kafka: {brokers: [b1], sasl: {mechanism: GSSAPI, username: u, password: "hunter2"}}
  - name: splunk
    splunk_hec: {url: "https://splunk:8088", indexes: {gateway: main}}
metrics:
  listen: nine-thousand
dashboard:
  listen: 0.0.0.0:8081
`
	_, err := Parse([]byte(y), env(nil))
	if !IsInvalid(err) {
		t.Fatalf("want a config error, got %v", err)
	}
	for _, want := range []string{
		`sinks[0].name: "Bad Name" must be 1-63 lowercase`,
		`sinks[1]: set exactly one of file, azure_blob`,
		`sinks[2].name: "two" is used by another sink`,
		`sinks[2].file.dir: required`,
		`sinks[3].azure_blob: set exactly one of account_url, connection_string, sas_url`,
		`sinks[4].log_analytics.endpoint: http:// is allowed only for emulators on loopback`,
		`sinks[4].log_analytics.dcr_immutable_id: required`,
		`sinks[4].log_analytics.streams.audit: is not a record kind`,
		`sinks[4].log_analytics.streams.gateway_request: "TaplineAIRequests" must start with Custom-`,
		`sinks[5].event_hubs.hub: required with namespace`,
		`sinks[5].event_hubs.namespace: "sb://contoso.servicebus.windows.net/" must be a host name`,
		`sinks[5].event_hubs.partition_key: "tenant" is not one of principal, scope, none`,
		`sinks[6].kafka.brokers[0]: "b1" must be host:port`,
		`sinks[6].kafka.topic: required`,
		`sinks[6].kafka.sasl.mechanism: "GSSAPI" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`,
		`sinks[7].splunk_hec.token: required`,
		`sinks[7].splunk_hec.indexes.gateway: is not a record kind`,
		`metrics.listen: "nine-thousand" must be host:port`,
		`dashboard.token: required when dashboard.listen is not a loopback address`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	for _, secret := range []string{"c2VjcmV0LWtleQ", "s3cr3t", "hunter2"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error echoes the secret %q:\n%v", secret, err)
		}
	}
}
