package bigqueryread

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"time"

	storage "cloud.google.com/go/bigquery/storage/apiv1"
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"google.golang.org/grpc"

	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	beam.RegisterType(reflect.TypeOf((*Batch)(nil)).Elem())
	register.DoFn3x1[context.Context, []byte, func(readStream), error](&tableSessionFn{})
	register.DoFn3x1[context.Context, readStream, func(Batch), error](&readBatchesFn{})
	register.Emitter1[Batch]()
}

// Batch is one Arrow record batch of a table read by ReadBatches, not yet
// decoded: rows of any schema, for readers that are not a feature set's
// (the training pipeline's BigQuery spine).
type Batch struct {
	// Stream is the read stream the batch came from and Offset the row
	// number of its first row in that stream: together they name each row
	// of a read.
	Stream string
	Offset int64
	// Schema is the read session's serialized Arrow schema, Records the
	// serialized record batch.
	Schema  []byte
	Records []byte
}

// Each calls fn with each Arrow record of b, valid during the call.
func (b Batch) Each(fn func(arrow.Record) error) error {
	r, err := ipc.NewReader(io.MultiReader(bytes.NewReader(b.Schema), bytes.NewReader(b.Records)))
	if err != nil {
		return fmt.Errorf("bigqueryread: record batch at row %d of %s: %w", b.Offset, b.Stream, err)
	}
	defer r.Release()
	for r.Next() {
		if err := fn(r.Record()); err != nil {
			return err
		}
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("bigqueryread: record batch at row %d of %s: %w", b.Offset, b.Stream, err)
	}
	return nil
}

// SnapshotTime reads the table as it was at t (BigQuery time travel, up to
// seven days back), for ReadBatches and Scan: two reads with the same
// snapshot see the same rows. The default is the table as of the session's
// creation.
func SnapshotTime(t time.Time) Option { return func(o *options) { o.snapshot = t } }

