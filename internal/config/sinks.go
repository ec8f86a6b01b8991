package config

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

// Sink is one entry of sinks: a name, batching, and exactly one
// destination (DESIGN.md §4). The destination sections map one to one to
// the Config of the sink packages under internal/sink.
type Sink struct {
	Name  string     `yaml:"name"`
	Batch *SinkBatch `yaml:"batch"`

	File         *FileSink         `yaml:"file"`
	AzureBlob    *AzureBlobSink    `yaml:"azure_blob"`
	LogAnalytics *LogAnalyticsSink `yaml:"log_analytics"`
	EventHubs    *EventHubsSink    `yaml:"event_hubs"`
	Kafka        *KafkaSink        `yaml:"kafka"`
	SplunkHEC    *SplunkHECSink    `yaml:"splunk_hec"`
}

// SinkBatch bounds one delivery to the sink (internal/ship.Batch).
type SinkBatch struct {
	MaxRecords int      `yaml:"max_records"`
	MaxBytes   ByteSize `yaml:"max_bytes"`
	MaxWait    Duration `yaml:"max_wait"`
}

// FileSink writes JSON Lines files.
type FileSink struct {
	Dir      string   `yaml:"dir"`
	MaxBytes ByteSize `yaml:"max_bytes"`
}

// AzureBlobSink writes JSON Lines blobs. One of account_url (with the
// azure credential), connection_string or sas_url.
type AzureBlobSink struct {
	AccountURL       string `yaml:"account_url"`
	ConnectionString string `yaml:"connection_string"`
	SASURL           string `yaml:"sas_url"`
	Container        string `yaml:"container"`
	Prefix           string `yaml:"prefix"`
	RunbookLayout    bool   `yaml:"runbook_layout"`
}

// LogAnalyticsSink sends to the Logs Ingestion API with the azure
// credential.
type LogAnalyticsSink struct {
	Endpoint        string            `yaml:"endpoint"`
	DCRImmutableID  string            `yaml:"dcr_immutable_id"`
	Streams         map[string]string `yaml:"streams"` // record kind -> stream
	MaxRequestBytes ByteSize          `yaml:"max_request_bytes"`
}

// EventHubsSink sends over AMQP. One of namespace (with the azure
// credential) or connection_string.
type EventHubsSink struct {
	Namespace        string `yaml:"namespace"`
	Hub              string `yaml:"hub"`
	ConnectionString string `yaml:"connection_string"`
	PartitionKey     string `yaml:"partition_key"` // principal | scope | none
}

// KafkaSink produces to a Kafka topic, or to the Kafka endpoint of Event
// Hubs given its connection string.
type KafkaSink struct {
	Brokers                   []string   `yaml:"brokers"`
	Topic                     string     `yaml:"topic"`
	SASL                      *KafkaSASL `yaml:"sasl"`
	TLS                       *KafkaTLS  `yaml:"tls"`
	EventHubsConnectionString string     `yaml:"event_hubs_connection_string"`
	Key                       string     `yaml:"key"` // principal | scope | none
	MaxRecordBytes            ByteSize   `yaml:"max_record_bytes"`
}

