package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// DefaultMaxRecordBytes is the record size limit used when
// Config.MaxRecordBytes is 0. It stays under both Event Hubs' 1 MB event
// limit on Standard and higher tiers (azure-contracts.md §6) and Kafka's
// default message.max.bytes of 1,048,588, with room for the batch framing.
const DefaultMaxRecordBytes = 1_000_000

// DefaultTimeout is how long Write and Check wait when Config.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// EventHubsPort is the port of the Event Hubs Kafka endpoint
// (azure-contracts.md §6: <namespace>.servicebus.windows.net:9093).
const EventHubsPort = "9093"

// EventHubsUsername is the fixed SASL PLAIN user name with which the Event
// Hubs Kafka endpoint takes a connection string as the password.
const EventHubsUsername = "$ConnectionString"

// batchOverhead is what a record batch of one record adds to the record's
// key, value and headers (61-byte batch header, the record's length, offset
// and timestamp varints and header framing), rounded up. The producer's batch
// limit is MaxRecordBytes plus this, so a record that passes the size check
// is never refused by the client itself.
const batchOverhead = 512

// eventHubsMaxRequest is the largest produce request the Event Hubs Kafka
// endpoint takes: it closes connections that send more than 1,046,528 bytes
// (Microsoft's "Apache Kafka client configurations for Event Hubs",
// max.request.size). franz-go splits its produce requests to stay under it.
const eventHubsMaxRequest = 1_046_528

// Mechanism names accepted in SASL.Mechanism.
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
)

// Key modes accepted in Config.Key.
const (
	KeyNone      = ""          // no key: the producer spreads records over partitions
	KeyPrincipal = "principal" // gateway_request records keyed by their principal's ID
	KeyScope     = "scope"     // activity_log records keyed by record.ScopeKey
)

// Config is the Kafka sink's configuration (DESIGN.md §4, sinks[].kafka).
type Config struct {
	// Brokers are the seed brokers, host:port. With EventHubsConnectionString
	// they default to the namespace's Kafka endpoint; set them only to point
	// elsewhere (tests, a private endpoint alias).
	Brokers []string
	// Topic receives the records. With EventHubsConnectionString it is the
	// event hub, and defaults to the connection string's EntityPath.
	Topic string
	// SASL authenticates the client; empty Mechanism means no SASL.
	SASL SASL
	// TLS secures the connections.
	TLS TLS
	// EventHubsConnectionString, when set, configures the sink for the Event
	// Hubs Kafka endpoint: brokers <host of Endpoint>:9093, SASL PLAIN with
	// user "$ConnectionString" and this string as the password, TLS on. It
	// excludes SASL. It is a secret: it never appears in errors or logs.
	EventHubsConnectionString string
	// Key selects the record key: KeyPrincipal keys gateway_request records
	// by principal (record.PrincipalID), KeyScope keys activity_log records
	// by scope (record.ScopeKey: the scope id, "tenant" for the tenant);
	// records of the other kind, and records without the field, have no
	// key. Kafka keeps order per partition only: records of
	// one key stay in order; for one total order use a one-partition topic.
	Key string
	// MaxRecordBytes is the largest record (value, key and headers) the sink
	// sends; 0 means DefaultMaxRecordBytes. A larger record is refused as
	// invalid before anything of its batch is sent. Keep it under the
	// broker's message.max.bytes (Event Hubs: 1 MB, Basic tier 256 KB).
	MaxRecordBytes int
	// Timeout bounds one Write or Check; 0 means DefaultTimeout. A Write
	// that runs out of time returns a retryable error.
	Timeout time.Duration
}

// SASL is the client's SASL authentication.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string
	// Username is the SASL user.
	Username string
	// Password is the SASL password, a secret.
	Password string
}

// TLS is the client's TLS configuration.
type TLS struct {
	// Enabled turns TLS on (SASL_SSL when SASL is set too).
	Enabled bool
	// CAFile is a PEM file of the CAs to trust instead of the system pool.
	CAFile string
	// ServerName overrides the name checked in the broker's certificate;
	// by default the broker's host.
	ServerName string
}

// settings is a validated Config turned into client options.
type settings struct {
	brokers   []string
	topic     string
	key       string
	maxRecord int
	timeout   time.Duration
	opts      []kgo.Opt
}

// parse validates cfg and returns the client options it calls for. Errors
// name the field at fault and never hold a password or connection string.
func parse(cfg Config) (settings, error) {
	s := settings{
		brokers:   cfg.Brokers,
		topic:     cfg.Topic,
		key:       cfg.Key,
		maxRecord: cfg.MaxRecordBytes,
		timeout:   cfg.Timeout,
	}
	auth := cfg.SASL
	tlsCfg := cfg.TLS
	eventHubsMode := cfg.EventHubsConnectionString != ""
	if eventHubsMode {
		if auth != (SASL{}) {
			return s, errors.New("sasl and event_hubs_connection_string are exclusive")
		}
		var err error
		if auth, err = s.eventHubs(cfg.EventHubsConnectionString); err != nil {
			return s, err
		}
		tlsCfg.Enabled = true
	}
	if len(s.brokers) == 0 {
		return s, errors.New("brokers is empty")
	}
	for _, b := range s.brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return s, fmt.Errorf("broker %q is not host:port", b)
		}
	}
	if s.topic == "" {
		return s, errors.New("topic is empty")
	}
	switch s.key {
	case KeyNone, KeyPrincipal, KeyScope:
	default:
		return s, fmt.Errorf("key %q is not one of %q, %q or empty", s.key, KeyPrincipal, KeyScope)
	}
	switch {
	case s.maxRecord < 0:
		return s, fmt.Errorf("max_record_bytes %d is negative", s.maxRecord)
	case s.maxRecord == 0:
		s.maxRecord = DefaultMaxRecordBytes
	case s.maxRecord > 1<<30-batchOverhead:
		return s, fmt.Errorf("max_record_bytes %d is over the client's 1 GiB batch limit", s.maxRecord)
	case eventHubsMode && s.maxRecord > eventHubsMaxRequest-batchOverhead-1024:
		return s, fmt.Errorf("max_record_bytes %d does not fit in the Event Hubs Kafka endpoint's %d-byte requests",
			s.maxRecord, eventHubsMaxRequest)
	}
	if eventHubsMode {
		// Compression is left off: the endpoint's support for Kafka's
		// codecs varies by tier, and a refused codec would stop the sink.
		s.opts = append(s.opts, kgo.BrokerMaxWriteBytes(eventHubsMaxRequest),
			kgo.ProducerBatchCompression(kgo.NoCompression()))
	}
	switch {
	case s.timeout < 0:
		return s, fmt.Errorf("timeout %s is negative", s.timeout)
	case s.timeout == 0:
		s.timeout = DefaultTimeout
	}
	if err := s.security(auth, tlsCfg); err != nil {
		return s, err
	}
	return s, nil
}