func readOptions(opts []Option) options {
	o := options{retryAttempts: DefaultRetryAttempts, retryBackoff: DefaultRetryBackoff}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// ReadBatches reads every row of table ("project.dataset.table"), its
// fields (every column when empty), through one Storage Read session, in
// parallel over its streams (a Reshuffle spreads them over workers, as in
// Read), and emits the record batches undecoded, with the same resumption
// at the offset of the first batch not yet emitted after a transient error.
// Options: Project (default the table's), MaxStreams, Endpoint, Retry and
// SnapshotTime. It panics, while the pipeline is built, on a bad table;
// BigQuery's errors fail the pipeline at run time.
//
//	() → PCollection<Batch>
func ReadBatches(s beam.Scope, table string, fields []string, opts ...Option) beam.PCollection {
	s = s.Scope("bigqueryread.ReadBatches")
	o := readOptions(opts)
	project, _, _, err := splitTable(table)
	if err != nil {
		panic(fmt.Sprintf("bigqueryread.ReadBatches: %v", err))
	}
	if o.project == "" {
		o.project = project
	}
	streams := beam.ParDo(s, &tableSessionFn{Table: table, Fields: fields, Project: o.project, MaxStreams: o.maxStreams,
		Endpoint: o.endpoint, Snapshot: o.snapshot}, beam.Impulse(s))
	streams = beam.Reshuffle(s, streams)
	return beam.ParDo(s, &readBatchesFn{Endpoint: o.endpoint, RetryAttempts: o.retryAttempts, RetryBackoff: o.retryBackoff}, streams)
}

// tableSessionFn creates the read session of ReadBatches and emits its
// streams.
type tableSessionFn struct {
	Table      string    `json:"table"`
	Fields     []string  `json:"fields,omitempty"`
	Project    string    `json:"project"`
	MaxStreams int       `json:"max_streams"`
	Endpoint   string    `json:"endpoint,omitempty"`
	Snapshot   time.Time `json:"snapshot"`

	client *storage.BigQueryReadClient
	conn   *grpc.ClientConn
}

func (fn *tableSessionFn) Setup(ctx context.Context) error {
	var err error
	fn.client, fn.conn, err = newReadClient(ctx, fn.Endpoint)
	return err
}

func (fn *tableSessionFn) Teardown() error { return closeReadClient(fn.client, fn.conn) }

func (fn *tableSessionFn) ProcessElement(ctx context.Context, _ []byte, emit func(readStream)) error {
	session, err := createSession(ctx, fn.client, fn.Project, fn.Table, fn.Fields, "", fn.MaxStreams, fn.Snapshot)
	if err != nil {
		return fmt.Errorf("bigqueryread: %w", err)
	}
	slog.InfoContext(ctx, "bigqueryread: read session created", "table", fn.Table, "session", session.GetName(),
		"streams", len(session.GetStreams()), "estimated_rows", session.GetEstimatedRowCount())
	schema := session.GetArrowSchema().GetSerializedSchema()
	for _, st := range session.GetStreams() {
		emit(readStream{Name: st.GetName(), Table: fn.Table, Schema: schema})
	}
	return nil
}

// readBatchesFn reads one stream and emits its record batches.
type readBatchesFn struct {
	Endpoint      string        `json:"endpoint,omitempty"`
	RetryAttempts int           `json:"retry_attempts"`
	RetryBackoff  time.Duration `json:"retry_backoff"`

	client  *storage.BigQueryReadClient
	conn    *grpc.ClientConn
	retries beam.Counter
}

func (fn *readBatchesFn) Setup(ctx context.Context) error {
	var err error
	fn.client, fn.conn, err = newReadClient(ctx, fn.Endpoint)
	fn.retries = beam.NewCounter(transforms.MetricsNamespace, "bigquery_read_retries")
	return err
}

func (fn *readBatchesFn) Teardown() error { return closeReadClient(fn.client, fn.conn) }

func (fn *readBatchesFn) ProcessElement(ctx context.Context, st readStream, emit func(Batch)) error {
	r := streamReader{client: fn.client, attempts: fn.RetryAttempts, backoff: fn.RetryBackoff, retried: func(ctx context.Context) { fn.retries.Inc(ctx, 1) }}
	return r.read(ctx, st, func(offset int64, records []byte) (int64, error) {
		b := Batch{Stream: st.Name, Offset: offset, Schema: st.Schema, Records: records}
		var n int64
		if err := b.Each(func(rec arrow.Record) error { n += rec.NumRows(); return nil }); err != nil {
			return 0, err
		}
		emit(b)
		return n, nil
	})
}

// TableSchema returns the Arrow schema of table's fields (every column
// when empty) as the Storage Read API serves them, from a read session
// that it does not read. Options: Project, Endpoint, SnapshotTime.
func TableSchema(ctx context.Context, table string, fields []string, opts ...Option) (*arrow.Schema, error) {
	var schema *arrow.Schema
	err := scan(ctx, table, fields, 1, false, func(s *arrow.Schema) { schema = s }, nil, opts)
	return schema, err
}

// Scan reads table's fields (every column when empty) in the calling
// goroutine, one stream after another, and calls fn with each Arrow record,
// valid during the call, resuming after transient errors as Read does.
// Options: Project, MaxStreams, Endpoint, Retry, SnapshotTime. It is for
// launchers that read a small table, or a few columns, before a pipeline
// is built.
func Scan(ctx context.Context, table string, fields []string, fn func(arrow.Record) error, opts ...Option) error {
	return scan(ctx, table, fields, 0, true, nil, fn, opts)
}

func scan(ctx context.Context, table string, fields []string, maxStreams int, read bool, schemaFn func(*arrow.Schema), fn func(arrow.Record) error, opts []Option) error {
	o := readOptions(opts)
	project, _, _, err := splitTable(table)
	if err != nil {
		return err
	}
	if o.project == "" {
		o.project = project
	}
	if maxStreams == 0 {
		maxStreams = o.maxStreams
	}
	client, conn, err := newReadClient(ctx, o.endpoint)
	if err != nil {
		return err
	}
	defer closeReadClient(client, conn) //nolint:errcheck // nothing was written
	session, err := createSession(ctx, client, o.project, table, fields, "", maxStreams, o.snapshot)
	if err != nil {
		return fmt.Errorf("bigqueryread: %w", err)
	}
	schemaBytes := session.GetArrowSchema().GetSerializedSchema()
	if schemaFn != nil {
		r, err := ipc.NewReader(bytes.NewReader(schemaBytes))
		if err != nil {
			return fmt.Errorf("bigqueryread: read session %s: Arrow schema: %w", session.GetName(), err)
		}
		schemaFn(r.Schema())
		r.Release()
	}
	if !read {
		return nil
	}
	r := streamReader{client: client, attempts: o.retryAttempts, backoff: o.retryBackoff}
	for _, st := range session.GetStreams() {
		rs := readStream{Name: st.GetName(), Table: table, Schema: schemaBytes}
		err := r.read(ctx, rs, func(offset int64, records []byte) (int64, error) {
			var n int64
			err := Batch{Stream: rs.Name, Offset: offset, Schema: schemaBytes, Records: records}.Each(func(rec arrow.Record) error {
				n += rec.NumRows()
				return fn(rec)
			})
			return n, err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// RunQuery runs sql as a query job in the billing project (Project,
// required) and, if set, the Location, through the REST API (RESTEndpoint
// for a fake), waits for it and returns its destination table, which
// ReadBatches, Scan and TableSchema can read. Its anonymous destination
// table lives about a day.
func RunQuery(ctx context.Context, sql string, opts ...Option) (string, error) {
	o := readOptions(opts)
	if o.project == "" {
		return "", fmt.Errorf("bigqueryread: a query needs a billing project (bigqueryread.Project)")
	}
	table, err := runQuery(ctx, o.project, o.location, o.restEndpoint, sql, nil)
	if err != nil {
		return "", fmt.Errorf("bigqueryread: %w", err)
	}
	return table, nil
}
