package eventhubs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/go-amqp"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/testenv"
)

func timeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestOutageRetryable stops the stand-in: Writes fail as retryable; after a
// restart on the same port the same Write succeeds and arrives whole.
func TestOutageRetryable(t *testing.T) {
	stub := testenv.LaunchEventHubsStub(t)
	cs := stub.ConnectionString(true)
	s := newSink(t, Config{ConnectionString: cs})
	ctx := timeout(t)
	if err := s.Write(ctx, sinktest.Records(0, 3)); err != nil {
		t.Fatalf("Write before the outage: %v", err)
	}
	if err := stub.Stop(); err != nil {
		t.Fatal(err)
	}
	recs := sinktest.Records(3, 4)
	// The first Write finds the connection gone, the next ones cannot dial.
	for i := range 2 {
		err := s.Write(ctx, recs)
		if _, ok := sink.Retryable(err); !ok {
			t.Fatalf("Write %d during the outage: %v, want a retryable error", i, err)
		}
	}
	if err := s.Check(ctx); err == nil {
		t.Errorf("Check during the outage returned nil")
	} else if _, ok := sink.Retryable(err); !ok {
		t.Errorf("Check during the outage: %v, want a retryable error", err)
	}
	if err := stub.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, recs); err != nil {
		t.Fatalf("the same Write after the restart: %v", err)
	}
	// The restarted stub starts empty: it holds exactly the retried batch.
	if d := sinktest.Diff(records(readEvents(t, cs)), recs); d != "" {
		t.Errorf("delivered after the restart differs:\n%s", d)
	}
}

