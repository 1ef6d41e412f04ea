// Package bqfake provides an in-process fake of the BigQuery Storage Read API
// (the gRPC service google.cloud.bigquery.storage.v1.BigQueryRead), of the
// Storage Write API (BigQueryWrite: PENDING and COMMITTED streams), of the
// three BigQuery REST calls a query source makes (jobs.insert,
// jobs.getQueryResults, jobs.get) and of tables.get and tables.insert, so
// that packages bigqueryread and bigquerywrite can be tested with the real
// Google clients (the Storage clients, managedwriter, the bigquery REST
// client) and no cloud.
//
// A Server holds tables loaded with AddTable from []map[string]any and a
// declared schema (scalar, RECORD and REPEATED columns), or created through
// tables.insert. CreateReadSession honours the selected fields and a row
// restriction of exactly the form bigqueryread.RowRestriction writes (a
// half-open range on one TIMESTAMP column); it splits the matching rows into
// several streams. ReadRows serves a stream from any offset, in Arrow record
// batches of a few rows each. Faults inject gRPC errors: transient ones
// mid-stream to exercise resumption, permanent ones to check that a pipeline
// fails with a clear message. SplitReadStream is unimplemented.
//
// Writes: CreateWriteStream, AppendRows (rows in protobuf, decoded with
// the writer schema of the request, checked against the table's columns by
// name and type; offsets checked), FinalizeWriteStream,
// BatchCommitWriteStreams (atomic: all the streams' rows become visible at
// once, or none) and GetWriteStream. The rows of a PENDING stream are
// visible to reads only once committed; WriteStreams and Rows show what was
// written. BUFFERED streams, FlushRows, the _default stream, schema
// updates, row-level errors and the stream, size and throughput limits of
// BigQuery are not modelled.
//
// The fake does not implement SQL: a query source's SQL is handed to the
// function set with HandleQueries, which names the (loaded) table that
// stands for its result. Nor does it model quotas, IAM, real type
// coercions, session expiry or throttling.
package bqfake

import (
	"fmt"
	"math/big"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Type is a BigQuery column type the fake can serve.
type Type string

// The column types the fake serves, and the Go values a row gives for them
// (nil is NULL in every column):
//
//	INT64      int, int64
//	FLOAT64    float64 (NaN and ±Inf included, as in BigQuery)
//	STRING     string
//	BOOL       bool
//	TIMESTAMP  time.Time (kept to the microsecond)
//	NUMERIC    *big.Rat or a decimal string (scale 9, as in BigQuery)
const (
	Int64     Type = "INT64"
	Float64   Type = "FLOAT64"
	String    Type = "STRING"
	Bool      Type = "BOOL"
	Timestamp Type = "TIMESTAMP"
	Numeric   Type = "NUMERIC"
	// Record is a STRUCT of the Column's Fields: a map[string]any by
	// field name, missing fields NULL.
	Record Type = "RECORD"
)

// Mode is a column's mode: "" (NULLABLE), Required or Repeated.
type Mode string

// The modes of a column. A REPEATED column holds a []any of values of its
// type (NULL elements are not allowed; a NULL or missing array is empty),
// as in BigQuery.
const (
	Nullable Mode = ""
	Required Mode = "REQUIRED"
	Repeated Mode = "REPEATED"
)

// Column is one column of a table's schema: NULLABLE unless Mode says
// otherwise; a Record column's Fields are its sub-columns.
type Column struct {
	Name   string
	Type   Type
	Mode   Mode
	Fields []Column
}

// Method names a gRPC method of the Storage Read API, for Faults.
type Method string

// The methods a Fault can target.
const (
	CreateReadSession Method = "CreateReadSession"
	ReadRows          Method = "ReadRows"
)

// AnyStream makes a ReadRows Fault match every stream.
const AnyStream = -1

// Fault makes a method fail with Err, a gRPC status error such as
// status.Error(codes.Unavailable, "..."). A ReadRows fault fires on stream
// Stream of a session (its index in ReadSession.Streams, or AnyStream) when
// the server is about to send the page that starts at or after row Offset
// of the stream, so the rows before it have been delivered. It fires Times
// times on each stream it matches (CreateReadSession: Times times in all),
// or every time if Times is 0.
type Fault struct {
	Method Method
	Stream int
	Offset int64
	Err    error
	Times  int

	fired map[string]int // by stream name
}

// Default paging and splitting.
const (
	DefaultStreams  = 4 // streams of a session whose request leaves MaxStreamCount 0
	DefaultPageRows = 2 // rows per ReadRowsResponse
)

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the host:port of the gRPC Storage Read API, for
	// bigqueryread.Endpoint (plaintext, no authentication).
	Addr string
	// URL is the base URL of the REST API, for bigqueryread.RESTEndpoint.
	URL string

	grpc *grpc.Server
	http *httptest.Server

	mu          sync.Mutex
	tables      map[string]*table // by "project.dataset.table"
	sessions    int
	streams     map[string]*stream // by stream name
	streamCount int
	pageRows    int
	faults      []*Fault
	sessionReqs []*storagepb.CreateReadSessionRequest
	readReqs    []*storagepb.ReadRowsRequest
	queryFn     func(Query) (string, error)
	queries     []Query
	jobs        map[string]*job
	writes      map[string]*writeStream // by stream name
	writeOrder  []string
}

