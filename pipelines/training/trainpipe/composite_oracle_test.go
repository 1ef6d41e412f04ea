package trainpipe

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest/brute"
)

// The oracle of the list and map ops (last_k, first_k, top_k,
// approx_percentile, histogram) and of first: brute force over the
// window's raw events, sharing no code with tiles or the algebra, in the
// canonical forms below, which the readers of the output files produce too
// (from JSON text for JSON lines and CSV, from Arrow's Parquet reader).
//
//	List        []any of plain values
//	Counts      []any of map[string]any{"value": plain, "count": int64}
//	Quantiles   *brute.Percentiles (brute force), map[string]any{name: float64} (read)
//	Histogram   map[string]any{"buckets": map[string]any{s: int64}, "overflow": int64}

// canonComposite turns a composite value read from JSON (numbers as
// json.Number) into the canonical form, typed by column c.
func canonComposite(t *testing.T, c Column, x any) any {
	t.Helper()
	v, err := brute.CanonType(c.Type, c.Elem, x)
	if err != nil {
		t.Fatalf("column %s: %v", c.Name, err)
	}
	return v
}

// compositeFromText decodes a CSV field holding a composite's JSON.
func compositeFromText(t *testing.T, c Column, s string) any {
	t.Helper()
	if s == "" {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		t.Fatalf("column %s: %q: %v", c.Name, s, err)
	}
	return canonComposite(t, c, x)
}

// arrowComposite reads value i of a composite Parquet column (as Arrow's
// reader gives it) in the canonical form.
func arrowComposite(t *testing.T, c Column, col arrow.Array, i int) any {
	t.Helper()
	if col.IsNull(i) {
		return nil
	}
	switch c.Type {
	case schemas.List, schemas.Counts:
		l := col.(*array.List)
		start, end := l.ValueOffsets(i)
		var out []any
		for j := start; j < end; j++ {
			if c.Type == schemas.List {
				out = append(out, plain(arrowValue(l.ListValues(), int(j))))
				continue
			}
			st := l.ListValues().(*array.Struct)
			out = append(out, map[string]any{"value": plain(arrowValue(st.Field(0), int(j))), "count": st.Field(1).(*array.Int64).Value(int(j))})
		}
		return out
	case schemas.Quantiles:
		st := col.(*array.Struct)
		out := map[string]any{}
		for j, k := range c.Keys {
			if st.DataType().(*arrow.StructType).Field(j).Name != k {
				t.Fatalf("column %s: field %d is %s, want %s", c.Name, j, st.DataType().(*arrow.StructType).Field(j).Name, k)
			}
			out[k] = st.Field(j).(*array.Float64).Value(i)
		}
		return out
	}
	st := col.(*array.Struct)
	m := st.Field(0).(*array.Map)
	start, end := m.ValueOffsets(i)
	buckets := map[string]any{}
	for j := start; j < end; j++ {
		buckets[m.Keys().(*array.String).Value(int(j))] = m.Items().(*array.Int64).Value(int(j))
	}
	return map[string]any{"buckets": buckets, "overflow": st.Field(1).(*array.Int64).Value(i)}
}
