package trainpipe

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"cloud.google.com/go/bigquery"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/bigquerywrite"
)

func init() {
	register.DoFn2x1[OutRow, func([]byte), error](&encodeRowFn{})
	register.Emitter1[[]byte]()
}

// The BigQuery output (--output bq:PROJECT.DATASET.TABLE) has the columns
// of the Parquet output, in the same order, every one NULLABLE unless said:
//
//	column type     BigQuery type
//	STRING (and a spine's NUMERIC, BIGNUMERIC, as Parquet writes them)  STRING
//	INT64, FLOAT64, BOOL, TIMESTAMP                                      the same
//	last_k, first_k    REPEATED T
//	top_k              REPEATED STRUCT<value T, count INT64 REQUIRED>
//	approx_percentile  STRUCT<p50 FLOAT64, p99_9 FLOAT64, …>
//	histogram          STRUCT<buckets REPEATED STRUCT<key STRING REQUIRED, value INT64>, overflow INT64 REQUIRED>
//
// Two differences from Parquet, both BigQuery's: an array cannot be NULL,
// so a last_k, first_k or top_k that serving says NOT_FOUND is an empty
// array (the other columns are NULL); and a field name cannot hold a dot,
// so percentile p99.9 is the field p99_9.

// bigQueryName is what BigQuery takes as a column name without flexible
// column names (which the Storage Write API's proto rows would need
// annotations for).
var bigQueryName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,299}$`)

// quantileField is the BigQuery field of percentile name k (p99.9 → p99_9).
func quantileField(k string) string { return strings.ReplaceAll(k, ".", "_") }

// bigQueryScalar is the BigQuery type of a scalar column type.
func bigQueryScalar(t schemas.Type) bigquery.FieldType {
	switch t {
	case schemas.Int64:
		return bigquery.IntegerFieldType
	case schemas.Float64:
		return bigquery.FloatFieldType
	case schemas.Bool:
		return bigquery.BooleanFieldType
	case schemas.Timestamp:
		return bigquery.TimestampFieldType
	}
	return bigquery.StringFieldType
}

// bigQueryField is the BigQuery field of an output column (see above).
func bigQueryField(c Column) *bigquery.FieldSchema {
	f := &bigquery.FieldSchema{Name: c.Name, Type: bigQueryScalar(c.Type)}
	switch c.Type {
	case schemas.List:
		f.Type, f.Repeated = bigQueryScalar(c.Elem), true
	case schemas.Counts:
		f.Type, f.Repeated = bigquery.RecordFieldType, true
		f.Schema = bigquery.Schema{
			{Name: "value", Type: bigQueryScalar(c.Elem)},
			{Name: "count", Type: bigquery.IntegerFieldType, Required: true},
		}
	case schemas.Quantiles:
		f.Type = bigquery.RecordFieldType
		for _, k := range c.Keys {
			f.Schema = append(f.Schema, &bigquery.FieldSchema{Name: quantileField(k), Type: bigquery.FloatFieldType})
		}
	case schemas.Histogram:
		f.Type = bigquery.RecordFieldType
		f.Schema = bigquery.Schema{
			{Name: "buckets", Type: bigquery.RecordFieldType, Repeated: true, Schema: bigquery.Schema{
				{Name: "key", Type: bigquery.StringFieldType, Required: true},
				{Name: "value", Type: bigquery.IntegerFieldType},
			}},
			{Name: "overflow", Type: bigquery.IntegerFieldType, Required: true},
		}
	}
	return f
}

// BigQuerySchema is the schema of the BigQuery output of columns cols.
func BigQuerySchema(cols []Column) bigquery.Schema {
	out := make(bigquery.Schema, len(cols))
	for i, c := range cols {
		out[i] = bigQueryField(c)
	}
	return out
}

// prepareBigQueryOutput checks that every output column has a BigQuery
// name, then creates the output table or checks that it fits
// (bigquerywrite.CheckTable).
func prepareBigQueryOutput(ctx context.Context, cfg *Config) error {
	cols := cfg.Columns()
	for _, c := range cols {
		if !bigQueryName.MatchString(c.Name) {
			return fmt.Errorf("%w: BigQuery output: column %q is not a BigQuery column name (letters, digits and underscores, not starting with a digit); rename it in the spine", ErrConfig, c.Name)
		}
	}
	var opts []bigquerywrite.Option
	if cfg.BigQuery.RESTEndpoint != "" {
		opts = append(opts, bigquerywrite.RESTEndpoint(cfg.BigQuery.RESTEndpoint))
	}
	created, err := bigquerywrite.CheckTable(ctx, cfg.Output.Table, BigQuerySchema(cols), cfg.Output.Disposition, opts...)
	if err != nil {
		return err
	}
	slog.Info("training: BigQuery output", "table", cfg.Output.Table, "created", created, "columns", len(cols))
	return nil
}

// writeBigQuery writes the rows to the BigQuery table of cfg's output:
// each row encoded as a protobuf message of the table's schema, then
// bigquerywrite.Write (PENDING streams, one per shard, committed together
// once every shard is written: all rows or none, each once).
//
//	PCollection<OutRow> → PCollection<int64> (one element: the rows committed)
func writeBigQuery(s beam.Scope, cfg *Config, cols []Column, rows beam.PCollection) beam.PCollection {
	s = s.Scope("trainpipe.WriteBigQuery")
	encoded := beam.ParDo(s, &encodeRowFn{Columns: cols}, rows)
	opts := []bigquerywrite.Option{bigquerywrite.Streams(cfg.Output.Shards)}
	if cfg.BigQuery.Endpoint != "" {
		opts = append(opts, bigquerywrite.Endpoint(cfg.BigQuery.Endpoint))
	}
	return bigquerywrite.Write(s, cfg.Output.Table, BigQuerySchema(cols), encoded, opts...)
}

// encodeRowFn encodes a row as a protobuf message of the output table's
// schema.
type encodeRowFn struct {
	Columns []Column `json:"columns"`

	md     protoreflect.MessageDescriptor
	fields []protoreflect.FieldDescriptor // by column
}

func (fn *encodeRowFn) Setup() error {
	md, _, err := bigquerywrite.Descriptor(BigQuerySchema(fn.Columns))
	if err != nil {
		return err
	}
	fn.md = md
	fn.fields = make([]protoreflect.FieldDescriptor, len(fn.Columns))
	for i, c := range fn.Columns {
		if fn.fields[i] = md.Fields().ByName(protoreflect.Name(c.Name)); fn.fields[i] == nil {
			return fmt.Errorf("training output: the BigQuery row message has no field %q", c.Name)
		}
	}
	return nil
}

func (fn *encodeRowFn) ProcessElement(r OutRow, emit func([]byte)) error {
	if len(r.Values) != len(fn.Columns) {
		return fmt.Errorf("training output: a row of %d values for %d columns", len(r.Values), len(fn.Columns))
	}
	m := dynamicpb.NewMessage(fn.md)
	for i, v := range r.Values {
		if v.Type != schemas.Null {
			setField(m, fn.fields[i], fn.Columns[i], v)
		}
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("training output: encode a row: %w", err)
	}
	emit(b)
	return nil
}

// protoScalar is scalar value v (not null) of column type t as the Storage
// Write API takes it; like the Parquet writer, it goes by the column's
// type.
func protoScalar(t schemas.Type, v schemas.Value) protoreflect.Value {
	switch t {
	case schemas.Int64, schemas.Timestamp: // TIMESTAMP: Unix microseconds
		return protoreflect.ValueOfInt64(v.Int)
	case schemas.Float64:
		return protoreflect.ValueOfFloat64(v.Float)
	case schemas.Bool:
		return protoreflect.ValueOfBool(v.Int != 0)
	}
	return protoreflect.ValueOfString(textOf(v))
}

// setField sets field fd of m to value v (not null) of column c.
func setField(m protoreflect.Message, fd protoreflect.FieldDescriptor, c Column, v schemas.Value) {
	if !c.Type.Composite() {
		m.Set(fd, protoScalar(c.Type, v))
		return
	}
	switch c.Type {
	case schemas.List:
		l := m.Mutable(fd).List()
		for _, it := range v.Items() {
			l.Append(protoScalar(c.Elem, it.Value()))
		}
	case schemas.Counts:
		l := m.Mutable(fd).List()
		for _, it := range v.Items() {
			e := l.NewElement().Message()
			f := e.Descriptor().Fields()
			if iv := it.Value(); iv.Type != schemas.Null {
				e.Set(f.ByName("value"), protoScalar(c.Elem, iv))
			}
			e.Set(f.ByName("count"), protoreflect.ValueOfInt64(it.Count))
			l.Append(protoreflect.ValueOfMessage(e))
		}
	case schemas.Quantiles:
		q := m.Mutable(fd).Message()
		for _, it := range v.Items() {
			if f := q.Descriptor().Fields().ByName(protoreflect.Name(quantileField(it.Key))); f != nil {
				q.Set(f, protoreflect.ValueOfFloat64(it.Float))
			}
		}
	case schemas.Histogram:
		h := m.Mutable(fd).Message()
		f := h.Descriptor().Fields()
		l := h.Mutable(f.ByName("buckets")).List()
		for _, it := range v.Items() {
			e := l.NewElement().Message()
			ef := e.Descriptor().Fields()
			e.Set(ef.ByName("key"), protoreflect.ValueOfString(it.Str))
			e.Set(ef.ByName("value"), protoreflect.ValueOfInt64(it.Count))
			l.Append(protoreflect.ValueOfMessage(e))
		}
		h.Set(f.ByName("overflow"), protoreflect.ValueOfInt64(v.Int))
	}
}
