package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testConnString is shaped like an Event Hubs namespace connection string;
// its key is what must never leak.
const (
	testKey        = "c2VjcmV0LWtleS1ieXRlcy1mb3ItdGVzdHM9PQ="
	testConnString = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + testKey + ";EntityPath=" + testTopic
)

func TestEventHubsConnectionString(t *testing.T) {
	c := newCluster(t, newTestCA(t), MechanismPlain, EventHubsUsername, testConnString, 1)
	// TLS is turned on by the connection string; only the test CA is given.
	// Brokers override the namespace's host, and the topic comes from the
	// connection string's EntityPath.
	s := newSink(t, Config{
		EventHubsConnectionString: testConnString,
		Brokers:                   c.c.ListenAddrs(),
		TLS:                       TLS{CAFile: c.ca.file},
	})
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	recs := sinktest.Records(0, 20)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if d := sinktest.Diff(c.delivered(t), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}

	// A connection string with another key is refused, and the error
	// shows neither string.
	const otherKey = "b3RoZXIta2V5LW5vdC10aGUtcmlnaHQtb25lPT0="
	bad := newSink(t, Config{
		EventHubsConnectionString: strings.Replace(testConnString, testKey, otherKey, 1),
		Brokers:                   c.c.ListenAddrs(),
		TLS:                       TLS{CAFile: c.ca.file},
		Timeout:                   2 * time.Second,
	})
	err := bad.Check(context.Background())
	switch {
	case !errors.Is(err, ErrAuthentication):
		t.Errorf("Check with another key: %v, want ErrAuthentication", err)
	case strings.Contains(err.Error(), otherKey) || strings.Contains(err.Error(), testKey):
		t.Errorf("Check error holds a key: %v", err)
	}
}

func TestEventHubsSettings(t *testing.T) {
	st, err := parse(Config{EventHubsConnectionString: testConnString})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"contoso.servicebus.windows.net:9093"}; !slices.Equal(st.brokers, want) {
		t.Errorf("brokers = %q, want %q", st.brokers, want)
	}
	if st.topic != testTopic {
		t.Errorf("topic = %q, want the EntityPath %q", st.topic, testTopic)
	}
	if len(st.opts) != 4 { // request limit, compression, SASL and TLS
		t.Errorf("got %d client options, want request limit, compression, SASL and TLS", len(st.opts))
	}
	if _, err := parse(Config{EventHubsConnectionString: testConnString, MaxRecordBytes: 1 << 20}); err == nil {
		t.Errorf("a 1 MiB max_record_bytes was accepted for the Event Hubs endpoint's 1,046,528-byte requests")
	}
	st, err = parse(Config{EventHubsConnectionString: strings.TrimSuffix(testConnString, ";EntityPath="+testTopic), Topic: "hub"})
	if err != nil || st.topic != "hub" {
		t.Errorf("namespace-level string with a topic: topic %q, err %v", st.topic, err)
	}
}

func TestConnectionStringErrorsHideKey(t *testing.T) {
	for name, cs := range map[string]string{
		"no endpoint":    "SharedAccessKeyName=send;SharedAccessKey=" + testKey,
		"not sb":         "Endpoint=https://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + testKey,
		"no host":        "Endpoint=sb:///;SharedAccessKeyName=send;SharedAccessKey=" + testKey,
		"no key name":    "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKey=" + testKey,
		"no key":         "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=" + testKey,
		"not key=value":  "Endpoint=sb://contoso.servicebus.windows.net/;" + testKey,
		"other hub":      "",
		"with sasl too":  "",
		"endpoint only!": testKey,
	} {
		t.Run(name, func(t *testing.T) {
			cfg := Config{EventHubsConnectionString: cs}
			switch name {
			case "other hub":
				cfg.EventHubsConnectionString, cfg.Topic = testConnString, "other"
			case "with sasl too":
				cfg.SASL = SASL{Mechanism: MechanismPlain, Username: "u", Password: "p"}
			}
			_, err := New(cfg, nil)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), "SharedAccessKey=") {
				t.Errorf("error holds the connection string: %v", err)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:9092"}, Topic: "t"}
	for name, edit := range map[string]func(*Config){
		"no brokers":           func(c *Config) { c.Brokers = nil },
		"broker without port":  func(c *Config) { c.Brokers = []string{"host"} },
		"no topic":             func(c *Config) { c.Topic = "" },
		"bad key":              func(c *Config) { c.Key = "tenant" },
		"negative max":         func(c *Config) { c.MaxRecordBytes = -1 },
		"huge max":             func(c *Config) { c.MaxRecordBytes = 1 << 30 },
		"negative timeout":     func(c *Config) { c.Timeout = -time.Second },
		"bad mechanism":        func(c *Config) { c.SASL = SASL{Mechanism: "GSSAPI", Username: "u", Password: "p"} },
		"mechanism no user":    func(c *Config) { c.SASL = SASL{Mechanism: MechanismPlain, Password: "p"} },
		"mechanism no pass":    func(c *Config) { c.SASL = SASL{Mechanism: MechanismPlain, Username: "u"} },
		"user no mechanism":    func(c *Config) { c.SASL = SASL{Username: "u", Password: "p"} },
		"ca without tls":       func(c *Config) { c.TLS = TLS{CAFile: "/x.pem"} },
		"missing ca file":      func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"} },
		"ca file without cert": func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: "kafka.go"} },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := ok
			edit(&cfg)
			if _, err := New(cfg, nil); err == nil {
				t.Errorf("New(%+v) succeeded", cfg)
			}
		})
	}
	s, err := New(ok, nil)
	if err != nil {
		t.Fatalf("New(%+v): %v", ok, err)
	}
	s.Close()
}