// KafkaSASL is SASL authentication for Kafka.
type KafkaSASL struct {
	Mechanism string `yaml:"mechanism"` // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// KafkaTLS turns TLS on for Kafka.
type KafkaTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

// SplunkHECSink sends to a Splunk HTTP Event Collector.
type SplunkHECSink struct {
	URL                string            `yaml:"url"`
	Token              string            `yaml:"token"`
	Index              string            `yaml:"index"`
	Indexes            map[string]string `yaml:"indexes"`     // record kind -> index
	Sourcetypes        map[string]string `yaml:"sourcetypes"` // record kind -> sourcetype
	Source             string            `yaml:"source"`
	Host               string            `yaml:"host"`
	IndexerAck         bool              `yaml:"indexer_ack"`
	AckTimeout         Duration          `yaml:"ack_timeout"`
	InsecureSkipVerify bool              `yaml:"insecure_skip_verify"`
	MaxRequestBytes    ByteSize          `yaml:"max_request_bytes"`
}

// Metrics configures the Prometheus listener.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Destination returns the sink's destination kind (its YAML key), or ""
// when none or several are set.
func (s *Sink) Destination() string {
	var kinds []string
	for k, set := range map[string]bool{
		"file": s.File != nil, "azure_blob": s.AzureBlob != nil, "log_analytics": s.LogAnalytics != nil,
		"event_hubs": s.EventHubs != nil, "kafka": s.Kafka != nil, "splunk_hec": s.SplunkHEC != nil,
	} {
		if set {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

// recordKinds are the keys accepted by per-kind maps (streams, indexes).
var recordKinds = []string{"gateway_request", "activity_log"}

var sinkName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func (v *validator) sinks(sinks []Sink) {
	seen := map[string]bool{}
	for i := range sinks {
		s := &sinks[i]
		p := fmt.Sprintf("sinks[%d]", i)
		switch {
		case !sinkName.MatchString(s.Name):
			v.add(p+".name", "%q must be 1-63 lowercase letters, digits, - or _ (it names the sink's cursor and metrics)", s.Name)
		case seen[s.Name]:
			v.add(p+".name", "%q is used by another sink", s.Name)
		}
		seen[s.Name] = true
		if b := s.Batch; b != nil {
			if b.MaxRecords < 0 || b.MaxBytes < 0 || b.MaxWait < 0 {
				v.add(p+".batch", "max_records, max_bytes and max_wait must not be negative")
			}
		}
		if s.Destination() == "" {
			v.add(p, "set exactly one of file, azure_blob, log_analytics, event_hubs, kafka, splunk_hec")
			continue
		}
		switch {
		case s.File != nil:
			if s.File.Dir == "" {
				v.add(p+".file.dir", "required")
			}
			if s.File.MaxBytes < 0 {
				v.add(p+".file.max_bytes", "must not be negative")
			}
		case s.AzureBlob != nil:
			v.azureBlob(p+".azure_blob", s.AzureBlob)
		case s.LogAnalytics != nil:
			v.logAnalytics(p+".log_analytics", s.LogAnalytics)
		case s.EventHubs != nil:
			v.eventHubs(p+".event_hubs", s.EventHubs)
		case s.Kafka != nil:
			v.kafka(p+".kafka", s.Kafka)
		case s.SplunkHEC != nil:
			v.splunk(p+".splunk_hec", s.SplunkHEC)
		}
	}
}

// exactlyOne reports a section that sets none or several of named fields;
// only names are echoed, never values (they may be secrets).
func (v *validator) exactlyOne(p string, names []string, set ...bool) {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	if n != 1 {
		v.add(p, "set exactly one of %s", strings.Join(names, ", "))
	}
}

func (v *validator) azureBlob(p string, b *AzureBlobSink) {
	v.exactlyOne(p, []string{"account_url", "connection_string", "sas_url"},
		b.AccountURL != "", b.ConnectionString != "", b.SASURL != "")
	v.endpoint(p+".account_url", b.AccountURL)
	if b.SASURL != "" && !strings.HasPrefix(b.SASURL, "https://") && !strings.HasPrefix(b.SASURL, "http://127.0.0.1") {
		v.add(p+".sas_url", "must be an https:// URL (the value is not shown: it holds a signature)")
	}
	if b.Container == "" && b.SASURL == "" {
		v.add(p+".container", "required")
	}
}

func (v *validator) logAnalytics(p string, l *LogAnalyticsSink) {
	if l.Endpoint == "" {
		v.add(p+".endpoint", "required: the data collection endpoint or the DCR's logs ingestion endpoint")
	}
	v.endpoint(p+".endpoint", l.Endpoint)
	if l.DCRImmutableID == "" {
		v.add(p+".dcr_immutable_id", "required (dcr-...)")
	}
	if len(l.Streams) == 0 {
		v.add(p+".streams", "required: a stream per record kind (%s)", strings.Join(recordKinds, ", "))
	}
	v.kindMap(p+".streams", l.Streams)
	for k, s := range l.Streams {
		if !strings.HasPrefix(s, "Custom-") && !strings.HasPrefix(s, "Microsoft-") {
			v.add(p+".streams."+k, "%q must start with Custom- or Microsoft-", s)
		}
	}
	if l.MaxRequestBytes < 0 || l.MaxRequestBytes > 1<<20 {
		v.add(p+".max_request_bytes", "must be at most 1MiB, the Logs Ingestion limit")
	}
}

func (v *validator) eventHubs(p string, e *EventHubsSink) {
	v.exactlyOne(p, []string{"namespace", "connection_string"}, e.Namespace != "", e.ConnectionString != "")
	if e.Namespace != "" && e.Hub == "" {
		v.add(p+".hub", "required with namespace")
	}
	if e.Namespace != "" && strings.Contains(e.Namespace, "/") {
		v.add(p+".namespace", "%q must be a host name such as contoso.servicebus.windows.net", e.Namespace)
	}
	v.partitionKey(p+".partition_key", e.PartitionKey)
}

func (v *validator) kafka(p string, k *KafkaSink) {
	if len(k.Brokers) == 0 && k.EventHubsConnectionString == "" {
		v.add(p+".brokers", "required unless event_hubs_connection_string is set")
	}
	for i, b := range k.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			v.add(fmt.Sprintf("%s.brokers[%d]", p, i), "%q must be host:port", b)
		}
	}
	if k.Topic == "" && k.EventHubsConnectionString == "" {
		v.add(p+".topic", "required (with event_hubs_connection_string it defaults to the string's EntityPath)")
	}
	if s := k.SASL; s != nil {
		v.oneOf(p+".sasl.mechanism", s.Mechanism, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
		if s.Username == "" || s.Password == "" {
			v.add(p+".sasl", "username and password are required")
		}
		if k.EventHubsConnectionString != "" {
			v.add(p+".sasl", "not used with event_hubs_connection_string, which sets it")
		}
	}
	v.partitionKey(p+".key", k.Key)
	if k.MaxRecordBytes < 0 {
		v.add(p+".max_record_bytes", "must not be negative")
	}
}

func (v *validator) splunk(p string, s *SplunkHECSink) {
	if s.URL == "" {
		v.add(p+".url", "required")
	}
	v.endpoint(p+".url", s.URL)
	if s.Token == "" {
		v.add(p+".token", "required")
	}
	v.kindMap(p+".indexes", s.Indexes)
	v.kindMap(p+".sourcetypes", s.Sourcetypes)
	if s.AckTimeout < 0 || s.MaxRequestBytes < 0 {
		v.add(p, "ack_timeout and max_request_bytes must not be negative")
	}
}

func (v *validator) kindMap(p string, m map[string]string) {
	for k := range m {
		found := false
		for _, rk := range recordKinds {
			found = found || k == rk
		}
		if !found {
			v.add(p+"."+k, "is not a record kind (%s)", strings.Join(recordKinds, ", "))
		}
	}
}

func (v *validator) partitionKey(p, k string) {
	if k != "" {
		v.oneOf(p, k, "principal", "scope", "none")
	}
}

func (v *validator) metrics(m *Metrics) {
	if m.Listen == "" {
		v.add("metrics.listen", "required (host:port)")
		return
	}
	if _, _, err := net.SplitHostPort(m.Listen); err != nil {
		v.add("metrics.listen", "%q must be host:port", m.Listen)
	}
}

func (v *validator) dashboard(d *Dashboard) {
	if d.Listen == "" {
		v.add("dashboard.listen", "required (host:port)")
		return
	}
	host, _, err := net.SplitHostPort(d.Listen)
	if err != nil {
		v.add("dashboard.listen", "%q must be host:port", d.Listen)
		return
	}
	if !IsLoopback(host) && d.Token == "" {
		v.add("dashboard.token", "required when dashboard.listen is not a loopback address: the dashboard shows prompts")
	}
	if d.Token != "" && len(d.Token) < 16 {
		v.add("dashboard.token", "must be at least 16 characters (the value is not shown)")
	}
}

// sinkDefaults fills the defaults of the sinks section.
func sinkDefaults(sinks []Sink) {
	for i := range sinks {
		s := &sinks[i]
		if s.SplunkHEC != nil && s.SplunkHEC.AckTimeout == 0 {
			s.SplunkHEC.AckTimeout = Duration(time.Minute)
		}
	}
}
