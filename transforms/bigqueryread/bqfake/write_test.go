package bqfake

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// nested is a table with a REPEATED scalar and a RECORD holding a
// REPEATED RECORD, as the training output's composites are.
var nested = []Column{
	{Name: "id", Type: Int64, Mode: Required},
	{Name: "tags", Type: String, Mode: Repeated},
	{Name: "h", Type: Record, Fields: []Column{
		{Name: "buckets", Type: Record, Mode: Repeated, Fields: []Column{{Name: "key", Type: String, Mode: Required}, {Name: "value", Type: Int64}}},
		{Name: "overflow", Type: Int64},
	}},
}

// nestedDescriptor is the writer schema of nested, as a client builds it
// (managedwriter/adapt from the table's schema), and its message type.
func nestedDescriptor(t *testing.T, cols []Column) (protoreflect.MessageDescriptor, *descriptorpb.DescriptorProto) {
	t.Helper()
	var toBQ func([]Column) bigquery.Schema
	toBQ = func(cols []Column) bigquery.Schema {
		var out bigquery.Schema
		for _, c := range cols {
			typ := map[Type]bigquery.FieldType{Int64: bigquery.IntegerFieldType, String: bigquery.StringFieldType, Record: bigquery.RecordFieldType}[c.Type]
			out = append(out, &bigquery.FieldSchema{Name: c.Name, Type: typ, Repeated: c.Mode == Repeated, Required: c.Mode == Required, Schema: toBQ(c.Fields)})
		}
		return out
	}
	ts, err := adapt.BQSchemaToStorageTableSchema(toBQ(cols))
	if err != nil {
		t.Fatal(err)
	}
	d, err := adapt.StorageSchemaToProto2Descriptor(ts, "root")
	if err != nil {
		t.Fatal(err)
	}
	md := d.(protoreflect.MessageDescriptor)
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		t.Fatal(err)
	}
	return md, dp
}