// eventHubs points s at the Event Hubs namespace of the connection string
// cs (unless brokers are given) and its event hub, and returns the SASL
// PLAIN login that the Kafka endpoint takes (azure-contracts.md §6).
func (s *settings) eventHubs(cs string) (SASL, error) {
	eh, err := parseConnectionString(cs)
	if err != nil {
		return SASL{}, err
	}
	if len(s.brokers) == 0 {
		s.brokers = []string{net.JoinHostPort(eh.host, EventHubsPort)}
	}
	switch {
	case s.topic == "":
		s.topic = eh.entityPath
	case eh.entityPath != "" && eh.entityPath != s.topic:
		return SASL{}, errors.New("topic differs from the event hub named by the connection string's EntityPath")
	}
	return SASL{Mechanism: MechanismPlain, Username: EventHubsUsername, Password: cs}, nil
}

// security adds the SASL and TLS options to s.
func (s *settings) security(auth SASL, t TLS) error {
	mech, err := mechanism(auth)
	if err != nil {
		return err
	}
	if mech != nil {
		s.opts = append(s.opts, kgo.SASL(mech))
	}
	if !t.Enabled {
		if t.CAFile != "" || t.ServerName != "" {
			return errors.New("tls.ca_file or tls.server_name is set but tls.enabled is false")
		}
		return nil
	}
	tc, err := clientTLS(t)
	if err != nil {
		return err
	}
	s.opts = append(s.opts, kgo.DialTLSConfig(tc))
	return nil
}

// mechanism returns the SASL mechanism for a, nil when a is empty.
func mechanism(a SASL) (sasl.Mechanism, error) {
	if a.Mechanism == "" {
		if a.Username != "" || a.Password != "" {
			return nil, errors.New("sasl.mechanism is empty but a user name or password is set")
		}
		return nil, nil
	}
	if a.Username == "" {
		return nil, errors.New("sasl.username is empty")
	}
	if a.Password == "" {
		return nil, errors.New("sasl.password is empty")
	}
	switch strings.ToUpper(a.Mechanism) {
	case MechanismPlain:
		return plain.Auth{User: a.Username, Pass: a.Password}.AsMechanism(), nil
	case MechanismScramSHA256:
		return scram.Auth{User: a.Username, Pass: a.Password}.AsSha256Mechanism(), nil
	case MechanismScramSHA512:
		return scram.Auth{User: a.Username, Pass: a.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("sasl.mechanism %q is not %s, %s or %s",
		a.Mechanism, MechanismPlain, MechanismScramSHA256, MechanismScramSHA512)
}

// clientTLS builds the client's TLS configuration. franz-go clones it for
// every dial and sets ServerName to the broker's host when it is empty.
func clientTLS(c TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// eventHubs is what the sink takes from an Event Hubs connection string.
type eventHubs struct {
	host       string
	entityPath string
}

// parseConnectionString checks the shape of an Event Hubs connection string,
// Endpoint=sb://<host>/;SharedAccessKeyName=<name>;SharedAccessKey=<key>
// [;EntityPath=<hub>] (or SharedAccessSignature=<sas> instead of the key
// pair), and returns its host and entity path. Its errors name the part that
// is wrong and never echo the string, which holds the key.
func parseConnectionString(cs string) (eventHubs, error) {
	const what = "event_hubs_connection_string"
	parts := map[string]string{}
	for part := range strings.SplitSeq(cs, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return eventHubs{}, fmt.Errorf("%s has a part that is not key=value", what)
		}
		parts[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	endpoint, ok := parts["endpoint"]
	if !ok {
		return eventHubs{}, fmt.Errorf("%s has no Endpoint=sb://<namespace>.servicebus.windows.net/", what)
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "sb" || u.Hostname() == "" {
		return eventHubs{}, fmt.Errorf("%s: Endpoint is not sb://<namespace>.servicebus.windows.net/", what)
	}
	_, sas := parts["sharedaccesssignature"]
	if !sas && (parts["sharedaccesskeyname"] == "" || parts["sharedaccesskey"] == "") {
		return eventHubs{}, fmt.Errorf("%s needs SharedAccessKeyName and SharedAccessKey (or SharedAccessSignature)", what)
	}
	return eventHubs{host: u.Hostname(), entityPath: parts["entitypath"]}, nil
}