// TestWrongKey uses a connection string whose key the stand-in refuses on
// $cbs put-token (status 401): Check and Write fail with a plain error
// that holds neither the key nor the connection string, and nothing is
// sent or logged with them.
func TestWrongKey(t *testing.T) {
	stub := testenv.LaunchEventHubsStub(t, testenv.EventHubsCheckKey())
	good := stub.ConnectionString(true)
	if err := newSink(t, Config{ConnectionString: good}).Check(timeout(t)); err != nil {
		t.Fatalf("Check with the right key: %v", err)
	}
	const secret = "d3Jvbmcta2V5LXRoYXQtbXVzdC1uZXZlci1sZWFr"
	bad := strings.Replace(good, testenv.EventHubsStubKey, secret, 1)
	var logs bytes.Buffer
	s, err := New(Config{ConnectionString: bad}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := timeout(t)
	for name, err := range map[string]error{
		"Check": s.Check(ctx),
		"Write": s.Write(ctx, sinktest.Records(0, 3)),
	} {
		var ehErr *azeventhubs.Error
		var inv *sink.InvalidError
		switch {
		case err == nil:
			t.Fatalf("%s with a wrong key returned nil", name)
		case errors.As(err, &inv):
			t.Errorf("%s: %v is an InvalidError; bad credentials are not the records' fault", name, err)
		case !errors.As(err, &ehErr) || ehErr.Code != azeventhubs.ErrorCodeUnauthorizedAccess:
			if !strings.Contains(err.Error(), "401") {
				t.Errorf("%s: %v, want an unauthorized error", name, err)
			}
		}
		if _, ok := sink.Retryable(err); ok {
			t.Errorf("%s: %v is retryable; bad credentials need an operator", name, err)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "SharedAccessKey=") {
			t.Errorf("%s error leaks the key: %v", name, err)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("logs leak the key: %s", logs.String())
	}
	if got := readEvents(t, good); len(got) != 0 {
		t.Errorf("a refused Write delivered %d events", len(got))
	}
}

// TestUnknownHub names a hub the namespace does not have: Event Hubs
// answers $management with 404 and refuses the send link with
// amqp:not-found, both configuration errors.
func TestUnknownHub(t *testing.T) {
	stub := testenv.LaunchEventHubsStub(t)
	s := newSink(t, Config{ConnectionString: stub.ConnectionString(false), Hub: "no-such-hub"})
	ctx := timeout(t)
	for name, err := range map[string]error{
		"Check": s.Check(ctx),
		"Write": s.Write(ctx, sinktest.Records(0, 2)),
	} {
		if err == nil {
			t.Fatalf("%s to an unknown hub returned nil", name)
		}
		if _, ok := sink.Retryable(err); ok {
			t.Errorf("%s: %v is retryable, want a plain error", name, err)
		}
		if !strings.Contains(err.Error(), "no-such-hub") {
			t.Errorf("%s: %v does not name the hub", name, err)
		}
	}
}

func TestWriteCancelled(t *testing.T) {
	s := newSink(t, Config{ConnectionString: "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;EntityPath=h"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Write(ctx, sinktest.Records(0, 1))
	if _, ok := sink.Retryable(err); !ok || !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context: %v, want retryable wrapping context.Canceled", err)
	}
}

func TestNewValidates(t *testing.T) {
	const cs = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0LWtleQ=="
	tests := []struct {
		name string
		cfg  Config
		want string // in the error; "" means New succeeds
	}{
		{"connection string and hub", Config{ConnectionString: cs, Hub: "h"}, ""},
		{"connection string with entity path", Config{ConnectionString: cs + ";EntityPath=h"}, ""},
		{"credential", Config{Credential: staticCred{tok: "t"}, Namespace: "contoso.servicebus.windows.net", Hub: "h", PartitionKey: "principal"}, ""},
		{"nothing", Config{Hub: "h"}, "connection string or a credential"},
		{"both", Config{ConnectionString: cs, Credential: staticCred{tok: "t"}, Hub: "h"}, "not both"},
		{"credential without namespace", Config{Credential: staticCred{tok: "t"}, Hub: "h"}, "namespace is empty"},
		{"namespace as URL", Config{Credential: staticCred{tok: "t"}, Namespace: "sb://contoso.servicebus.windows.net", Hub: "h"}, "not a URL"},
		{"credential without hub", Config{Credential: staticCred{tok: "t"}, Namespace: "contoso.servicebus.windows.net"}, "hub is empty"},
		{"connection string without hub", Config{ConnectionString: cs}, "EntityPath"},
		{"hub twice", Config{ConnectionString: cs + ";EntityPath=h", Hub: "h"}, "EntityPath"},
		{"bad partition key", Config{ConnectionString: cs, Hub: "h", PartitionKey: "tenant"}, `partition_key "tenant"`},
		{"reserved property", Config{ConnectionString: cs, Hub: "h", Properties: map[string]string{"kind": "x"}}, `property "kind"`},
		{"malformed connection string", Config{ConnectionString: "SharedAccessKey=c2VjcmV0LWtleQ==;nonsense", Hub: "h"}, "connection string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				s.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "c2VjcmV0LWtleQ==") {
				t.Errorf("error leaks the key: %v", err)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	rpc := func(code int) error { return fakeRPCError(code) }
	tests := []struct {
		name  string
		err   error
		want  string // "retryable", "invalid" or "plain"
		after time.Duration
	}{
		{"context deadline", context.DeadlineExceeded, "retryable", 0},
		{"eof", io.EOF, "retryable", 0},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, "retryable", 0},
		{"conn closed", &amqp.ConnError{}, "retryable", 0},
		{"link detached", &amqp.LinkError{}, "retryable", 0},
		{"server busy", &amqp.Error{Condition: "com.microsoft:server-busy"}, "retryable", serverBusyRetry},
		{"service timeout", &amqp.Error{Condition: "com.microsoft:timeout"}, "retryable", 0},
		{"internal error", &amqp.Error{Condition: amqp.ErrCondInternalError}, "retryable", 0},
		{"too large", &amqp.Error{Condition: amqp.ErrCondMessageSizeExceeded}, "invalid", 0},
		{"unauthorized", &amqp.Error{Condition: amqp.ErrCondUnauthorizedAccess}, "plain", 0},
		{"not found", &amqp.Error{Condition: amqp.ErrCondNotFound}, "plain", 0},
		{"disabled", &amqp.Error{Condition: "com.microsoft:entity-disabled"}, "plain", 0},
		{"rpc 401", rpc(401), "plain", 0},
		{"rpc 404", rpc(404), "plain", 0},
		{"rpc 429", rpc(429), "retryable", serverBusyRetry},
		{"rpc 503", rpc(503), "retryable", 0},
		{"unknown", errors.New("something else"), "plain", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify(fmt.Errorf("wrapped: %w", tt.err))
			var inv *sink.InvalidError
			after, retry := sink.Retryable(err)
			got := "plain"
			switch {
			case retry:
				got = "retryable"
			case errors.As(err, &inv):
				got = "invalid"
			}
			if got != tt.want || after != tt.after {
				t.Errorf("classify = %s (after %s), want %s (after %s)", got, after, tt.want, tt.after)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("classify lost the original error")
			}
		})
	}
}

// fakeRPCError has the RPCCode method of the SDK's internal RPCError.
type fakeRPCError int

func (e fakeRPCError) Error() string { return fmt.Sprintf("rpc: status code %d", int(e)) }
func (e fakeRPCError) RPCCode() int  { return int(e) }
