package trainpipe

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"reflect"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet"
	"github.com/apache/arrow/go/v15/parquet/compress"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	beam.RegisterType(reflect.TypeOf((*shardFn)(nil)).Elem())
	register.DoFn2x0[OutRow, func(int, OutRow)](&shardFn{})
	register.Emitter2[int, OutRow]()
	register.Function1x2[int, int, OutRow](shardMarker)
	register.DoFn4x1[context.Context, int, func(*OutRow) bool, func(int64), error](&writeFn{})
	register.Iter1[OutRow]()
	register.Emitter1[int64]()
}

// writeRows writes the rows to the output files, each shard's file by one
// worker, even a shard with no row. Rows written are counted in
// tandem/training_rows_written; each writer emits its count once its file
// is closed.
//
//	PCollection<OutRow> → PCollection<int64>
func writeRows(s beam.Scope, out Output, cols []Column, rows beam.PCollection) beam.PCollection {
	s = s.Scope("trainpipe.WriteRows")
	filesystem.ValidateScheme(out.Path)
	f, err := FormatOf(out.Path)
	if err != nil {
		panic(fmt.Sprintf("trainpipe.WriteRows: %v", err))
	}
	shards := max(out.Shards, 1)
	keyed := beam.ParDo(s, &shardFn{Shards: shards}, rows)
	ids := make([]int, shards)
	for i := range ids {
		ids[i] = i
	}
	markers := beam.ParDo(s, shardMarker, beam.CreateList(s, ids))
	grouped := beam.GroupByKey(s, beam.Flatten(s, keyed, markers))
	return beam.ParDo(s, &writeFn{Format: f, Files: OutputFiles(out), Columns: cols}, grouped)
}

// shardFn spreads rows over the shards, round robin.
type shardFn struct {
	Shards int `json:"shards"`
	n      int
}

func (fn *shardFn) ProcessElement(r OutRow, emit func(int, OutRow)) {
	fn.n++
	emit(fn.n%fn.Shards, r)
}

// shardMarker makes sure a shard's key exists: an OutRow with no values.
func shardMarker(shard int) (int, OutRow) { return shard, OutRow{} }

type writeFn struct {
	Format  Format   `json:"format"`
	Files   []string `json:"files"`
	Columns []Column `json:"columns"`
}

