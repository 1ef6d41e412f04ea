package bqfake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The Storage Write API methods a Fault can target. An AppendRows fault
// fires when a request appending at or after row Offset of a stream
// arrives, before the rows are stored, and breaks the connection (the
// RPC ends with Err); FinalizeWriteStream and BatchCommitWriteStreams
// faults fail the call. Stream is ignored; an AppendRows fault fires
// Times times on each write stream, the others Times times in all.
const (
	AppendRows              Method = "AppendRows"
	FinalizeWriteStream     Method = "FinalizeWriteStream"
	BatchCommitWriteStreams Method = "BatchCommitWriteStreams"
)

// writeStream is a Storage Write API stream: the rows appended to it,
// visible in its table only once committed (a PENDING stream) or at once
// (a COMMITTED stream).
type writeStream struct {
	name      string
	table     string // project.dataset.table
	typ       storagepb.WriteStream_Type
	created   time.Time
	rows      []map[string]any
	finalized bool
	committed time.Time
}

// WriteStreamInfo describes a write stream the fake holds, for tests.
type WriteStreamInfo struct {
	Name      string
	Table     string
	Type      string // PENDING or COMMITTED
	Rows      int    // rows appended
	Finalized bool
	Committed bool
}

// WriteStreams returns the write streams created so far, in creation order.
func (s *Server) WriteStreams() []WriteStreamInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WriteStreamInfo, len(s.writeOrder))
	for i, name := range s.writeOrder {
		ws := s.writes[name]
		out[i] = WriteStreamInfo{Name: ws.name, Table: ws.table, Type: ws.typ.String(), Rows: len(ws.rows), Finalized: ws.finalized, Committed: !ws.committed.IsZero()}
	}
	return out
}

// Rows returns a copy of the committed rows of table ref, in commit order,
// each as AddTable takes them (nil for a table that does not exist).
func (s *Server) Rows(ref string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[ref]
	if !ok {
		return nil
	}
	return append([]map[string]any(nil), t.rows...)
}

// writeServer implements storagepb.BigQueryWriteServer over a Server:
// PENDING and COMMITTED streams, rows in protobuf (ProtoRows) described
// by the writer schema of the connection's first request.
type writeServer struct {
	storagepb.UnimplementedBigQueryWriteServer // FlushRows (BUFFERED streams)
	s                                          *Server
}

var _ storagepb.BigQueryWriteServer = (*writeServer)(nil)

// tableRef checks a "projects/P/datasets/D/tables/T" path and returns
// "P.D.T".
func tableRef(path string) (string, error) {
	m := tableRE.FindStringSubmatch(path)
	if m == nil {
		return "", status.Errorf(codes.InvalidArgument, "bqfake: table %q is not projects/P/datasets/D/tables/T", path)
	}
	return m[1] + "." + m[2] + "." + m[3], nil
}

func (w *writeServer) CreateWriteStream(ctx context.Context, req *storagepb.CreateWriteStreamRequest) (*storagepb.WriteStream, error) {
	ref, err := tableRef(req.GetParent())
	if err != nil {
		return nil, err
	}
	typ := req.GetWriteStream().GetType()
	if typ != storagepb.WriteStream_PENDING && typ != storagepb.WriteStream_COMMITTED {
		return nil, status.Errorf(codes.Unimplemented, "bqfake: write stream type %v is not served (only PENDING and COMMITTED)", typ)
	}
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tables[ref]; !ok {
		return nil, status.Errorf(codes.NotFound, "Not found: Table %s", ref)
	}
	ws := &writeStream{name: fmt.Sprintf("%s/streams/w%d", req.GetParent(), len(s.writeOrder)+1), table: ref, typ: typ, created: time.Now()}
	s.writes[ws.name] = ws
	s.writeOrder = append(s.writeOrder, ws.name)
	return ws.proto(), nil
}

// proto is the stream as the API describes it. Callers hold s.mu.
func (ws *writeStream) proto() *storagepb.WriteStream {
	out := &storagepb.WriteStream{Name: ws.name, Type: ws.typ, CreateTime: timestamppb.New(ws.created), WriteMode: storagepb.WriteStream_INSERT}
	if !ws.committed.IsZero() {
		out.CommitTime = timestamppb.New(ws.committed)
	}
	return out
}

// writeStream returns the write stream name, or a NotFound error. Callers
// hold s.mu.
func (s *Server) writeStream(name string) (*writeStream, error) {
	ws, ok := s.writes[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "bqfake: no write stream %q", name)
	}
	return ws, nil
}

func (w *writeServer) GetWriteStream(ctx context.Context, req *storagepb.GetWriteStreamRequest) (*storagepb.WriteStream, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	ws, err := w.s.writeStream(req.GetName())
	if err != nil {
		return nil, err
	}
	return ws.proto(), nil
}

