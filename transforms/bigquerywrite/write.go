// Package bigquerywrite writes a bounded PCollection of rows to a BigQuery
// table through the BigQuery Storage Write API (managedwriter), all or
// nothing: the rows of a run become visible in one atomic commit, or not
// at all, and a retried bundle never writes its rows twice.
//
//	bigquerywrite.CheckTable(ctx, table, schema, bigquerywrite.WriteEmpty) // at launch: create or check
//	desc, _ := bigquerywrite.Descriptor(schema)                              // encode rows with dynamicpb
//	committed := bigquerywrite.Write(s, table, schema, rows, bigquerywrite.Streams(8))
//	// rows: PCollection<[]byte>, each a protobuf message of desc
//	// committed: PCollection<int64>, one element: the rows committed
//
// # How the write is exactly once
//
// Write spreads the rows over n shards (Streams, round robin), groups them
// by shard, and writes each shard's rows, in one ProcessElement, to a new
// PENDING write stream: appends at explicit offsets, then
// FinalizeWriteStream. Only then does it emit the stream's name and row
// count. A single step after every shard (an Impulse with the names as a
// side input) commits all the streams in one BatchCommitWriteStreams.
//
//   - A PENDING stream's rows are invisible until it is committed. A shard
//     that fails, or a bundle the runner retries or runs twice (Dataflow's
//     zombie and speculative workers), leaves a stream whose name never
//     reaches the commit step: the runner delivers the outputs of exactly
//     one successful attempt of each bundle to the side input. Such a
//     stream is never committed and BigQuery drops it; its rows are never
//     seen.
//   - BatchCommitWriteStreams is atomic: all the streams' rows appear at
//     once, or none. A failure anywhere before it leaves the table as it
//     was: no partial table.
//   - If the commit step itself is retried after a commit that succeeded
//     (the worker died before the runner recorded it), BigQuery answers
//     STREAM_ALREADY_COMMITTED for every stream, which the step takes as
//     done: the rows are not committed twice.
//   - Offsets make an append that the client library resent after a lost
//     response fail (ALREADY_EXISTS) rather than store its rows twice in
//     the stream.
//
// That is argued from the Storage Write API's documented semantics and
// Beam's bundle model, and tested against the in-process fake bqfake,
// which implements those semantics (pending streams, atomic commit,
// offsets), and by driving the DoFns through a failed and a repeated
// attempt. It is not tested against BigQuery or Dataflow here; see the
// package README for what the fake does not prove.
package bigquerywrite

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	beam.RegisterType(reflect.TypeOf((*Stream)(nil)).Elem())
	register.DoFn2x0[[]byte, func(int, []byte)](&shardFn{})
	register.Emitter2[int, []byte]()
	register.DoFn4x1[context.Context, int, func(*[]byte) bool, func(Stream), error](&appendFn{})
	register.Iter1[[]byte]()
	register.Emitter1[Stream]()
	register.DoFn4x1[context.Context, []byte, func(*Stream) bool, func(int64), error](&commitFn{})
	register.Iter1[Stream]()
	register.Emitter1[int64]()
}

// Option configures Write and CheckTable.
type Option func(*options)

type options struct {
	endpoint, restEndpoint string
	streams                int
	batchBytes             int
}

