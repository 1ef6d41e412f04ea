package bigquerywrite

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/tandem-fp/tandem/transforms/bigqueryread/bqfake"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// testSchema has a scalar of each kind the training output uses, a
// REPEATED scalar and a REPEATED RECORD.
var testSchema = bigquery.Schema{
	{Name: "id", Type: bigquery.IntegerFieldType},
	{Name: "name", Type: bigquery.StringFieldType},
	{Name: "x", Type: bigquery.FloatFieldType},
	{Name: "ok", Type: bigquery.BooleanFieldType},
	{Name: "at", Type: bigquery.TimestampFieldType},
	{Name: "tags", Type: bigquery.StringFieldType, Repeated: true},
	{Name: "top", Type: bigquery.RecordFieldType, Repeated: true, Schema: bigquery.Schema{
		{Name: "value", Type: bigquery.StringFieldType},
		{Name: "count", Type: bigquery.IntegerFieldType, Required: true},
	}},
}

// encodeRows encodes n rows of testSchema; row i has id i, and a NULL name
// when i is a multiple of 4.
func encodeRows(t *testing.T, n int) [][]byte {
	t.Helper()
	md, _, err := Descriptor(testSchema)
	if err != nil {
		t.Fatal(err)
	}
	f := md.Fields().ByName
	at := time.Now().Truncate(time.Microsecond)
	var out [][]byte
	for i := range n {
		m := dynamicpb.NewMessage(md)
		m.Set(f("id"), protoreflect.ValueOfInt64(int64(i)))
		if i%4 != 0 {
			m.Set(f("name"), protoreflect.ValueOfString(fmt.Sprint("n", i)))
		}
		m.Set(f("x"), protoreflect.ValueOfFloat64(float64(i)/2))
		m.Set(f("ok"), protoreflect.ValueOfBool(i%2 == 0))
		m.Set(f("at"), protoreflect.ValueOfInt64(at.Add(time.Duration(i)*time.Second).UnixMicro()))
		tags := m.Mutable(f("tags")).List()
		for j := range i % 3 {
			tags.Append(protoreflect.ValueOfString(fmt.Sprint("t", j)))
		}
		top := m.Mutable(f("top")).List()
		e := top.NewElement().Message()
		e.Set(e.Descriptor().Fields().ByName("value"), protoreflect.ValueOfString("v"))
		e.Set(e.Descriptor().Fields().ByName("count"), protoreflect.ValueOfInt64(int64(i)))
		top.Append(protoreflect.ValueOfMessage(e))
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func ids(t *testing.T, rows []map[string]any) []int64 {
	t.Helper()
	var out []int64
	for _, r := range rows {
		out = append(out, r["id"].(int64))
	}
	slices.Sort(out)
	return out
}

func seq(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i)
	}
	return out
}