// TestWrongPassword: bad credentials are a plain error (not retryable) in
// which neither the error nor the log shows the password.
func TestWrongPassword(t *testing.T) {
	c := newCluster(t, newTestCA(t), MechanismPlain, testUser, testPass, 1)
	cfg := c.config()
	const wrong = "wr0ng-Pa55word-do-not-leak"
	cfg.SASL.Password = wrong
	cfg.Timeout = 2 * time.Second
	var logs bytes.Buffer
	s, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, op := range map[string]func() error{
		"Check": func() error { return s.Check(context.Background()) },
		"Write": func() error { return s.Write(context.Background(), sinktest.Records(0, 3)) },
	} {
		err := op()
		switch {
		case err == nil:
			t.Fatalf("%s with a wrong password succeeded", name)
		case strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), testPass):
			t.Errorf("%s error holds the password: %v", name, err)
		}
		if _, ok := sink.Retryable(err); ok {
			t.Errorf("%s error with a wrong password is retryable: %v", name, err)
		}
		if !errors.Is(err, ErrAuthentication) {
			t.Errorf("%s error with a wrong password is not ErrAuthentication: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if strings.Contains(logs.String(), wrong) {
		t.Errorf("log holds the password:\n%s", logs.String())
	}
	if got := c.delivered(t); len(got) != 0 {
		t.Errorf("%d records delivered with a wrong password", len(got))
	}
}

// TestClusterDown: a cluster that went away gives a retryable error.
func TestClusterDown(t *testing.T) {
	c := newCluster(t, newTestCA(t), MechanismPlain, testUser, testPass, 1)
	cfg := c.config()
	cfg.Timeout = 2 * time.Second // bounds the wait for brokers that are gone
	s := newSink(t, cfg)
	if err := s.Write(context.Background(), sinktest.Records(0, 2)); err != nil {
		t.Fatalf("Write before close: %v", err)
	}
	c.c.Close()
	err := s.Write(context.Background(), sinktest.Records(2, 2))
	t.Logf("Write: %v", err)
	if _, ok := sink.Retryable(err); !ok {
		t.Errorf("Write to a closed cluster: %v, want a retryable error", err)
	}
	err = s.Check(context.Background())
	t.Logf("Check: %v", err)
	if err == nil {
		t.Errorf("Check on a closed cluster succeeded")
	} else if _, ok := sink.Retryable(err); !ok {
		t.Errorf("Check on a closed cluster: %v, want a retryable error", err)
	}
}

// TestUnknownTopic: a topic that does not exist is a configuration error,
// and neither Check nor Write creates it.
func TestUnknownTopic(t *testing.T) {
	c := newCluster(t, newTestCA(t), MechanismPlain, testUser, testPass, 1)
	cfg := c.config()
	cfg.Topic = "missing"
	s := newSink(t, cfg)
	err := s.Check(context.Background())
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("Check: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	if _, ok := sink.Retryable(err); ok {
		t.Errorf("Check error for a missing topic is retryable: %v", err)
	}
	err = s.Write(context.Background(), sinktest.Records(0, 1))
	if err == nil {
		t.Fatal("Write to a missing topic succeeded")
	}
	if _, ok := sink.Retryable(err); ok {
		t.Errorf("Write error for a missing topic is retryable: %v", err)
	}
}