func (fn *writeFn) ProcessElement(ctx context.Context, shard int, rows func(*OutRow) bool, emit func(int64)) error {
	path := fn.Files[shard]
	fsys, err := filesystem.New(ctx, path)
	if err != nil {
		return fmt.Errorf("training output %s: %w", path, err)
	}
	defer fsys.Close()
	f, err := fsys.OpenWrite(ctx, path)
	if err != nil {
		return fmt.Errorf("training output: create %s: %w", path, err)
	}
	var w rowWriter
	switch fn.Format {
	case CSV:
		w = newCSVWriter(f, fn.Columns)
	case JSONLines:
		w = newJSONWriter(f, fn.Columns)
	default:
		if w, err = newParquetWriter(f, fn.Columns); err != nil {
			f.Close()
			return fmt.Errorf("training output %s: %w", path, err)
		}
	}
	var n int64
	var r OutRow
	for rows(&r) {
		if r.Values == nil {
			continue // a shard marker
		}
		if len(r.Values) != len(fn.Columns) {
			f.Close()
			return fmt.Errorf("training output %s: a row of %d values for %d columns", path, len(r.Values), len(fn.Columns))
		}
		if err := w.write(r.Values); err != nil {
			f.Close()
			return fmt.Errorf("training output %s: %w", path, err)
		}
		n++
	}
	if err := w.close(); err != nil {
		f.Close()
		return fmt.Errorf("training output %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("training output: close %s: %w", path, err)
	}
	beam.NewCounter(transforms.MetricsNamespace, "training_rows_written").Inc(ctx, n)
	log.Infof(ctx, "training: %d rows written to %s", n, path)
	emit(n)
	return nil
}

// rowWriter writes rows of one file; close flushes and finishes the file
// (not the underlying writer).
type rowWriter interface {
	write(vals []schemas.Value) error
	close() error
}

type csvWriter struct {
	w   *csv.Writer
	rec []string
}

func newCSVWriter(w io.Writer, cols []Column) *csvWriter {
	cw := &csvWriter{w: csv.NewWriter(w), rec: make([]string, len(cols))}
	for i, c := range cols {
		cw.rec[i] = c.Name
	}
	cw.w.Write(cw.rec) //nolint:errcheck // csv.Writer errors are sticky: close reports them
	return cw
}

func (w *csvWriter) write(vals []schemas.Value) error {
	for i, v := range vals {
		w.rec[i] = textOf(v)
	}
	return w.w.Write(w.rec)
}

func (w *csvWriter) close() error {
	w.w.Flush()
	return w.w.Error()
}

type jsonWriter struct {
	w     *bufio.Writer
	names [][]byte // `"name":` per column
	buf   []byte
}

func newJSONWriter(w io.Writer, cols []Column) *jsonWriter {
	jw := &jsonWriter{w: bufio.NewWriterSize(w, 1<<20)}
	for i, c := range cols {
		var b []byte
		if i > 0 {
			b = append(b, ',')
		}
		b = schemas.AppendJSONString(b, c.Name)
		jw.names = append(jw.names, append(b, ':'))
	}
	return jw
}

func (w *jsonWriter) write(vals []schemas.Value) error {
	b := append(w.buf[:0], '{')
	for i, v := range vals {
		b = append(b, w.names[i]...)
		b = appendJSON(b, v)
	}
	b = append(b, '}', '\n')
	w.buf = b
	_, err := w.w.Write(b)
	return err
}

func (w *jsonWriter) close() error { return w.w.Flush() }

// parquetBatch is how many rows make one Parquet row group.
const parquetBatch = 64 << 10

type parquetWriter struct {
	fw   *pqarrow.FileWriter
	b    *array.RecordBuilder
	cols []Column
	n    int
}

// arrowType is the Arrow (Parquet) type of an output column.
func arrowType(t schemas.Type) arrow.DataType {
	switch t {
	case schemas.Int64:
		return arrow.PrimitiveTypes.Int64
	case schemas.Float64:
		return arrow.PrimitiveTypes.Float64
	case schemas.Bool:
		return arrow.FixedWidthTypes.Boolean
	case schemas.Timestamp:
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	}
	return arrow.BinaryTypes.String
}

func newParquetWriter(w io.Writer, cols []Column) (*parquetWriter, error) {
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		t := arrowType(c.Type)
		if c.Type.Composite() {
			t = compositeArrowType(c)
		}
		fields[i] = arrow.Field{Name: c.Name, Type: t, Nullable: true}
	}
	schema := arrow.NewSchema(fields, nil)
	// The root is REQUIRED, as parquet-mr and pyarrow write it: Arrow Go's
	// default, REPEATED, makes readers that count the root's repetition
	// (hyparquet) read every column one repetition level deep and fail.
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithDictionaryDefault(true),
		parquet.WithRootRepetition(parquet.Repetitions.Required))
	// The writer closes its sink when it closes; the caller closes the file.
	fw, err := pqarrow.NewFileWriter(schema, struct{ io.Writer }{w}, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return nil, err
	}
	return &parquetWriter{fw: fw, b: array.NewRecordBuilder(memory.DefaultAllocator, schema), cols: cols}, nil
}

func (w *parquetWriter) write(vals []schemas.Value) error {
	for i, v := range vals {
		fb := w.b.Field(i)
		if c := w.cols[i]; c.Type.Composite() {
			appendComposite(fb, c, v)
			continue
		}
		if v.Type == schemas.Null {
			fb.AppendNull()
			continue
		}
		switch b := fb.(type) {
		case *array.Int64Builder:
			b.Append(v.Int)
		case *array.Float64Builder:
			b.Append(v.Float)
		case *array.BooleanBuilder:
			b.Append(v.Int != 0)
		case *array.TimestampBuilder:
			b.Append(arrow.Timestamp(v.Int))
		case *array.StringBuilder:
			b.Append(textOf(v))
		}
	}
	if w.n++; w.n == parquetBatch {
		return w.flush()
	}
	return nil
}

func (w *parquetWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	rec := w.b.NewRecord()
	defer rec.Release()
	w.n = 0
	return w.fw.Write(rec)
}

func (w *parquetWriter) close() error {
	defer w.b.Release()
	if err := w.flush(); err != nil {
		return err
	}
	return w.fw.Close()
}
