// Package blob is the sink that writes records to Azure Blob Storage as
// create-only, date-partitioned JSON Lines blobs.
//
// Each batch is split into groups of one kind, one scope and one UTC hour;
// each group becomes one block blob
//
//	{prefix}{kind}/{scope}/yyyy/mm/dd/hh/{first-id}.jsonl
//
// holding the record envelopes, one per line, in batch order. The scope of
// an activity_log record is its Activity Log scope (a management group id,
// "tenant", or "subscription-{id}"); gateway_request records use "all".
// Names depend only on the records, and every blob is created with
// If-None-Match: *, so a retried batch never overwrites or duplicates a
// blob. When a retry finds its blob, the sink reads it: holding these
// records or more, the group is done; holding a prefix of them, the rest
// goes to the blob named after the rest's first record; holding anything
// else, Write fails naming the blob. The shipper may retry from the same
// record with a larger or smaller batch after a restart, and no record is
// lost or overwritten either way.
//
// With RunbookLayout, the original ARM events of each management group
// (or "tenant", "subscription-{id}") and collection run are also written
// as one JSON array, the layout the well-known management-group runbook
// produced:
//
//	{prefix}runbook/{management group}/{yyyy-mm-ddThh-mm-ssZ}.json
//
// named for the run's start (the records' collection_run). A run's events
// arrive over many batches: each batch appends them as one block and
// commits the block list on the blob's ETag, so the blob is a whole JSON
// array after every commit and a retried batch adds nothing twice (see
// runbook.go). Records stored before collection_run existed keep the
// earlier layout, one create-only array per group and batch,
// {prefix}runbook/{management group}/{yyyy-mm-ddThh-mm-ssZ}-{first-id}.json.
//
// A blob container has no order across blobs: readers order records by
// their time (the name gives the hour) and, within a blob, by line.
package blob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tidwall/gjson"
	"golang.org/x/sync/errgroup"
)

// uploadConcurrency bounds the blobs one Write puts at the same time.
const uploadConcurrency = 8

// checkBlob is the blob Check reads (it need not exist).
const checkBlob = ".tapline-check"

// Config is the Azure Blob sink's configuration (DESIGN.md §4,
// sinks[].azure_blob). Exactly one of AccountURL (with Credential),
// ConnectionString and SASURL is set.
type Config struct {
	// AccountURL is the blob endpoint, e.g.
	// https://contoso.blob.core.windows.net. Requests are authorized with
	// Credential (Entra ID), which needs the role Storage Blob Data
	// Contributor on the container. http:// is accepted for loopback
	// emulators only.
	AccountURL string
	// Credential authorizes requests to AccountURL.
	Credential azcore.TokenCredential
	// ConnectionString is a storage connection string with an account key
	// or a SAS.
	ConnectionString string
	// SASURL is a container SAS URL (https://acct.blob.core.windows.net/c?sv=...)
	// or an account SAS URL (https://acct.blob.core.windows.net/?sv=...).
	// It needs the read and create (or write) permissions; RunbookLayout
	// needs write.
	SASURL string
	// Container receives the blobs; it must exist. It may be empty when
	// SASURL names the container.
	Container string
	// Prefix, when set, is put before every blob name; a "/" is added if it
	// does not end with one.
	Prefix string
	// RunbookLayout also writes one JSON array of the original ARM events
	// per management group and collection run. It needs the permission to
	// read and write blobs (Put Block and Put Block List append to it), not
	// only to create them.
	RunbookLayout bool
}

// Sink writes record batches to one blob container.
type Sink struct {
	cc        *container.Client
	container string
	prefix    string
	runbook   bool
	secrets   []string // removed from every error message
	log       *slog.Logger
	now       func() time.Time // for HTTP-date Retry-After
	closed    bool
	// runEnds maps a run blob to its ETag when the last successful Write
	// left it ending with that Write's last event of the run: the next
	// batch starts after it (rememberRuns).
	runEnds map[string]string
}

var (
	_ sink.Sink    = (*Sink)(nil)
	_ sink.Checker = (*Sink)(nil)
)

