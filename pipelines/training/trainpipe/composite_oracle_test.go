package trainpipe

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/tandem-fp/tandem/schemas"
)

// The oracle of the list and map ops (last_k, first_k, top_k,
// approx_percentile, histogram) and of first: brute force over the
// window's raw events, sharing no code with tiles or the algebra, in the
// canonical forms below, which the readers of the output files produce too
// (from JSON text for JSON lines and CSV, from Arrow's Parquet reader).
//
//	List        []any of plain values
//	Counts      []any of map[string]any{"value": plain, "count": int64}
//	Quantiles   pctWant (brute force), map[string]any{name: float64} (read)
//	Histogram   map[string]any{"buckets": map[string]any{s: int64}, "overflow": int64}

// pctWant is what approx_percentile must give: exactly the values of a
// DDSketch that sketches-go builds directly from the window's values with
// the algebra's parameters (zero skew), each within the relative error of
// the exact value of its rank.
type pctWant struct {
	direct         map[string]any
	exactLo, exact map[string]float64 // the values of ranks ⌊q(n−1)⌋ and ⌈q(n−1)⌉
}

// bruteComposite is bruteForce for first and the list and map ops: vs are
// the window's non-null values, ts their event times.
func bruteComposite(f schemas.Feature, vs []schemas.Value, ts []int64) (any, bool) {
	if f.Op == schemas.OpHistogram {
		n := map[string]int64{}
		for _, v := range vs {
			n[v.Str]++
		}
		keys := make([]string, 0, len(n))
		for k := range n {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buckets, overflow := map[string]any{}, int64(0)
		for i, k := range keys {
			if i < f.Buckets {
				buckets[k] = n[k]
			} else {
				overflow += n[k]
			}
		}
		return map[string]any{"buckets": buckets, "overflow": overflow}, true
	}
	if len(vs) == 0 {
		return nil, false
	}
	// The events by time, of equal times by value, ascending.
	idx := make([]int, len(vs))
	for i := range idx {
		idx[i] = i
	}
	order := func(a, b int) int {
		if c := cmp.Compare(ts[a], ts[b]); c != 0 {
			return c
		}
		return compareScalar(vs[a], vs[b])
	}
	slices.SortFunc(idx, order)
	switch f.Op {
	case schemas.OpFirst:
		return plain(vs[idx[0]]), true
	case schemas.OpFirstK, schemas.OpLastK:
		if f.Op == schemas.OpLastK {
			slices.Reverse(idx)
		}
		var out []any
		for _, i := range idx[:min(f.K, len(idx))] {
			out = append(out, plain(vs[i]))
		}
		return out, true
	case schemas.OpTopK:
		n := map[any]int64{}
		var distinct []schemas.Value
		for _, v := range vs {
			if n[plain(v)] == 0 {
				distinct = append(distinct, v)
			}
			n[plain(v)]++
		}
		slices.SortFunc(distinct, func(a, b schemas.Value) int {
			if c := cmp.Compare(n[plain(b)], n[plain(a)]); c != 0 {
				return c
			}
			return compareScalar(a, b)
		})
		var out []any
		for _, v := range distinct[:min(f.K, len(distinct))] {
			out = append(out, map[string]any{"value": plain(v), "count": n[plain(v)]})
		}
		return out, true
	case schemas.OpApproxPercentile:
		sk, err := ddsketch.LogCollapsingLowestDenseDDSketch(0.01, 2048)
		if err != nil {
			panic(err)
		}
		xs := make([]float64, len(vs))
		for i, v := range vs {
			xs[i] = v.AsFloat()
			if err := sk.Add(xs[i]); err != nil {
				panic(err)
			}
		}
		slices.Sort(xs)
		w := pctWant{direct: map[string]any{}, exactLo: map[string]float64{}, exact: map[string]float64{}}
		for _, q := range f.Percentiles {
			name := schemas.PercentileName(q)
			x, err := sk.GetValueAtQuantile(q)
			if err != nil {
				panic(err)
			}
			w.direct[name] = x
			rank := float64(q * float64(len(xs)-1))
			w.exactLo[name], w.exact[name] = xs[int(math.Floor(rank))], xs[int(math.Ceil(rank))]
		}
		return w, true
	}
	panic("unknown op " + f.Op)
}

// compareScalar orders values of one type: numbers numerically, strings
// bytewise, false before true.
func compareScalar(a, b schemas.Value) int {
	switch a.Type {
	case schemas.String:
		return cmp.Compare(a.Str, b.Str)
	case schemas.Float64:
		return cmp.Compare(a.Float, b.Float)
	}
	return cmp.Compare(a.Int, b.Int)
}

// agreesComposite compares a composite output value with brute force.
func agreesComposite(got, want any) bool {
	if w, ok := want.(pctWant); ok {
		g, ok := got.(map[string]any)
		if !ok || fmt.Sprint(g) != fmt.Sprint(w.direct) {
			return false
		}
		for name, x := range w.direct {
			x := x.(float64)
			lo, hi := w.exactLo[name], w.exact[name]
			if math.Abs(x-lo) > 0.01*math.Abs(lo)*(1+1e-9) && math.Abs(x-hi) > 0.01*math.Abs(hi)*(1+1e-9) {
				return false
			}
		}
		return true
	}
	return fmt.Sprint(got) == fmt.Sprint(want)
}

// canonComposite turns a composite value read from JSON (numbers as
// json.Number) into the canonical form, typed by column c.
func canonComposite(t *testing.T, c Column, x any) any {
	t.Helper()
	if x == nil {
		return nil
	}
	num := func(v any, typ schemas.Type) any {
		if n, ok := v.(json.Number); ok {
			return fromText(t, n.String(), typ)
		}
		return v
	}
	switch c.Type {
	case schemas.List:
		l := x.([]any)
		for i := range l {
			l[i] = num(l[i], c.Elem)
		}
		return l
	case schemas.Counts:
		l := x.([]any)
		for _, e := range l {
			m := e.(map[string]any)
			m["value"], m["count"] = num(m["value"], c.Elem), num(m["count"], schemas.Int64)
		}
		return l
	case schemas.Quantiles:
		m := x.(map[string]any)
		for k, v := range m {
			m[k] = num(v, schemas.Float64)
		}
		return m
	}
	m := x.(map[string]any)
	b := m["buckets"].(map[string]any)
	for k, v := range b {
		b[k] = num(v, schemas.Int64)
	}
	m["overflow"] = num(m["overflow"], schemas.Int64)
	return m
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
