package bqfake

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// readServer implements storagepb.BigQueryReadServer over a Server.
type readServer struct {
	storagepb.UnimplementedBigQueryReadServer // SplitReadStream
	s                                         *Server
}

var _ storagepb.BigQueryReadServer = (*readServer)(nil)

// stream is one stream of a session: its rows, fixed when the session was
// created, with the session's Arrow schema.
type stream struct {
	index  int
	cols   []Column
	schema []byte
	rows   []map[string]any
}

var (
	parentRE = regexp.MustCompile(`^projects/[^/]+$`)
	tableRE  = regexp.MustCompile(`^projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)$`)
)

func (r *readServer) CreateReadSession(ctx context.Context, req *storagepb.CreateReadSessionRequest) (*storagepb.ReadSession, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessionReqs = append(s.sessionReqs, proto.Clone(req).(*storagepb.CreateReadSessionRequest))
	if err := s.fault(CreateReadSession, "", 0, 0); err != nil {
		return nil, err
	}
	if !parentRE.MatchString(req.GetParent()) {
		return nil, status.Errorf(codes.InvalidArgument, "bqfake: parent %q is not projects/PROJECT", req.GetParent())
	}
	rs := req.GetReadSession()
	m := tableRE.FindStringSubmatch(rs.GetTable())
	if m == nil {
		return nil, status.Errorf(codes.InvalidArgument, "bqfake: table %q is not projects/P/datasets/D/tables/T", rs.GetTable())
	}
	ref := m[1] + "." + m[2] + "." + m[3]
	t, ok := s.tables[ref]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Not found: Table %s:%s.%s was not found", m[1], m[2], m[3])
	}
	if rs.GetDataFormat() != storagepb.DataFormat_ARROW {
		return nil, status.Errorf(codes.Unimplemented, "bqfake: data format %v is not served (only ARROW)", rs.GetDataFormat())
	}
	if req.GetMaxStreamCount() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "bqfake: negative max_stream_count %d", req.GetMaxStreamCount())
	}

	opts := rs.GetReadOptions()
	cols := t.cols
	if sel := opts.GetSelectedFields(); len(sel) > 0 {
		cols = nil
		for _, c := range t.cols { // in table order, as BigQuery does
			if slices.Contains(sel, c.Name) {
				cols = append(cols, c)
			}
		}
		for _, name := range sel {
			if !slices.ContainsFunc(t.cols, func(c Column) bool { return c.Name == name }) {
				return nil, status.Errorf(codes.InvalidArgument, "request failed: the following selected fields do not exist in the table schema: %s", name)
			}
		}
	}
	keep, err := parseRestriction(opts.GetRowRestriction(), t.cols)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var rows []map[string]any
	for _, row := range t.rows {
		if keep(row) {
			rows = append(rows, row)
		}
	}
	schema, err := arrowSchemaBytes(cols)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "bqfake: encode schema: %v", err)
	}

	n := int(req.GetMaxStreamCount())
	if n == 0 {
		n = s.streamCount
	}
	n = min(n, len(rows))
	s.sessions++
	name := fmt.Sprintf("%s/locations/us/sessions/session%d", req.GetParent(), s.sessions)
	out := &storagepb.ReadSession{
		Name:              name,
		ExpireTime:        timestamppb.New(time.Now().Add(6 * time.Hour)),
		DataFormat:        storagepb.DataFormat_ARROW,
		Schema:            &storagepb.ReadSession_ArrowSchema{ArrowSchema: &storagepb.ArrowSchema{SerializedSchema: schema}},
		Table:             rs.GetTable(),
		ReadOptions:       opts,
		EstimatedRowCount: int64(len(rows)),
	}
	for k := range n { // contiguous, nearly equal shares
		lo, hi := k*len(rows)/n, (k+1)*len(rows)/n
		sn := fmt.Sprintf("%s/streams/stream%d", name, k)
		s.streams[sn] = &stream{index: k, cols: cols, schema: schema, rows: rows[lo:hi]}
		out.Streams = append(out.Streams, &storagepb.ReadStream{Name: sn})
	}
	return out, nil
}

func (r *readServer) ReadRows(req *storagepb.ReadRowsRequest, srv storagepb.BigQueryRead_ReadRowsServer) error {
	s := r.s
	s.mu.Lock()
	s.readReqs = append(s.readReqs, proto.Clone(req).(*storagepb.ReadRowsRequest))
	st, ok := s.streams[req.GetReadStream()]
	pageRows := s.pageRows
	s.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "bqfake: no read stream %q", req.GetReadStream())
	}
	off := req.GetOffset()
	if off < 0 || off > int64(len(st.rows)) {
		return status.Errorf(codes.OutOfRange, "bqfake: offset %d is outside stream %s of %d rows", off, req.GetReadStream(), len(st.rows))
	}
	for off < int64(len(st.rows)) {
		if err := srv.Context().Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		s.mu.Lock()
		err := s.fault(ReadRows, req.GetReadStream(), st.index, off)
		s.mu.Unlock()
		if err != nil {
			return err
		}
		end := min(off+int64(pageRows), int64(len(st.rows)))
		batch, err := arrowBatchBytes(st.cols, st.schema, st.rows[off:end])
		if err != nil {
			return status.Errorf(codes.Internal, "bqfake: encode rows %d-%d of %s: %v", off, end, req.GetReadStream(), err)
		}
		total := float64(len(st.rows))
		resp := &storagepb.ReadRowsResponse{
			Rows:     &storagepb.ReadRowsResponse_ArrowRecordBatch{ArrowRecordBatch: &storagepb.ArrowRecordBatch{SerializedRecordBatch: batch, RowCount: end - off}},
			RowCount: end - off,
			Stats: &storagepb.StreamStats{Progress: &storagepb.StreamStats_Progress{
				AtResponseStart: float64(off) / total,
				AtResponseEnd:   float64(end) / total,
			}},
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
		off = end
	}
	return nil
}