// New validates cfg and returns a sink. It sends no request.
func New(cfg Config, log *slog.Logger) (*Sink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "sink_azure_blob")
	s := &Sink{prefix: cfg.Prefix, runbook: cfg.RunbookLayout, log: log, now: time.Now,
		runEnds: make(map[string]string)}
	if s.prefix != "" && !strings.HasSuffix(s.prefix, "/") {
		s.prefix += "/"
	}
	if strings.HasPrefix(s.prefix, "/") {
		return nil, errors.New("new azure blob sink: prefix must not start with /")
	}
	n := 0
	for _, set := range []bool{cfg.AccountURL != "", cfg.ConnectionString != "", cfg.SASURL != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("new azure blob sink: set exactly one of account_url, connection_string and sas_url")
	}
	if cfg.AccountURL != "" && cfg.Credential == nil {
		return nil, errors.New("new azure blob sink: account_url needs a credential")
	}
	if cfg.AccountURL == "" && cfg.Credential != nil {
		return nil, errors.New("new azure blob sink: a credential is used only with account_url")
	}
	// The SDK must not retry: the shipper owns retries (sink contract).
	opts := &container.ClientOptions{}
	opts.Retry.MaxRetries = -1
	var err error
	switch {
	case cfg.AccountURL != "":
		s.container = cfg.Container
		err = s.newWithCredential(cfg, opts)
	case cfg.ConnectionString != "":
		s.container = cfg.Container
		s.secrets = connSecrets(cfg.ConnectionString)
		err = s.newFromConnectionString(cfg, opts)
	default:
		err = s.newFromSAS(cfg, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("new azure blob sink: %w", err)
	}
	return s, nil
}

func (s *Sink) newWithCredential(cfg Config, opts *container.ClientOptions) error {
	u, err := url.Parse(cfg.AccountURL)
	if err != nil || u.Host == "" || u.RawQuery != "" {
		return errors.New("account_url is not an absolute URL without a query")
	}
	if err := s.checkScheme(u); err != nil {
		return err
	}
	if err := validContainer(s.container); err != nil {
		return err
	}
	// Credentials over http only to a loopback emulator (DESIGN.md §4).
	opts.InsecureAllowCredentialWithHTTP = u.Scheme == "http"
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + s.container
	s.cc, err = container.NewClient(u.String(), cfg.Credential, opts)
	return err
}

func (s *Sink) newFromConnectionString(cfg Config, opts *container.ClientOptions) error {
	if err := validContainer(s.container); err != nil {
		return err
	}
	cc, err := container.NewClientFromConnectionString(cfg.ConnectionString, s.container, opts)
	if err != nil {
		// The SDK's parse errors do not quote the string; redact anyway.
		return fmt.Errorf("parse connection_string: %s", s.redact(err.Error()))
	}
	u, err := url.Parse(cc.URL())
	if err != nil {
		return errors.New("connection_string has an unusable blob endpoint")
	}
	if err := s.checkScheme(u); err != nil {
		return err
	}
	s.cc = cc
	return nil
}

func (s *Sink) newFromSAS(cfg Config, opts *container.ClientOptions) error {
	// Never quote the URL or the parser's error: both hold the signature.
	u, err := url.Parse(cfg.SASURL)
	if err != nil || u.Host == "" || u.RawQuery == "" {
		return errors.New("sas_url is not an absolute URL with a SAS query")
	}
	s.secrets = []string{u.RawQuery, u.Query().Get("sig")}
	if err := s.checkScheme(u); err != nil {
		return err
	}
	parts, err := sas.ParseURL(cfg.SASURL)
	if err != nil {
		return errors.New("sas_url is not a blob service URL")
	}
	switch {
	case parts.BlobName != "":
		return errors.New("sas_url names a blob: give a container or account SAS URL")
	case parts.ContainerName == "":
		parts.ContainerName = cfg.Container
	case cfg.Container != "" && cfg.Container != parts.ContainerName:
		return fmt.Errorf("sas_url is for container %q, not %q", parts.ContainerName, cfg.Container)
	}
	s.container = parts.ContainerName
	if err := validContainer(s.container); err != nil {
		return err
	}
	s.cc, err = container.NewClientWithNoCredential(parts.String(), opts)
	return err
}