type table struct {
	cols []Column
	rows []map[string]any
}

// NewServer starts a fake on loopback ports. Close it when done.
func NewServer() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bqfake: listen: %w", err)
	}
	s := &Server{
		Addr:        lis.Addr().String(),
		tables:      make(map[string]*table),
		streams:     make(map[string]*stream),
		streamCount: DefaultStreams,
		pageRows:    DefaultPageRows,
		jobs:        make(map[string]*job),
		writes:      make(map[string]*writeStream),
	}
	s.grpc = grpc.NewServer()
	storagepb.RegisterBigQueryReadServer(s.grpc, &readServer{s: s})
	storagepb.RegisterBigQueryWriteServer(s.grpc, &writeServer{s: s})
	go s.grpc.Serve(lis) //nolint:errcheck // Serve returns when Close stops the server.
	s.http = httptest.NewServer(s.restHandler())
	s.URL = s.http.URL
	return s, nil
}

// NewTestServer starts a fake for a test, which closes it when it ends;
// it fails the test if the fake cannot start.
func NewTestServer(tb testing.TB) *Server {
	tb.Helper()
	s, err := NewServer()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Close stops both servers.
func (s *Server) Close() {
	s.grpc.Stop()
	s.http.Close()
}

// AddTable loads (or replaces) the table ref, "project.dataset.table", with
// the given columns and rows. Each row maps column names to values of the
// Go types listed with Type; a missing column is NULL. The rows are copied.
func (s *Server) AddTable(ref string, cols []Column, rows []map[string]any) error {
	if _, _, _, err := splitRef(ref); err != nil {
		return err
	}
	if err := checkColumns(cols); err != nil {
		return fmt.Errorf("bqfake: table %s: %w", ref, err)
	}
	t := &table{cols: append([]Column(nil), cols...), rows: make([]map[string]any, len(rows))}
	for i, r := range rows {
		row, err := recordValue(cols, r)
		if err != nil {
			return fmt.Errorf("bqfake: table %s: row %d: %w", ref, i, err)
		}
		t.rows[i] = row
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tables[ref] = t
	return nil
}

// checkColumns reports a column of an unsupported type or mode, or a bad or
// duplicate name, at any depth.
func checkColumns(cols []Column) error {
	seen := make(map[string]bool, len(cols))
	for _, c := range cols {
		if seen[strings.ToLower(c.Name)] || c.Name == "" {
			return fmt.Errorf("bad or duplicate column name %q", c.Name)
		}
		seen[strings.ToLower(c.Name)] = true
		switch c.Mode {
		case Nullable, Required, Repeated:
		default:
			return fmt.Errorf("column %q: unsupported mode %q", c.Name, c.Mode)
		}
		switch c.Type {
		case Int64, Float64, String, Bool, Timestamp, Numeric:
			if len(c.Fields) > 0 {
				return fmt.Errorf("column %q: a %s column has no fields", c.Name, c.Type)
			}
		case Record:
			if len(c.Fields) == 0 {
				return fmt.Errorf("column %q: a RECORD column needs fields", c.Name)
			}
			if err := checkColumns(c.Fields); err != nil {
				return fmt.Errorf("column %q: %w", c.Name, err)
			}
		default:
			return fmt.Errorf("column %q: unsupported type %q", c.Name, c.Type)
		}
	}
	return nil
}

// recordValue checks a row (or a RECORD value) against cols and
// normalizes it (see columnValue).
func recordValue(cols []Column, r map[string]any) (map[string]any, error) {
	row := make(map[string]any, len(r))
	for name, v := range r {
		i := slices.IndexFunc(cols, func(c Column) bool { return c.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("no column %q", name)
		}
		cv, err := fieldValue(cols[i], v)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", name, err)
		}
		row[name] = cv
	}
	for _, c := range cols {
		if c.Mode == Required && row[c.Name] == nil {
			return nil, fmt.Errorf("REQUIRED column %q is NULL", c.Name)
		}
	}
	return row, nil
}

// fieldValue checks v against column c, its mode included, and normalizes
// it: a REPEATED value becomes a []any of normalized elements.
func fieldValue(c Column, v any) (any, error) {
	if c.Mode != Repeated {
		return columnValue(c, v)
	}
	if v == nil {
		return []any(nil), nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want []any for a REPEATED column, got %T", v)
	}
	out := make([]any, len(l))
	for i, e := range l {
		if e == nil {
			return nil, fmt.Errorf("element %d is NULL (a REPEATED column has no NULL elements)", i)
		}
		var err error
		if out[i], err = columnValue(c, e); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
	}
	return out, nil
}

// columnValue checks v against c's type and normalizes it: int64, float64,
// string, bool, time.Time (UTC, microseconds), *big.Rat, map[string]any
// (a RECORD), or nil.
func columnValue(c Column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	typ := c.Type
	switch typ {
	case Record:
		if m, ok := v.(map[string]any); ok {
			return recordValue(c.Fields, m)
		}
	case Int64:
		switch x := v.(type) {
		case int:
			return int64(x), nil
		case int64:
			return x, nil
		}
	case Float64:
		if x, ok := v.(float64); ok {
			return x, nil
		}
	case String:
		if x, ok := v.(string); ok {
			return x, nil
		}
	case Bool:
		if x, ok := v.(bool); ok {
			return x, nil
		}
	case Timestamp:
		if x, ok := v.(time.Time); ok {
			return x.UTC().Truncate(time.Microsecond), nil
		}
	case Numeric:
		var r *big.Rat
		switch x := v.(type) {
		case *big.Rat:
			r = new(big.Rat).Set(x)
		case string:
			var ok bool
			if r, ok = new(big.Rat).SetString(x); !ok {
				return nil, fmt.Errorf("bad NUMERIC %q", x)
			}
		default:
			return nil, fmt.Errorf("want *big.Rat or string for NUMERIC, got %T", v)
		}
		scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(numericScale))
		if !scaled.IsInt() || scaled.Num().CmpAbs(maxNumeric) > 0 {
			return nil, fmt.Errorf("NUMERIC %s does not fit precision 38, scale 9", r.FloatString(12))
		}
		return r, nil
	}
	return nil, fmt.Errorf("want a Go value for %s, got %T", typ, v)
}

var (
	numericScale = big.NewInt(1_000_000_000)
	maxNumeric   = new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(38), nil), big.NewInt(1))
)

