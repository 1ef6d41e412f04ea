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

// arrowField is the Arrow field of a column: a RECORD is a struct, a
// REPEATED column a list of non-null elements (never null itself), as
// BigQuery serves them.
func arrowField(c Column) arrow.Field {
	var t arrow.DataType
	if c.Type == Record {
		t = arrow.StructOf(arrowFields(c.Fields)...)
	} else {
		t = arrowType(c.Type)
	}
	if c.Mode == Repeated {
		return arrow.Field{Name: c.Name, Type: arrow.ListOfNonNullable(t)}
	}
	return arrow.Field{Name: c.Name, Type: t, Nullable: c.Mode != Required}
}

func arrowFields(cols []Column) []arrow.Field {
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = arrowField(c)
	}
	return fields
}

func arrowSchema(cols []Column) *arrow.Schema { return arrow.NewSchema(arrowFields(cols), nil) }

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
			if err := appendField(b.Field(i), c, row[c.Name]); err != nil {
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

// appendField appends v, a value of column c normalized by fieldValue, to
// b, a builder of arrowField(c)'s type.
func appendField(b array.Builder, c Column, v any) error {
	if c.Mode != Repeated {
		return appendValue(b, c, v)
	}
	lb := b.(*array.ListBuilder)
	lb.Append(true)
	for _, e := range v.([]any) {
		if err := appendValue(lb.ValueBuilder(), c, e); err != nil {
			return err
		}
	}
	return nil
}

// appendValue appends v, one value of column c's type normalized by
// columnValue, to b.
func appendValue(b array.Builder, c Column, v any) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	switch t := c.Type; t {
	case Record:
		sb := b.(*array.StructBuilder)
		sb.Append(true)
		m := v.(map[string]any)
		for i, f := range c.Fields {
			if err := appendField(sb.FieldBuilder(i), f, m[f.Name]); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
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
