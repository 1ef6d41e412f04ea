package bqfake

import (
	"bytes"
	"context"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	storage "cloud.google.com/go/bigquery/storage/apiv1"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestParseRestriction(t *testing.T) {
	cols := []Column{{Name: "ts", Type: Timestamp}, {Name: "n", Type: Int64}}
	t0 := time.Now().UTC().Truncate(time.Hour).AddDate(0, 0, -30)
	// lit is t as a BigQuery TIMESTAMP literal in a row restriction.
	lit := func(t time.Time) string { return `TIMESTAMP("` + t.Format("2006-01-02 15:04:05.999999") + `+00")` }
	a, b := lit(t0), lit(t0.Add(time.Hour))
	rows := []map[string]any{
		{"ts": t0.Add(-time.Microsecond)},
		{"ts": t0},
		{"ts": t0.Add(time.Hour - time.Microsecond)},
		{"ts": t0.Add(time.Hour)},
		{"ts": nil},
	}
	for _, tc := range []struct {
		restriction string
		want        []bool // per row; nil for an error
		errHas      string
	}{
		{"", []bool{true, true, true, true, true}, ""},
		{"`ts` >= " + a + " AND `ts` < " + b, []bool{false, true, true, false, false}, ""},
		{"`ts` >= " + lit(t0.Add(-time.Microsecond)) + " AND `ts` < " + lit(t0.Add(time.Hour-time.Microsecond)), []bool{true, true, false, false, false}, ""},
		{"ts >= " + a, nil, "not SQL"},
		{"`ts` >= " + a + " AND `n` < " + b, nil, "unsupported row restriction"},
		{"`n` >= " + a + " AND `n` < " + b, nil, "column n is INT64, not TIMESTAMP"},
		{"`x` >= " + a + " AND `x` < " + b, nil, "unrecognized name: x"},
		{"`ts` >= TIMESTAMP(\"" + t0.Format(time.RFC3339) + "\") AND `ts` < " + b, nil, "bad TIMESTAMP literal"},
	} {
		keep, err := parseRestriction(tc.restriction, cols)
		if tc.want == nil {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("parseRestriction(%q) error = %v, want one containing %q", tc.restriction, err, tc.errHas)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseRestriction(%q) error = %v", tc.restriction, err)
			continue
		}
		var got []bool
		for _, r := range rows {
			got = append(got, keep(r))
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("parseRestriction(%q) kept rows mismatch (-want +got):\n%s", tc.restriction, diff)
		}
	}
}

func TestAddTableErrors(t *testing.T) {
	s := &Server{tables: map[string]*table{}}
	for _, tc := range []struct {
		name   string
		ref    string
		cols   []Column
		rows   []map[string]any
		errHas string
	}{
		{"bad ref", "dataset.table", nil, nil, "want project.dataset.table"},
		{"bad type", "p.d.t", []Column{{Name: "a", Type: "GEOGRAPHY"}}, nil, `unsupported type "GEOGRAPHY"`},
		{"duplicate column", "p.d.t", []Column{{Name: "a", Type: Int64}, {Name: "a", Type: String}}, nil, "duplicate column"},
		{"unknown column", "p.d.t", []Column{{Name: "a", Type: Int64}}, []map[string]any{{"b": int64(1)}}, `no column "b"`},
		{"wrong Go type", "p.d.t", []Column{{Name: "a", Type: Int64}}, []map[string]any{{"a": "1"}}, "want a Go value for INT64, got string"},
		{"numeric too precise", "p.d.t", []Column{{Name: "a", Type: Numeric}}, []map[string]any{{"a": "0.0000000001"}}, "scale 9"},
		{"record without fields", "p.d.t", []Column{{Name: "r", Type: Record}}, nil, "a RECORD column needs fields"},
		{"bad mode", "p.d.t", []Column{{Name: "a", Type: Int64, Mode: "OPTIONAL"}}, nil, `unsupported mode "OPTIONAL"`},
		{"null element", "p.d.t", []Column{{Name: "a", Type: Int64, Mode: Repeated}}, []map[string]any{{"a": []any{1, nil}}}, "element 1 is NULL"},
		{"required null", "p.d.t", []Column{{Name: "r", Type: Record, Fields: []Column{{Name: "a", Type: Int64, Mode: Required}}}}, []map[string]any{{"r": map[string]any{}}}, `REQUIRED column "a" is NULL`},
		{"numeric too large", "p.d.t", []Column{{Name: "a", Type: Numeric}}, []map[string]any{{"a": new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(30), nil))}}, "precision 38"},
	} {
		err := s.AddTable(tc.ref, tc.cols, tc.rows)
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%s: AddTable error = %v, want one containing %q", tc.name, err, tc.errHas)
		}
	}
}

