package trainpipe

import (
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/tandem-fp/tandem/schemas"
)

// The output of list and map features (last_k, first_k, top_k,
// approx_percentile, histogram):
//
//	            JSON lines and CSV (a JSON text)         Parquet
//	last_k      [v1, v2, …]                              LIST<T>
//	top_k       [{"value": v, "count": n}, …]            LIST<STRUCT<value: T, count: INT64>>
//	percentile  {"p50": x, "p90": y}                     STRUCT<p50: DOUBLE, p90: DOUBLE, …>
//	histogram   {"buckets": {"a": n}, "overflow": n}     STRUCT<buckets: MAP<STRING, INT64>, overflow: INT64>
//
// T is the field's type, as a scalar column of that type is written.

// featureColumn is the output column of feature f of set.
func featureColumn(set string, f schemas.Feature) Column {
	c := Column{Name: schemas.FeatureColumn(set, f.Name), Type: f.ResultType()}
	switch c.Type {
	case schemas.List, schemas.Counts:
		c.Elem = f.FieldType
	case schemas.Quantiles:
		for _, q := range f.Percentiles {
			c.Keys = append(c.Keys, schemas.PercentileName(q))
		}
	}
	return c
}

// compositeArrowType is the Arrow type of a composite column.
func compositeArrowType(c Column) arrow.DataType {
	switch c.Type {
	case schemas.List:
		return arrow.ListOf(arrowType(c.Elem))
	case schemas.Counts:
		return arrow.ListOf(arrow.StructOf(
			arrow.Field{Name: "value", Type: arrowType(c.Elem), Nullable: true},
			arrow.Field{Name: "count", Type: arrow.PrimitiveTypes.Int64}))
	case schemas.Quantiles:
		fields := make([]arrow.Field, len(c.Keys))
		for i, k := range c.Keys {
			fields[i] = arrow.Field{Name: k, Type: arrow.PrimitiveTypes.Float64, Nullable: true}
		}
		return arrow.StructOf(fields...)
	}
	return arrow.StructOf( // Histogram
		arrow.Field{Name: "buckets", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64)},
		arrow.Field{Name: "overflow", Type: arrow.PrimitiveTypes.Int64})
}

// appendScalar appends scalar value v (not null) to b, a builder of
// arrowType(v.Type).
func appendScalar(fb array.Builder, v schemas.Value) {
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

// appendComposite appends composite value v, or null, to fb, a builder of
// compositeArrowType(c).
func appendComposite(fb array.Builder, c Column, v schemas.Value) {
	if v.Type == schemas.Null {
		fb.AppendNull() // a struct builder appends nulls to its children too
		return
	}
	switch c.Type {
	case schemas.List:
		lb := fb.(*array.ListBuilder)
		lb.Append(true)
		for _, it := range v.Items() {
			appendScalar(lb.ValueBuilder(), it.Value())
		}
	case schemas.Counts:
		lb := fb.(*array.ListBuilder)
		lb.Append(true)
		sb := lb.ValueBuilder().(*array.StructBuilder)
		for _, it := range v.Items() {
			sb.Append(true)
			appendScalar(sb.FieldBuilder(0), it.Value())
			sb.FieldBuilder(1).(*array.Int64Builder).Append(it.Count)
		}
	case schemas.Quantiles:
		sb := fb.(*array.StructBuilder)
		sb.Append(true)
		for i, k := range c.Keys {
			b := sb.FieldBuilder(i).(*array.Float64Builder)
			found := false
			for _, it := range v.Items() {
				if it.Key == k {
					b.Append(it.Float)
					found = true
					break
				}
			}
			if !found {
				b.AppendNull()
			}
		}
	case schemas.Histogram:
		sb := fb.(*array.StructBuilder)
		sb.Append(true)
		mb := sb.FieldBuilder(0).(*array.MapBuilder)
		mb.Append(true)
		for _, it := range v.Items() {
			mb.KeyBuilder().(*array.StringBuilder).Append(it.Str)
			mb.ItemBuilder().(*array.Int64Builder).Append(it.Count)
		}
		sb.FieldBuilder(1).(*array.Int64Builder).Append(v.Int)
	}
}

// compositeText is a composite value as CSV writes it: its JSON.
func compositeText(v schemas.Value) string {
	return string(schemas.AppendCompositeJSON(nil, v, appendJSON))
}