// AppendRows serves one connection: the first request names the stream
// and carries the writer schema; a later one may name another stream (and
// then carries its schema). Each request is answered in order, with the
// offset it was stored at or an error in the response: an offset not at
// the stream's end (ALREADY_EXISTS / OUT_OF_RANGE), a finalized stream, a
// row that does not decode or does not fit the table's schema.
func (w *writeServer) AppendRows(srv storagepb.BigQueryWrite_AppendRowsServer) error {
	s := w.s
	var name string
	var msgType protoreflect.MessageType
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n := req.GetWriteStream(); n != "" && n != name {
			name, msgType = n, nil
		}
		if name == "" {
			return status.Error(codes.InvalidArgument, "bqfake: the first AppendRows request names no write stream")
		}
		if ds := req.GetProtoRows().GetWriterSchema().GetProtoDescriptor(); ds != nil {
			if msgType, err = messageType(ds); err != nil {
				return status.Errorf(codes.InvalidArgument, "bqfake: writer schema: %v", err)
			}
		}
		if msgType == nil {
			return status.Errorf(codes.InvalidArgument, "bqfake: no writer schema for stream %s", name)
		}
		resp, err := s.append(name, msgType, req)
		if err != nil {
			return err
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
}

// append stores one request's rows, all or none.
func (s *Server) append(name string, msgType protoreflect.MessageType, req *storagepb.AppendRowsRequest) (*storagepb.AppendRowsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws, err := s.writeStream(name)
	if err != nil {
		return nil, err
	}
	fail := func(c codes.Code, format string, args ...any) (*storagepb.AppendRowsResponse, error) {
		return &storagepb.AppendRowsResponse{WriteStream: name,
			Response: &storagepb.AppendRowsResponse_Error{Error: status.Newf(c, format, args...).Proto()}}, nil
	}
	end := int64(len(ws.rows))
	off := end
	if req.GetOffset() != nil {
		off = req.GetOffset().GetValue()
	}
	if err := s.fault(AppendRows, name, 0, off); err != nil {
		return nil, err
	}
	switch {
	case ws.finalized || !ws.committed.IsZero() && ws.typ == storagepb.WriteStream_PENDING:
		return fail(codes.InvalidArgument, "bqfake: write stream %s is finalized", name)
	case off < end:
		return fail(codes.AlreadyExists, "bqfake: offset %d of stream %s is already written (the stream has %d rows)", off, name, end)
	case off > end:
		return fail(codes.OutOfRange, "bqfake: offset %d is beyond the end of stream %s (%d rows)", off, name, end)
	}
	cols := s.tables[ws.table].cols
	var rows []map[string]any
	for i, b := range req.GetProtoRows().GetRows().GetSerializedRows() {
		m := msgType.New()
		if err := proto.Unmarshal(b, m.Interface()); err != nil {
			return fail(codes.InvalidArgument, "bqfake: row %d of the request: %v", i, err)
		}
		row, err := rowFromProto(m, cols)
		if err != nil {
			return fail(codes.InvalidArgument, "bqfake: row %d of the request: %v", i, err)
		}
		rows = append(rows, row)
	}
	ws.rows = append(ws.rows, rows...)
	if ws.typ == storagepb.WriteStream_COMMITTED {
		t := s.tables[ws.table]
		t.rows = append(t.rows, rows...)
	}
	return &storagepb.AppendRowsResponse{WriteStream: name,
		Response: &storagepb.AppendRowsResponse_AppendResult_{AppendResult: &storagepb.AppendRowsResponse_AppendResult{Offset: wrapperspb.Int64(off)}}}, nil
}

// messageType builds the message type of a writer schema: a self-contained
// DescriptorProto (nested types inside), as managedwriter's
// adapt.NormalizeDescriptor makes it.
func messageType(dp *descriptorpb.DescriptorProto) (protoreflect.MessageType, error) {
	fdp := &descriptorpb.FileDescriptorProto{Name: proto.String("bqfake_writer_schema.proto"), Syntax: proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{dp}}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		return nil, err
	}
	return dynamicpb.NewMessageType(fd.Messages().Get(0)), nil
}

// rowFromProto turns a decoded row into a row of the table's columns, as
// AddTable stores it. Fields match columns by name, case-insensitively; a
// field with no column is an error (as BigQuery does unless told to
// ignore unknown fields), a missing REQUIRED column too.
func rowFromProto(m protoreflect.Message, cols []Column) (map[string]any, error) {
	fields := m.Descriptor().Fields()
	byName := make(map[string]int, len(cols))
	for i, c := range cols {
		byName[strings.ToLower(c.Name)] = i
	}
	row := make(map[string]any, len(cols))
	for i := range fields.Len() {
		fd := fields.Get(i)
		ci, ok := byName[strings.ToLower(string(fd.Name()))]
		if !ok {
			return nil, fmt.Errorf("field %s is not in the table's schema", fd.Name())
		}
		c := cols[ci]
		if fd.IsList() != (c.Mode == Repeated) {
			return nil, fmt.Errorf("field %s: repeated %v for a %s column", fd.Name(), fd.IsList(), modeName(c.Mode))
		}
		if !m.Has(fd) {
			continue
		}
		if !fd.IsList() {
			v, err := valueFromProto(c, fd, m.Get(fd))
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", fd.Name(), err)
			}
			row[c.Name] = v
			continue
		}
		l := m.Get(fd).List()
		vals := make([]any, l.Len())
		for j := range vals {
			v, err := valueFromProto(c, fd, l.Get(j))
			if err != nil {
				return nil, fmt.Errorf("field %s[%d]: %w", fd.Name(), j, err)
			}
			vals[j] = v
		}
		row[c.Name] = vals
	}
	for _, c := range cols {
		switch {
		case c.Mode == Required && row[c.Name] == nil:
			return nil, fmt.Errorf("REQUIRED column %s is missing", c.Name)
		case c.Mode == Repeated && row[c.Name] == nil:
			row[c.Name] = []any(nil) // an empty array, as AddTable stores it
		}
	}
	return row, nil
}