// readSession opens a read client on srv and a session of one stream on
// table, closed when the test ends.
func readSession(t *testing.T, srv *Server, table string) (*storage.BigQueryReadClient, *storagepb.ReadSession) {
	t.Helper()
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := storage.NewBigQueryReadClient(t.Context(), option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sess, err := c.CreateReadSession(t.Context(), &storagepb.CreateReadSessionRequest{
		Parent:         "projects/p",
		ReadSession:    &storagepb.ReadSession{Table: table, DataFormat: storagepb.DataFormat_ARROW},
		MaxStreamCount: 1,
	})
	if err != nil {
		t.Fatalf("CreateReadSession error = %v", err)
	}
	return c, sess
}

// TestReadRowsWire checks the wire forms with the real client: a session's
// serialized schema and a response's record batch decode together with the
// Arrow IPC reader, pages hold SetPageRows rows, a read can start at any
// offset, and an offset past the end is OutOfRange.
func TestReadRowsWire(t *testing.T) {
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var rows []map[string]any
	for i := range 7 {
		rows = append(rows, map[string]any{"n": i})
	}
	if err := srv.AddTable("p.d.t", []Column{{Name: "n", Type: Int64}}, rows); err != nil {
		t.Fatal(err)
	}
	srv.SetPageRows(3)
	ctx := context.Background()
	c, sess := readSession(t, srv, "projects/p/datasets/d/tables/t")
	if len(sess.GetStreams()) != 1 {
		t.Fatalf("got %d streams, want 1", len(sess.GetStreams()))
	}
	schema := sess.GetArrowSchema().GetSerializedSchema()
	read := func(offset int64) ([][]int64, error) {
		rs, err := c.ReadRows(ctx, &storagepb.ReadRowsRequest{ReadStream: sess.GetStreams()[0].GetName(), Offset: offset})
		if err != nil {
			return nil, err
		}
		var pages [][]int64
		for {
			resp, err := rs.Recv()
			if err == io.EOF {
				return pages, nil
			}
			if err != nil {
				return nil, err
			}
			r, err := ipc.NewReader(io.MultiReader(bytes.NewReader(schema), bytes.NewReader(resp.GetArrowRecordBatch().GetSerializedRecordBatch())))
			if err != nil {
				return nil, err
			}
			var page []int64
			for r.Next() {
				for i := range int(r.Record().NumRows()) {
					page = append(page, r.Record().Column(0).(interface{ Value(int) int64 }).Value(i))
				}
			}
			if err := r.Err(); err != nil {
				return nil, err
			}
			r.Release()
			if int64(len(page)) != resp.GetRowCount() {
				t.Errorf("page of %d rows has row_count %d", len(page), resp.GetRowCount())
			}
			pages = append(pages, page)
		}
	}
	for _, tc := range []struct {
		offset int64
		want   [][]int64
	}{
		{0, [][]int64{{0, 1, 2}, {3, 4, 5}, {6}}},
		{4, [][]int64{{4, 5, 6}}},
		{7, nil},
	} {
		got, err := read(tc.offset)
		if err != nil {
			t.Fatalf("ReadRows(offset %d) error = %v", tc.offset, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ReadRows(offset %d) mismatch (-want +got):\n%s", tc.offset, diff)
		}
	}
	if _, err := read(8); status.Code(err) != codes.OutOfRange {
		t.Errorf("ReadRows(offset 8) error = %v, want OutOfRange", err)
	}
}