func newOptions(opts []Option) options {
	o := options{streams: 1, batchBytes: defaultBatchBytes}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Endpoint sets the host:port of a Storage Write API server reached over
// plaintext gRPC with no authentication, such as the fake bqfake; by
// default BigQuery, with Application Default Credentials.
func Endpoint(hostport string) Option { return func(o *options) { o.endpoint = hostport } }

// RESTEndpoint sets the base URL of a BigQuery REST API server with no
// authentication, for CheckTable; by default BigQuery.
func RESTEndpoint(url string) Option { return func(o *options) { o.restEndpoint = url } }

// Streams sets how many write streams (shards written in parallel) Write
// uses; default 1.
func Streams(n int) Option { return func(o *options) { o.streams = max(n, 1) } }

// defaultBatchBytes bounds one AppendRows request (BigQuery takes at most
// 10 MB per request).
const defaultBatchBytes = 4 << 20

// SplitTable splits "project.dataset.table" (the project may hold dots and
// a colon, "example.com:p").
func SplitTable(ref string) (project, dataset, table string, err error) {
	i := strings.LastIndexByte(ref, '.')
	j := strings.LastIndexByte(ref[:max(i, 0)], '.')
	if i <= 0 || j <= 0 || j+1 == i || i+1 == len(ref) {
		return "", "", "", fmt.Errorf("bigquerywrite: bad table %q (want PROJECT.DATASET.TABLE)", ref)
	}
	return ref[:j], ref[j+1 : i], ref[i+1:], nil
}

// Descriptor returns the protobuf message descriptor of rows of schema (the
// Storage Write API's mapping: INT64 → int64, FLOAT64 → double, BOOL →
// bool, STRING → string, TIMESTAMP → int64 microseconds, RECORD → a nested
// message, REPEATED → repeated), for building rows with dynamicpb, and
// its self-contained DescriptorProto, the writer schema.
func Descriptor(schema bigquery.Schema) (protoreflect.MessageDescriptor, *descriptorpb.DescriptorProto, error) {
	ts, err := adapt.BQSchemaToStorageTableSchema(schema)
	if err != nil {
		return nil, nil, fmt.Errorf("bigquerywrite: storage schema: %w", err)
	}
	d, err := adapt.StorageSchemaToProto2Descriptor(ts, "row")
	if err != nil {
		return nil, nil, fmt.Errorf("bigquerywrite: proto descriptor: %w", err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, nil, fmt.Errorf("bigquerywrite: proto descriptor is a %T, not a message", d)
	}
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		return nil, nil, fmt.Errorf("bigquerywrite: normalize descriptor: %w", err)
	}
	return md, dp, nil
}

// Write appends rows to table, which must exist with a schema that takes
// rows of schema (see CheckTable), and commits them all at once (see the
// package comment).
//
//	PCollection<[]byte> (protobuf messages of Descriptor(schema)) → PCollection<int64>
//
// The output has one element, the rows committed, once the commit is done;
// the counter tandem/bigquery_rows_committed counts them too.
func Write(s beam.Scope, table string, schema bigquery.Schema, rows beam.PCollection, opts ...Option) beam.PCollection {
	s = s.Scope("bigquerywrite.Write")
	o := newOptions(opts)
	if _, _, _, err := SplitTable(table); err != nil {
		panic(err.Error())
	}
	_, dp, err := Descriptor(schema)
	if err != nil {
		panic(fmt.Sprintf("bigquerywrite.Write %s: %v", table, err))
	}
	desc, err := proto.Marshal(dp)
	if err != nil {
		panic(fmt.Sprintf("bigquerywrite.Write %s: encode descriptor: %v", table, err))
	}
	keyed := beam.ParDo(s, &shardFn{Shards: o.streams}, rows)
	streams := beam.ParDo(s, &appendFn{Table: table, Descriptor: desc, Endpoint: o.endpoint, BatchBytes: o.batchBytes}, beam.GroupByKey(s, keyed))
	return beam.ParDo(s, &commitFn{Table: table, Endpoint: o.endpoint}, beam.Impulse(s), beam.SideInput{Input: streams})
}

// Stream is a finalized PENDING write stream of one shard: its name and
// the rows it holds.
type Stream struct {
	Name string
	Rows int64
}

// shardFn spreads rows over the shards, round robin.
type shardFn struct {
	Shards int `json:"shards"`
	n      int
}

func (fn *shardFn) ProcessElement(row []byte, emit func(int, []byte)) {
	fn.n++
	emit(fn.n%fn.Shards, row)
}

// newClient connects a managedwriter client to BigQuery or to endpoint.
func newClient(ctx context.Context, table, endpoint string) (*managedwriter.Client, error) {
	p, _, _, err := SplitTable(table)
	if err != nil {
		return nil, err
	}
	var opts []option.ClientOption
	if endpoint != "" {
		opts = append(opts, option.WithEndpoint(endpoint), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	// The client keeps its context for its connections, across bundles:
	// not the caller's cancellation.
	c, err := managedwriter.NewClient(context.WithoutCancel(ctx), p, opts...)
	if err != nil {
		return nil, fmt.Errorf("bigquerywrite: create Storage Write client: %w", err)
	}
	return c, nil
}

func tableParent(table string) string {
	p, d, t, _ := SplitTable(table)
	return managedwriter.TableParentFromParts(p, d, t)
}

// appendFn writes one shard's rows to a new PENDING stream, finalizes it
// and emits it.
type appendFn struct {
	Table      string `json:"table"`
	Descriptor []byte `json:"descriptor"` // a serialized descriptorpb.DescriptorProto
	Endpoint   string `json:"endpoint,omitempty"`
	BatchBytes int    `json:"batch_bytes"`

	client *managedwriter.Client
	dp     *descriptorpb.DescriptorProto
}

func (fn *appendFn) Setup(ctx context.Context) error {
	fn.dp = new(descriptorpb.DescriptorProto)
	if err := proto.Unmarshal(fn.Descriptor, fn.dp); err != nil {
		return fmt.Errorf("bigquerywrite: decode descriptor: %w", err)
	}
	var err error
	fn.client, err = newClient(ctx, fn.Table, fn.Endpoint)
	return err
}

func (fn *appendFn) Teardown() error {
	if fn.client == nil {
		return nil
	}
	return fn.client.Close()
}

func (fn *appendFn) ProcessElement(ctx context.Context, shard int, rows func(*[]byte) bool, emit func(Stream)) error {
	ms, err := fn.client.NewManagedStream(ctx, managedwriter.WithDestinationTable(tableParent(fn.Table)),
		managedwriter.WithType(managedwriter.PendingStream), managedwriter.WithSchemaDescriptor(fn.dp))
	if err != nil {
		return fmt.Errorf("bigquerywrite: %s shard %d: %w", fn.Table, shard, err)
	}
	defer ms.Close()
	name := ms.StreamName()
	var (
		batch   [][]byte
		size    int
		offset  int64
		results []*managedwriter.AppendResult
	)
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		r, err := ms.AppendRows(ctx, batch, managedwriter.WithOffset(offset))
		if err != nil {
			return fmt.Errorf("bigquerywrite: %s: append %d rows at offset %d of %s: %w", fn.Table, len(batch), offset, name, err)
		}
		results = append(results, r)
		offset += int64(len(batch))
		batch, size = nil, 0
		return nil
	}
	var row []byte
	for rows(&row) {
		if size+len(row) > fn.BatchBytes {
			if err := send(); err != nil {
				return err
			}
		}
		batch = append(batch, row)
		size += len(row)
	}
	if err := send(); err != nil {
		return err
	}
	for _, r := range results {
		if _, err := r.GetResult(ctx); err != nil {
			return fmt.Errorf("bigquerywrite: %s: append to %s: %w", fn.Table, name, err)
		}
	}
	n, err := ms.Finalize(ctx)
	if err != nil {
		return fmt.Errorf("bigquerywrite: %s: finalize %s: %w", fn.Table, name, err)
	}
	if n != offset {
		return fmt.Errorf("bigquerywrite: %s: stream %s holds %d rows after %d were appended", fn.Table, name, n, offset)
	}
	log.Infof(ctx, "bigquerywrite: %d rows appended to %s (shard %d), pending", n, name, shard)
	emit(Stream{Name: name, Rows: n})
	return nil
}

// commitFn commits every stream in one BatchCommitWriteStreams.
type commitFn struct {
	Table    string `json:"table"`
	Endpoint string `json:"endpoint,omitempty"`

	client *managedwriter.Client
}

func (fn *commitFn) Setup(ctx context.Context) error {
	var err error
	fn.client, err = newClient(ctx, fn.Table, fn.Endpoint)
	return err
}

func (fn *commitFn) Teardown() error {
	if fn.client == nil {
		return nil
	}
	return fn.client.Close()
}

func (fn *commitFn) ProcessElement(ctx context.Context, _ []byte, streams func(*Stream) bool, emit func(int64)) error {
	var names []string
	var rows int64
	var st Stream
	for streams(&st) {
		names = append(names, st.Name)
		rows += st.Rows
	}
	if len(names) > 0 {
		if err := commit(ctx, fn.client, fn.Table, names); err != nil {
			return err
		}
	}
	beam.NewCounter(transforms.MetricsNamespace, "bigquery_rows_committed").Inc(ctx, rows)
	log.Infof(ctx, "bigquerywrite: %d rows of %d streams committed to %s", rows, len(names), fn.Table)
	emit(rows)
	return nil
}

// commit commits the streams of table atomically. Every stream answering
// STREAM_ALREADY_COMMITTED means an earlier attempt of this step
// committed them (BatchCommitWriteStreams commits all or none): done.
func commit(ctx context.Context, c *managedwriter.Client, table string, names []string) error {
	resp, err := c.BatchCommitWriteStreams(ctx, &storagepb.BatchCommitWriteStreamsRequest{Parent: tableParent(table), WriteStreams: names})
	if err != nil {
		return fmt.Errorf("bigquerywrite: commit %d streams to %s: %w", len(names), table, err)
	}
	errs := resp.GetStreamErrors()
	already := len(errs) == len(names)
	for _, e := range errs {
		already = already && e.GetCode() == storagepb.StorageError_STREAM_ALREADY_COMMITTED
	}
	switch {
	case already:
		return nil
	case len(errs) > 0:
		return fmt.Errorf("bigquerywrite: commit %d streams to %s: nothing committed: %s: %s (%v; %d stream errors)",
			len(names), table, errs[0].GetEntity(), errs[0].GetErrorMessage(), errs[0].GetCode(), len(errs))
	case resp.GetCommitTime() == nil:
		return fmt.Errorf("bigquerywrite: commit %d streams to %s: no commit time in the response", len(names), table)
	}
	return nil
}