// nestedRow is row id: tags t0…t(id-1), and a histogram of one bucket
// unless id is 0 (then h is NULL).
func nestedRow(t *testing.T, md protoreflect.MessageDescriptor, id int64) []byte {
	t.Helper()
	m := dynamicpb.NewMessage(md)
	f := md.Fields().ByName
	m.Set(f("id"), protoreflect.ValueOfInt64(id))
	for i := range id {
		m.Mutable(f("tags")).List().Append(protoreflect.ValueOfString("t" + string(rune('0'+i))))
	}
	if id > 0 {
		h := m.Mutable(f("h")).Message()
		b := h.Mutable(h.Descriptor().Fields().ByName("buckets")).List()
		e := b.NewElement().Message()
		e.Set(e.Descriptor().Fields().ByName("key"), protoreflect.ValueOfString("k"))
		e.Set(e.Descriptor().Fields().ByName("value"), protoreflect.ValueOfInt64(id*10))
		b.Append(protoreflect.ValueOfMessage(e))
		h.Set(h.Descriptor().Fields().ByName("overflow"), protoreflect.ValueOfInt64(id))
	}
	out, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWriteWire writes through managedwriter: a PENDING stream's rows are
// not read until it is committed; a commit naming a stream that cannot be
// committed commits none; rows that do not fit the table are refused; an
// injected AppendRows fault fires at its offset; committed nested rows read
// back through the Storage Read API as Arrow lists and structs.
func TestWriteWire(t *testing.T) {
	srv := NewTestServer(t)
	ctx := t.Context()
	if err := srv.AddTable("p.d.t", nested, nil); err != nil {
		t.Fatal(err)
	}
	mc, err := managedwriter.NewClient(ctx, "p", option.WithEndpoint(srv.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	md, dp := nestedDescriptor(t, nested)
	newStream := func(dp *descriptorpb.DescriptorProto) *managedwriter.ManagedStream {
		ms, err := mc.NewManagedStream(ctx, managedwriter.WithDestinationTable("projects/p/datasets/d/tables/t"),
			managedwriter.WithType(managedwriter.PendingStream), managedwriter.WithSchemaDescriptor(dp))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms.Close() })
		return ms
	}
	appendRows := func(ms *managedwriter.ManagedStream, offset int64, rows ...[]byte) error {
		r, err := ms.AppendRows(ctx, rows, managedwriter.WithOffset(offset))
		if err == nil {
			_, err = r.GetResult(ctx)
		}
		return err
	}
	ms := newStream(dp)
	if err := appendRows(ms, 0, nestedRow(t, md, 0), nestedRow(t, md, 1)); err != nil {
		t.Fatal(err)
	}
	srv.InjectFault(Fault{Method: AppendRows, Offset: 3, Times: 1, Err: status.Error(codes.FailedPrecondition, "injected")})
	if err := appendRows(ms, 2, nestedRow(t, md, 2)); err != nil { // before the fault's offset
		t.Fatal(err)
	}
	if got := len(srv.Rows("p.d.t")); got != 0 {
		t.Errorf("%d rows visible before the commit, want 0", got)
	}
	// Rows of another schema: a field the table does not have.
	other, otherDP := nestedDescriptor(t, append([]Column{{Name: "extra", Type: String}}, nested...))
	bad := newStream(otherDP)
	if err := appendRows(bad, 0, nestedRow(t, other, 1)); err == nil || !strings.Contains(err.Error(), "field extra is not in the table's schema") {
		t.Errorf("append of a row with an unknown field = %v", err)
	}
	n, err := ms.Finalize(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Finalize = %d, %v; want 3", n, err)
	}
	resp, err := mc.BatchCommitWriteStreams(ctx, &storagepb.BatchCommitWriteStreamsRequest{
		Parent: "projects/p/datasets/d/tables/t", WriteStreams: []string{ms.StreamName(), bad.StreamName()}})
	if err != nil || len(resp.GetStreamErrors()) != 1 || resp.GetStreamErrors()[0].GetCode() != storagepb.StorageError_INVALID_STREAM_STATE || resp.GetCommitTime() != nil {
		t.Fatalf("commit with an unfinalized stream = %v, %v; want one INVALID_STREAM_STATE and no commit", resp, err)
	}
	if got := len(srv.Rows("p.d.t")); got != 0 {
		t.Errorf("%d rows visible after a refused commit, want 0", got)
	}
	resp, err = mc.BatchCommitWriteStreams(ctx, &storagepb.BatchCommitWriteStreamsRequest{Parent: "projects/p/datasets/d/tables/t", WriteStreams: []string{ms.StreamName()}})
	if err != nil || resp.GetCommitTime() == nil {
		t.Fatalf("commit = %v, %v", resp, err)
	}

	// The fault fires on the next stream's append at offset 3, once.
	ms2 := newStream(dp)
	if err := appendRows(ms2, 0, nestedRow(t, md, 3), nestedRow(t, md, 4), nestedRow(t, md, 5)); err != nil {
		t.Fatal(err)
	}
	if err := appendRows(ms2, 3, nestedRow(t, md, 6)); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("append at offset 3 = %v, want the injected fault", err)
	}

	// Read the committed rows back.
	rc, sess := readSession(t, srv, "projects/p/datasets/d/tables/t")
	rs, err := rc.ReadRows(ctx, &storagepb.ReadRowsRequest{ReadStream: sess.GetStreams()[0].GetName()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		resp, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		r, err := ipc.NewReader(io.MultiReader(bytes.NewReader(sess.GetArrowSchema().GetSerializedSchema()), bytes.NewReader(resp.GetArrowRecordBatch().GetSerializedRecordBatch())))
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			rec := r.Record()
			for i := range int(rec.NumRows()) {
				var b strings.Builder
				for j := range int(rec.NumCols()) {
					b.WriteString(rec.ColumnName(j) + "=" + rec.Column(j).ValueStr(i) + " ")
				}
				got = append(got, b.String())
			}
		}
		r.Release()
	}
	want := []string{
		`id=0 tags=[] h=(null) `,
		`id=1 tags=["t0"] h={"buckets":[{"key":"k","value":10}],"overflow":1} `,
		`id=2 tags=["t0","t1"] h={"buckets":[{"key":"k","value":20}],"overflow":2} `,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows read back (-want +got):\n%s", diff)
	}
}
