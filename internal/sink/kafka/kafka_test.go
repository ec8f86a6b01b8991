package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

const (
	testTopic = "audit"
	testUser  = "tapline"
	testPass  = "s3cret-Pa55word-4-kafka"
)

// testCA is a self-signed certificate for 127.0.0.1 (kfake always listens
// there), written to a PEM file that the sink's TLS.CAFile can name.
type testCA struct {
	server *tls.Config // the cluster's
	pool   *x509.CertPool
	file   string
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kfake"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testCA{
		server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		pool:   pool,
		file:   file,
	}
}

// cluster is a kfake cluster with SASL over TLS and one superuser, as the
// Event Hubs Kafka endpoint is (SASL_SSL).
type cluster struct {
	c         *kfake.Cluster
	ca        testCA
	mechanism string
	user      string
	pass      string
}

// newCluster starts a one-broker cluster holding topic with the given number
// of partitions; it is closed in t.Cleanup.
func newCluster(t *testing.T, ca testCA, mechanism, user, pass string, partitions int32, opts ...kfake.Opt) *cluster {
	t.Helper()
	opts = append([]kfake.Opt{
		kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mechanism, user, pass),
		kfake.TLS(ca.server), kfake.SeedTopics(partitions, testTopic),
	}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &cluster{c: c, ca: ca, mechanism: mechanism, user: user, pass: pass}
}

// config is a sink configuration for the cluster's superuser.
func (c *cluster) config() Config {
	return Config{
		Brokers: c.c.ListenAddrs(),
		Topic:   testTopic,
		SASL:    SASL{Mechanism: c.mechanism, Username: c.user, Password: c.pass},
		TLS:     TLS{Enabled: true, CAFile: c.ca.file},
	}
}

func (c *cluster) mech() sasl.Mechanism {
	switch c.mechanism {
	case MechanismScramSHA256:
		return scram.Auth{User: c.user, Pass: c.pass}.AsSha256Mechanism()
	case MechanismScramSHA512:
		return scram.Auth{User: c.user, Pass: c.pass}.AsSha512Mechanism()
	}
	return plain.Auth{User: c.user, Pass: c.pass}.AsMechanism()
}

// consumed is one record read back from the topic.
type consumed struct {
	rec       record.Record
	key       string
	partition int32
	headers   map[string]string
}

// consume reads every record of the topic from the start, partition by
// partition in offset order, with a client of its own.
func (c *cluster) consume(t *testing.T) []consumed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.c.ListenAddrs()...),
		kgo.DialTLSConfig(&tls.Config{RootCAs: c.ca.pool}), kgo.SASL(c.mech()),
		kgo.ConsumeTopics(testTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, testTopic)
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	byPart := map[int32][]consumed{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume: %v (still waiting for %v)", err, want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(kr *kgo.Record) {
			var r record.Record
			if err := json.Unmarshal(kr.Value, &r); err != nil {
				t.Fatalf("offset %d: value %.100q is not an envelope: %v", kr.Offset, kr.Value, err)
			}
			h := map[string]string{}
			for _, kh := range kr.Headers {
				h[kh.Key] = string(kh.Value)
			}
			byPart[kr.Partition] = append(byPart[kr.Partition], consumed{r, string(kr.Key), kr.Partition, h})
			if end, ok := want[kr.Partition]; ok && kr.Offset+1 >= end {
				delete(want, kr.Partition)
			}
		})
	}
	var out []consumed
	for _, p := range slices.Sorted(maps.Keys(byPart)) {
		out = append(out, byPart[p]...)
	}
	return out
}

// delivered returns the topic's records and checks that each carries the
// id, kind and version headers of its envelope.
func (c *cluster) delivered(t *testing.T) []record.Record {
	t.Helper()
	var recs []record.Record
	for _, cr := range c.consume(t) {
		r := cr.rec
		want := map[string]string{HeaderID: r.ID, HeaderKind: string(r.Kind), HeaderVersion: strconv.Itoa(r.Version)}
		for k, v := range want {
			if cr.headers[k] != v {
				t.Errorf("record %q: header %s = %q, want %q", r.ID, k, cr.headers[k], v)
			}
		}
		recs = append(recs, r)
	}
	return recs
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// conformance runs sinktest on a fresh one-partition cluster per case, so
// that Delivered's offset order is the write order.
func conformance(t *testing.T, mechanism string) {
	ca := newTestCA(t)
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinktest.Target {
			c := newCluster(t, ca, mechanism, testUser, testPass, 1)
			return sinktest.Target{Sink: newSink(t, c.config()), Delivered: c.delivered}
		},
		MaxRecordBytes: DefaultMaxRecordBytes,
	})
}

// TestConformancePlainTLS is the conformance suite over SASL PLAIN and TLS,
// as the Event Hubs Kafka endpoint uses.
func TestConformancePlainTLS(t *testing.T) { conformance(t, MechanismPlain) }

// TestConformanceScramTLS is the conformance suite over SCRAM-SHA-256.
func TestConformanceScramTLS(t *testing.T) { conformance(t, MechanismScramSHA256) }