func modeName(m Mode) string {
	if m == Nullable {
		return "NULLABLE"
	}
	return string(m)
}

// valueFromProto converts one proto value of field fd to the Go value of
// column c's type; TIMESTAMP is int64 microseconds, NUMERIC a decimal
// string, as the Storage Write API takes them.
func valueFromProto(c Column, fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	k := fd.Kind()
	want := ""
	switch c.Type {
	case Int64, Timestamp:
		switch k {
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			if c.Type == Timestamp {
				return time.UnixMicro(v.Int()).UTC(), nil
			}
			return v.Int(), nil
		}
		want = "an integer"
	case Float64:
		if k == protoreflect.DoubleKind || k == protoreflect.FloatKind {
			return v.Float(), nil
		}
		want = "double"
	case String:
		if k == protoreflect.StringKind {
			return v.String(), nil
		}
		want = "string"
	case Bool:
		if k == protoreflect.BoolKind {
			return v.Bool(), nil
		}
		want = "bool"
	case Numeric:
		if k == protoreflect.StringKind {
			return columnValue(c, v.String())
		}
		want = "string"
	case Record:
		if k == protoreflect.MessageKind {
			return rowFromProto(v.Message(), c.Fields)
		}
		want = "message"
	}
	return nil, fmt.Errorf("proto %s for a %s column, want %s", k, c.Type, want)
}

func (w *writeServer) FinalizeWriteStream(ctx context.Context, req *storagepb.FinalizeWriteStreamRequest) (*storagepb.FinalizeWriteStreamResponse, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ws, err := s.writeStream(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.fault(FinalizeWriteStream, "", 0, 0); err != nil {
		return nil, err
	}
	ws.finalized = true
	return &storagepb.FinalizeWriteStreamResponse{RowCount: int64(len(ws.rows))}, nil
}

// BatchCommitWriteStreams commits finalized PENDING streams of one table
// atomically: every stream's rows become visible, or, if any stream cannot
// be committed, none, and the response lists the streams at fault.
func (w *writeServer) BatchCommitWriteStreams(ctx context.Context, req *storagepb.BatchCommitWriteStreamsRequest) (*storagepb.BatchCommitWriteStreamsResponse, error) {
	ref, err := tableRef(req.GetParent())
	if err != nil {
		return nil, err
	}
	if len(req.GetWriteStreams()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "bqfake: no write streams to commit")
	}
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[ref]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Not found: Table %s", ref)
	}
	if err := s.fault(BatchCommitWriteStreams, "", 0, 0); err != nil {
		return nil, err
	}
	var errs []*storagepb.StorageError
	seen := map[string]bool{}
	for _, name := range req.GetWriteStreams() {
		ws, ok := s.writes[name]
		serr := func(c storagepb.StorageError_StorageErrorCode, msg string) {
			errs = append(errs, &storagepb.StorageError{Code: c, Entity: name, ErrorMessage: msg})
		}
		switch {
		case !ok || ws.table != ref:
			serr(storagepb.StorageError_STREAM_NOT_FOUND, "no such stream of table "+ref)
		case seen[name]:
			serr(storagepb.StorageError_INVALID_STREAM_STATE, "stream named twice")
		case ws.typ != storagepb.WriteStream_PENDING:
			serr(storagepb.StorageError_INVALID_STREAM_TYPE, "not a PENDING stream")
		case !ws.committed.IsZero():
			serr(storagepb.StorageError_STREAM_ALREADY_COMMITTED, "already committed")
		case !ws.finalized:
			serr(storagepb.StorageError_INVALID_STREAM_STATE, "not finalized")
		}
		seen[name] = true
	}
	if len(errs) > 0 {
		return &storagepb.BatchCommitWriteStreamsResponse{StreamErrors: errs}, nil
	}
	now := time.Now()
	for _, name := range req.GetWriteStreams() {
		ws := s.writes[name]
		ws.committed = now
		t.rows = append(t.rows, ws.rows...)
	}
	return &storagepb.BatchCommitWriteStreamsResponse{CommitTime: timestamppb.New(now)}, nil
}