func TestCheckTable(t *testing.T) {
	srv := bqfake.NewTestServer(t)
	ctx := t.Context()
	const table = "tandem-test.ml.training"
	opt := RESTEndpoint(srv.URL)
	created, err := CheckTable(ctx, table, testSchema, WriteEmpty, opt)
	if err != nil || !created {
		t.Fatalf("CheckTable of a missing table = %v, %v; want created", created, err)
	}
	if created, err := CheckTable(ctx, table, testSchema, WriteEmpty, opt); err != nil || created {
		t.Fatalf("CheckTable of the created, empty table = %v, %v; want nil", created, err)
	}
	if err := srv.AddTable("tandem-test.ml.wider", []bqfake.Column{
		{Name: "note", Type: bqfake.String}, // an extra NULLABLE column, first
		{Name: "ID", Type: bqfake.Int64}, {Name: "name", Type: bqfake.String}, {Name: "x", Type: bqfake.Float64},
		{Name: "ok", Type: bqfake.Bool}, {Name: "at", Type: bqfake.Timestamp}, {Name: "tags", Type: bqfake.String, Mode: bqfake.Repeated},
		{Name: "top", Type: bqfake.Record, Mode: bqfake.Repeated, Fields: []bqfake.Column{{Name: "value", Type: bqfake.String}, {Name: "count", Type: bqfake.Int64}}},
	}, []map[string]any{{"ID": 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckTable(ctx, "tandem-test.ml.wider", testSchema, WriteAppend, opt); err != nil {
		t.Errorf("CheckTable(WRITE_APPEND) of a table with an extra NULLABLE column: %v", err)
	}
	tests := []struct {
		name  string
		cols  []bqfake.Column
		rows  []map[string]any
		d     Disposition
		wants []string
	}{
		{"rows, WRITE_EMPTY", nil, []map[string]any{{"id": 1}}, WriteEmpty, []string{"already has 1 rows", "WRITE_APPEND"}},
		{"a column of another type", []bqfake.Column{{Name: "x", Type: bqfake.String}}, nil, WriteEmpty, []string{"its column x is NULLABLE STRING, the rows have NULLABLE FLOAT64"}},
		{"a missing column", []bqfake.Column{{Name: "tags", Type: bqfake.String, Mode: bqfake.Repeated}}, nil, WriteAppend, []string{"it has no column at (NULLABLE TIMESTAMP)"}},
		{"not repeated", []bqfake.Column{{Name: "tags", Type: bqfake.String}}, nil, WriteAppend, []string{"its column tags is NULLABLE STRING, the rows have REPEATED STRING"}},
		{"a nested field", []bqfake.Column{{Name: "top", Type: bqfake.Record, Mode: bqfake.Repeated, Fields: []bqfake.Column{{Name: "value", Type: bqfake.Int64}, {Name: "count", Type: bqfake.Int64}}}},
			nil, WriteAppend, []string{"its column top.value is NULLABLE INT64, the rows have NULLABLE STRING"}},
		{"a REQUIRED column not written", []bqfake.Column{{Name: "must", Type: bqfake.String, Mode: bqfake.Required}}, nil, WriteAppend, []string{"its column must is REQUIRED"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := fmt.Sprintf("tandem-test.ml.t%d", i)
			cols := []bqfake.Column{{Name: "id", Type: bqfake.Int64}, {Name: "name", Type: bqfake.String}, {Name: "x", Type: bqfake.Float64},
				{Name: "ok", Type: bqfake.Bool}, {Name: "at", Type: bqfake.Timestamp}, {Name: "tags", Type: bqfake.String, Mode: bqfake.Repeated},
				{Name: "top", Type: bqfake.Record, Mode: bqfake.Repeated, Fields: []bqfake.Column{{Name: "value", Type: bqfake.String}, {Name: "count", Type: bqfake.Int64}}}}
			for _, c := range tc.cols { // replace or add
				if j := slices.IndexFunc(cols, func(o bqfake.Column) bool { return o.Name == c.Name }); j >= 0 {
					cols[j] = c
				} else {
					cols = append(cols, c)
				}
			}
			if tc.name == "a missing column" {
				cols = slices.DeleteFunc(cols, func(c bqfake.Column) bool { return c.Name == "at" })
			}
			if err := srv.AddTable(ref, cols, tc.rows); err != nil {
				t.Fatal(err)
			}
			_, err := CheckTable(ctx, ref, testSchema, tc.d, opt)
			if !errors.Is(err, ErrTable) {
				t.Fatalf("CheckTable = %v, want ErrTable", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("message of several lines: %q", msg)
			}
			for _, w := range append(tc.wants, ref) {
				if !strings.Contains(msg, w) {
					t.Errorf("CheckTable = %q, want it to say %q", msg, w)
				}
			}
		})
	}
}

// TestWrite writes rows over several streams on prism: every row is in the
// table once, every stream committed, the values as encoded.
func TestWrite(t *testing.T) {
	srv := bqfake.NewTestServer(t)
	const table = "tandem-test.ml.out"
	if _, err := CheckTable(t.Context(), table, testSchema, WriteEmpty, RESTEndpoint(srv.URL)); err != nil {
		t.Fatal(err)
	}
	const n = 500
	p, s := beam.NewPipelineWithRoot()
	committed := Write(s, table, testSchema, beam.CreateList(s, encodeRows(t, n)), Endpoint(srv.Addr), Streams(3))
	passert.Equals(s, committed, int64(n))
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
	rows := srv.Rows(table)
	if diff := cmp.Diff(seq(n), ids(t, rows)); diff != "" {
		t.Errorf("row ids (-want +got):\n%s", diff)
	}
	streams := srv.WriteStreams()
	if len(streams) != 3 {
		t.Errorf("%d write streams, want 3: %+v", len(streams), streams)
	}
	for _, st := range streams {
		if st.Type != "PENDING" || !st.Finalized || !st.Committed {
			t.Errorf("stream %+v: want a finalized, committed PENDING stream", st)
		}
	}
	for _, r := range rows {
		i := r["id"].(int64)
		if (r["name"] == nil) != (i%4 == 0) || r["x"] != float64(i)/2 || r["ok"] != (i%2 == 0) || len(r["tags"].([]any)) != int(i%3) {
			t.Errorf("row %d: %v", i, r)
		}
		if top := r["top"].([]any); len(top) != 1 || top[0].(map[string]any)["count"] != i {
			t.Errorf("row %d: top %v", i, r["top"])
		}
	}
}

// TestFailedCommitLeavesNoRows: a run whose commit fails has written and
// finalized its streams, and the table still has no row.
func TestFailedCommitLeavesNoRows(t *testing.T) {
	srv := bqfake.NewTestServer(t)
	const table = "tandem-test.ml.out"
	if _, err := CheckTable(t.Context(), table, testSchema, WriteEmpty, RESTEndpoint(srv.URL)); err != nil {
		t.Fatal(err)
	}
	srv.InjectFault(bqfake.Fault{Method: bqfake.BatchCommitWriteStreams, Err: status.Error(codes.FailedPrecondition, "injected commit failure")})
	p, s := beam.NewPipelineWithRoot()
	Write(s, table, testSchema, beam.CreateList(s, encodeRows(t, 100)), Endpoint(srv.Addr), Streams(2))
	err := ptest.Run(p)
	if err == nil || !strings.Contains(err.Error(), "injected commit failure") {
		t.Fatalf("run = %v, want the commit failure", err)
	}
	var appended int
	for _, st := range srv.WriteStreams() {
		appended += st.Rows
		if st.Committed {
			t.Errorf("stream %s committed", st.Name)
		}
	}
	if appended != 100 {
		t.Errorf("%d rows appended to streams, want 100", appended)
	}
	if rows := srv.Rows(table); len(rows) != 0 {
		t.Errorf("the table has %d rows after a failed commit, want 0", len(rows))
	}
}

// TestRetriedShard drives the DoFns as a runner does when a shard's bundle
// fails after appending every row and is retried, and when the commit step
// runs twice: the failed attempt's stream is never committed, so each row
// is in the table once.
func TestRetriedShard(t *testing.T) {
	srv := bqfake.NewTestServer(t)
	ctx := t.Context()
	const table = "tandem-test.ml.out"
	if _, err := CheckTable(ctx, table, testSchema, WriteEmpty, RESTEndpoint(srv.URL)); err != nil {
		t.Fatal(err)
	}
	_, dp, err := Descriptor(testSchema)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := proto.Marshal(dp)
	if err != nil {
		t.Fatal(err)
	}
	fn := &appendFn{Table: table, Descriptor: desc, Endpoint: srv.Addr, BatchBytes: 300} // several requests
	if err := fn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	defer fn.Teardown()
	rows := encodeRows(t, 40)
	attempt := func() ([]Stream, error) {
		var out []Stream
		i := 0
		err := fn.ProcessElement(ctx, 0, func(b *[]byte) bool {
			if i == len(rows) {
				return false
			}
			*b, i = rows[i], i+1
			return true
		}, func(s Stream) { out = append(out, s) })
		return out, err
	}
	srv.InjectFault(bqfake.Fault{Method: bqfake.FinalizeWriteStream, Times: 1, Err: status.Error(codes.FailedPrecondition, "injected finalize failure")})
	if out, err := attempt(); err == nil || len(out) != 0 {
		t.Fatalf("first attempt = %v, %v; want the finalize failure and no stream", out, err)
	}
	out, err := attempt() // the retry: a new stream
	if err != nil || len(out) != 1 || out[0].Rows != 40 {
		t.Fatalf("retry = %v, %v; want one stream of 40 rows", out, err)
	}
	cfn := &commitFn{Table: table, Endpoint: srv.Addr}
	if err := cfn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	defer cfn.Teardown()
	for range 2 { // the commit step retried after it succeeded
		i := 0
		var got []int64
		err := cfn.ProcessElement(ctx, nil, func(s *Stream) bool {
			if i == len(out) {
				return false
			}
			*s, i = out[i], i+1
			return true
		}, func(n int64) { got = append(got, n) })
		if err != nil || !slices.Equal(got, []int64{40}) {
			t.Fatalf("commit = %v, %v; want 40 rows committed", got, err)
		}
	}
	if diff := cmp.Diff(seq(40), ids(t, srv.Rows(table))); diff != "" {
		t.Errorf("row ids (-want +got):\n%s", diff)
	}
	streams := srv.WriteStreams()
	if len(streams) != 2 || streams[0].Rows != 40 || streams[0].Committed || !streams[1].Committed {
		t.Errorf("streams %+v: want the failed attempt's 40 rows uncommitted, the retry's committed", streams)
	}
}

// TestAppendOffsets: the fake (as BigQuery) refuses an append at an offset
// already written, so a resent request cannot store its rows twice.
func TestAppendOffsets(t *testing.T) {
	srv := bqfake.NewTestServer(t)
	ctx := t.Context()
	const table = "tandem-test.ml.out"
	if _, err := CheckTable(ctx, table, testSchema, WriteEmpty, RESTEndpoint(srv.URL)); err != nil {
		t.Fatal(err)
	}
	c, err := newClient(ctx, table, srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, dp, err := Descriptor(testSchema)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := c.NewManagedStream(ctx, managedwriter.WithDestinationTable(tableParent(table)),
		managedwriter.WithType(managedwriter.PendingStream), managedwriter.WithSchemaDescriptor(dp))
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	rows := encodeRows(t, 3)
	for _, tc := range []struct {
		offset int64
		want   codes.Code
	}{{0, codes.OK}, {0, codes.AlreadyExists}, {5, codes.OutOfRange}, {3, codes.OK}} {
		r, err := ms.AppendRows(ctx, rows, managedwriter.WithOffset(tc.offset))
		if err == nil {
			_, err = r.GetResult(ctx)
		}
		if status.Code(err) != tc.want {
			t.Errorf("append at offset %d: %v, want %v", tc.offset, err, tc.want)
		}
	}
	if n, err := ms.Finalize(ctx); err != nil || n != 6 {
		t.Errorf("Finalize = %d, %v; want 6 rows", n, err)
	}
	if rows := srv.Rows(table); len(rows) != 0 {
		t.Errorf("%d rows visible before the commit, want 0", len(rows))
	}
}