// checkScheme accepts https, and http for loopback emulators only, with a
// warning: the credential then travels in the clear.
func (s *Sink) checkScheme(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			s.log.Warn("blob endpoint uses http: credentials are sent unencrypted (emulators only)", "host", u.Host)
			return nil
		}
		return fmt.Errorf("blob endpoint %s uses http: only loopback emulators may", u.Host)
	default:
		return fmt.Errorf("blob endpoint scheme %q is not https", u.Scheme)
	}
}

// validContainer applies the service's container naming rules, so that a
// typo fails at start rather than at the first batch.
func validContainer(name string) error {
	if name == "" {
		return errors.New("container is empty")
	}
	if name == "$root" {
		return nil
	}
	ok := len(name) >= 3 && len(name) <= 63 && name[0] != '-' && name[len(name)-1] != '-' &&
		!strings.Contains(name, "--")
	for _, c := range name {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("container %q is not a valid name (3-63 lowercase letters, digits and single hyphens)", name)
	}
	return nil
}

// connSecrets returns the values of a connection string that must not be
// shown: the account key and the SAS.
func connSecrets(conn string) []string {
	var out []string
	for kv := range strings.SplitSeq(conn, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "accountkey", "sharedaccesssignature":
			out = append(out, v)
			if q, err := url.ParseQuery(v); err == nil && q.Get("sig") != "" {
				out = append(out, q.Get("sig"))
			}
		}
	}
	return out
}

// Write puts each (kind, scope, hour) group of recs as one create-only
// blob, and with RunbookLayout appends each (management group, run)
// group's events to its run's array. It returns nil once every blob holds
// these records.
func (s *Sink) Write(ctx context.Context, recs []record.Record) error {
	if s.closed {
		return fmt.Errorf("write azure blob sink: %w", sink.ErrClosed)
	}
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		switch {
		case recs[i].ID == "":
			return fmt.Errorf("write azure blob sink: %w", sink.InvalidRecords(nil, "record has no id", i))
		case !gjson.ValidBytes(recs[i].Data):
			return fmt.Errorf("write azure blob sink: %w", sink.InvalidRecords(nil,
				fmt.Sprintf("record %q has data that is not valid JSON", recs[i].ID), i))
		}
	}
	var layouts []layout
	for _, g := range groups(recs) {
		layouts = append(layouts, s.linesLayout(recs, g))
		if s.runbook && recs[g.recs[0]].Kind == record.KindActivityLog {
			if l := s.runbookLayout(recs, g); l.n > 0 {
				layouts = append(layouts, l)
			}
		}
	}
	var runs []*runGroup
	if s.runbook {
		runs = runGroups(s.prefix, recs)
	}
	ends := make([]string, len(runs))
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(uploadConcurrency)
	for _, l := range layouts {
		eg.Go(func() error { return s.putCreateOnly(ectx, l) })
	}
	for i, g := range runs {
		eg.Go(func() (err error) {
			ends[i], err = s.appendRun(ectx, g)
			return err
		})
	}
	err := eg.Wait()
	s.rememberRuns(runs, ends, err != nil)
	if err != nil {
		return fmt.Errorf("write azure blob sink: %w", err)
	}
	return nil
}

// Check reads the properties of a blob that need not exist: a 404
// BlobNotFound proves the endpoint is reachable, the credential valid, the
// container present and readable (the sink reads blobs when a retry meets
// one). It writes nothing, so it cannot prove the create permission. Get
// Container Properties would not do: a container SAS may not read
// container properties.
func (s *Sink) Check(ctx context.Context) error {
	name := s.prefix + checkBlob
	_, err := s.cc.NewBlobClient(name).GetProperties(ctx, nil)
	if err == nil || bloberror.HasCode(err, bloberror.BlobNotFound) {
		return nil
	}
	return fmt.Errorf("check azure blob sink: %w", s.classify("get blob properties", name, err))
}

// Close marks the sink closed: later Writes fail with sink.ErrClosed. The
// storage client holds no connection of its own to release.
func (s *Sink) Close() error {
	s.closed = true
	return nil
}