// TestBrokerRefusesBatch: a broker whose message.max.bytes is below the
// sink's limit refuses the batch; the sink marks the whole batch invalid,
// naming no record, so the shipper bisects it.
func TestBrokerRefusesBatch(t *testing.T) {
	c := newCluster(t, newTestCA(t), MechanismPlain, testUser, testPass, 1,
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "4000"}))
	s := newSink(t, c.config())
	// Random bytes: the producer's compression must not shrink the batch
	// under the broker's limit.
	r := sinktest.Records(0, 1)[0]
	var pad strings.Builder
	for range 400 {
		pad.WriteString(rand.Text())
	}
	r.Data = json.RawMessage(fmt.Sprintf(`{"pad":%q}`, pad.String()))
	recs := []record.Record{r}
	err := s.Write(context.Background(), recs)
	var inv *sink.InvalidError
	switch {
	case !errors.As(err, &inv):
		t.Fatalf("Write: %v, want *sink.InvalidError", err)
	case inv.Indexes != nil:
		t.Errorf("Indexes = %v, want nil (the whole batch)", inv.Indexes)
	case !errors.Is(err, kerr.MessageTooLarge):
		t.Errorf("Write: %v, want MESSAGE_TOO_LARGE wrapped", err)
	}
}

// TestRecordSizeLimit checks the size check at its edge: a record of
// exactly MaxRecordBytes (value, key and headers) is sent, one byte more is
// refused, and every record over the limit is named.
func TestRecordSizeLimit(t *testing.T) {
	c := newCluster(t, newTestCA(t), MechanismPlain, testUser, testPass, 1)
	cfg := c.config()
	cfg.MaxRecordBytes = 5000
	s := newSink(t, cfg)
	sized := func(i, n int) record.Record {
		r := sinktest.Padded(i, 100)
		over := recordSize(s.kafkaRecord(r)) - n
		return sinktest.Padded(i, 100-over)
	}
	at := sized(0, 5000)
	if got := recordSize(s.kafkaRecord(at)); got != 5000 {
		t.Fatalf("test record is %d bytes, want 5000", got)
	}
	if err := s.Write(context.Background(), []record.Record{at}); err != nil {
		t.Fatalf("Write of a record at the limit: %v", err)
	}
	batch := []record.Record{sinktest.Records(1, 1)[0], sized(2, 5001), sinktest.Records(3, 1)[0], sized(4, 9000)}
	err := s.Write(context.Background(), batch)
	var inv *sink.InvalidError
	if !errors.As(err, &inv) || !slices.Equal(inv.Indexes, []int{1, 3}) {
		t.Fatalf("Write with records over the limit: %v, want *sink.InvalidError for [1 3]", err)
	}
	if d := sinktest.Diff(c.delivered(t), []record.Record{at}); d != "" {
		t.Errorf("delivered differs (nothing of the refused batch may arrive):\n%s", d)
	}
}

func TestClassify(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want string // retryable, invalid, plain
	}{
		{kerr.NotLeaderForPartition, "retryable"},
		{kerr.RequestTimedOut, "retryable"},
		{kerr.ThrottlingQuotaExceeded, "retryable"},
		{kgo.ErrRecordTimeout, "retryable"},
		{context.DeadlineExceeded, "retryable"},
		{io.EOF, "retryable"},
		{kerr.MessageTooLarge, "invalid"},
		{kerr.InvalidRecord, "invalid"},
		{kerr.CorruptMessage, "invalid"},
		{kerr.SaslAuthenticationFailed, "plain"},
		{kerr.TopicAuthorizationFailed, "plain"},
		{kerr.ClusterAuthorizationFailed, "plain"},
		{kerr.UnknownTopicOrPartition, "plain"},
		{errors.New("something else"), "plain"},
	} {
		err := classify(ctx, fmt.Errorf("layer: %w", tc.err))
		got := "plain"
		var inv *sink.InvalidError
		if _, ok := sink.Retryable(err); ok {
			got = "retryable"
		} else if errors.As(err, &inv) {
			got = "invalid"
		}
		if got != tc.want {
			t.Errorf("classify(%v) is %s, want %s", tc.err, got, tc.want)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("classify(%v) lost the error: %v", tc.err, err)
		}
	}
}