// SetStreams sets how many streams a session gets when its request leaves
// MaxStreamCount at 0 (DefaultStreams at first). A session never has more
// streams than matching rows, as BigQuery returns none for an empty read.
func (s *Server) SetStreams(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streamCount = max(n, 1)
}

// SetPageRows sets how many rows each ReadRowsResponse carries
// (DefaultPageRows at first).
func (s *Server) SetPageRows(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageRows = max(n, 1)
}

// InjectFault adds f; faults are checked in the order they were added.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// fault returns the error of the first matching fault that has firings
// left, counting the firing, or nil.
// Callers hold s.mu.
func (s *Server) fault(m Method, name string, stream int, offset int64) error {
	for _, f := range s.faults {
		if f.Method != m || f.Times > 0 && f.fired[name] >= f.Times {
			continue
		}
		if m == ReadRows && f.Stream != AnyStream && f.Stream != stream || (m == ReadRows || m == AppendRows) && offset < f.Offset {
			continue
		}
		if f.fired == nil {
			f.fired = make(map[string]int)
		}
		f.fired[name]++
		return f.Err
	}
	return nil
}

// SessionRequests returns copies of the CreateReadSession requests received
// so far, in order.
func (s *Server) SessionRequests() []*storagepb.CreateReadSessionRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*storagepb.CreateReadSessionRequest, len(s.sessionReqs))
	for i, r := range s.sessionReqs {
		out[i] = proto.Clone(r).(*storagepb.CreateReadSessionRequest)
	}
	return out
}

// ReadRequests returns copies of the ReadRows requests received so far, in
// order.
func (s *Server) ReadRequests() []*storagepb.ReadRowsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*storagepb.ReadRowsRequest, len(s.readReqs))
	for i, r := range s.readReqs {
		out[i] = proto.Clone(r).(*storagepb.ReadRowsRequest)
	}
	return out
}

// splitRef splits "project.dataset.table"; the project may contain dots
// (a domain-scoped "example.com:project").
func splitRef(ref string) (project, dataset, tbl string, err error) {
	i := strings.LastIndexByte(ref, '.')
	if i <= 0 {
		return "", "", "", fmt.Errorf("bqfake: bad table %q (want project.dataset.table)", ref)
	}
	j := strings.LastIndexByte(ref[:i], '.')
	if j <= 0 || j+1 == i || i+1 == len(ref) {
		return "", "", "", fmt.Errorf("bqfake: bad table %q (want project.dataset.table)", ref)
	}
	return ref[:j], ref[j+1 : i], ref[i+1:], nil
}
