package bqfake

import (
	"bytes"
	"fmt"
	"math/big"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/decimal128"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// arrowType is the Arrow type BigQuery uses for a column type
// (https://cloud.google.com/bigquery/docs/reference/storage#arrow_schema_details).
func arrowType(t Type) arrow.DataType {
	switch t {
	case Int64:
		return arrow.PrimitiveTypes.Int64
	case Float64:
		return arrow.PrimitiveTypes.Float64
	case String:
		return arrow.BinaryTypes.String
	case Bool:
		return arrow.FixedWidthTypes.Boolean
	case Timestamp:
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case Numeric:
		return &arrow.Decimal128Type{Precision: 38, Scale: 9}
	}
	panic(fmt.Sprintf("bqfake: no Arrow type for %q", t))
}

func arrowSchema(cols []Column) *arrow.Schema {
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = arrow.Field{Name: c.Name, Type: arrowType(c.Type), Nullable: true}
	}
	return arrow.NewSchema(fields, nil)
}

// arrowSchemaBytes is the schema as one encapsulated IPC message, the form
// of ArrowSchema.serialized_schema: an IPC stream holding only the schema,
// less the end-of-stream marker.
func arrowSchemaBytes(cols []Column) ([]byte, error) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(arrowSchema(cols)))
	if err := w.Close(); err != nil {
		return nil, err
	}
	const eos = 8 // continuation marker and a zero length
	return buf.Bytes()[:buf.Len()-eos], nil
}

// arrowBatchBytes encodes rows as one encapsulated IPC record batch
// message, the form of ArrowRecordBatch.serialized_record_batch: what an IPC
// stream writer writes after the schema message.
func arrowBatchBytes(cols []Column, schemaBytes []byte, rows []map[string]any) ([]byte, error) {
	schema := arrowSchema(cols)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, row := range rows {
		for i, c := range cols {
			if err := appendValue(b.Field(i), c.Type, row[c.Name]); err != nil {
				return nil, fmt.Errorf("column %s: %w", c.Name, err)
			}
		}
	}
	rec := b.NewRecord()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	if !bytes.HasPrefix(out, schemaBytes) {
		return nil, fmt.Errorf("IPC stream does not start with the session schema")
	}
	return out[len(schemaBytes):], nil
}

// appendValue appends v, a value normalized by columnValue, to b.
func appendValue(b array.Builder, t Type, v any) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	switch t {
	case Int64:
		b.(*array.Int64Builder).Append(v.(int64))
	case Float64:
		b.(*array.Float64Builder).Append(v.(float64))
	case String:
		b.(*array.StringBuilder).Append(v.(string))
	case Bool:
		b.(*array.BooleanBuilder).Append(v.(bool))
	case Timestamp:
		b.(*array.TimestampBuilder).Append(arrow.Timestamp(v.(time.Time).UnixMicro()))
	case Numeric:
		scaled := new(big.Rat).Mul(v.(*big.Rat), new(big.Rat).SetInt(numericScale))
		b.(*array.Decimal128Builder).Append(decimal128.FromBigInt(scaled.Num()))
	default:
		return fmt.Errorf("unsupported type %q", t)
	}
	return nil
}
