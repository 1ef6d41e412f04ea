// Package brute computes feature values by brute force from raw events, for
// the oracle tests of serving, training and the local stack. It shares no
// code with the tiles, the aggregation algebra (package
// transforms/aggregate), the expression evaluator or the derived-feature
// evaluator: it takes an entity's events in a feature's window, keeps those
// the caller's predicate keeps (the feature's `where:` written out in Go by
// the test), and computes the op directly from its definition: counts and
// sums by loops, distinct values with a map, first and last by sorting,
// top_k and histogram by counting every value, percentiles by sorting.
//
// Values come in canonical plain forms, which FromJSON also produces from
// the feature API's (and the training output's) JSON:
//
//	count, sum, distinct, min, max, first, last: int64, float64, string,
//	    bool, or for timestamps int64 Unix microseconds
//	last_k, first_k        []any of plain values
//	top_k                  []any of map[string]any{"value": plain, "count": int64}
//	approx_percentile      map[string]any{"p50": float64, ...}
//	histogram              map[string]any{"buckets": map[string]any{s: int64}, "overflow": int64}
//
// Value returns for top_k a *TopK and for approx_percentile a *Percentiles
// (what the approximate op must give, with its documented error); Agrees
// compares a canonical value with what Value returned.
package brute

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// Window returns feature f's window at instant at (Unix µs) under the
// window contract, [floor(at − W), at), floor to the feature's tile, by
// plain integer arithmetic.
func Window(f schemas.Feature, at int64) (from, to int64) {
	t := f.Tile.Microseconds()
	from = at - f.Window.Microseconds()
	from -= ((from % t) + t) % t
	return from, at
}

// In returns the events of key (every key if key is "") in f's window at
// at that keep keeps (nil: all), in the order given.
func In(f schemas.Feature, events []schemas.Event, key string, at int64, keep func(schemas.Event) bool) []schemas.Event {
	from, to := Window(f, at)
	var in []schemas.Event
	for _, e := range events {
		if (key == "" || e.Key == key) && e.Time >= from && e.Time < to && (keep == nil || keep(e)) {
			in = append(in, e)
		}
	}
	return in
}

// At is Value over In(f, events, key, at, keep).
func At(f schemas.Feature, events []schemas.Event, key string, at int64, keep func(schemas.Event) bool) (any, bool) {
	return Value(f, In(f, events, key, at, keep))
}

// TopK is what top_k must give for the values of a window: Exact, the k
// most frequent values (by count, then value ascending), when the window
// holds at most Capacity distinct values; otherwise (Misra-Gries with
// Capacity counters, as documented in transforms/aggregate) at most k
// values with counts that underestimate the true ones by at most
// N/(Capacity+1), highest first, and no value left out whose true count
// exceeds the smallest reported one by more than that.
type TopK struct {
	Exact    []any
	Counts   map[any]int64 // every value's true count
	N        int64         // values counted
	K        int
	Capacity int
}

// Percentiles is what approx_percentile must give: the value of each
// percentile within the documented relative error of the exact value of
// rank ⌊q(n−1)⌋ or ⌈q(n−1)⌉ (Lo, Hi, from the sorted values), and (when
// Direct is not nil) exactly the value of a DDSketch that sketches-go builds
// directly from the values with the documented parameters.
type Percentiles struct {
	Lo, Hi   map[string]float64
	Direct   map[string]any
	RelError float64
}

// Value computes f over the events in (its window, filtered), by brute
// force. ok is false where the feature has no value (NOT_FOUND).
func Value(f schemas.Feature, in []schemas.Event) (v any, ok bool) {
	if f.Op == schemas.OpCount {
		return int64(len(in)), true
	}
	var vs []schemas.Value
	var ts []int64
	for _, e := range in {
		if v := e.Values[f.FieldIndex]; !v.IsNull() {
			vs, ts = append(vs, v), append(ts, e.Time)
		}
	}
	switch f.Op {
	case schemas.OpSum:
		if f.FieldType == schemas.Int64 {
			var s int64
			for _, v := range vs {
				s += v.Int
			}
			return s, true
		}
		s := 0.0
		for _, v := range vs {
			s += v.Float
		}
		return s, true
	case schemas.OpApproxCountDistinct:
		seen := map[any]bool{}
		for _, v := range vs {
			seen[Plain(v)] = true
		}
		return int64(len(seen)), true
	case schemas.OpHistogram:
		return histogram(f, vs), true
	}
	if len(vs) == 0 {
		return nil, false
	}
	// The values by event time, of equal times by value, ascending.
	idx := make([]int, len(vs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := cmp.Compare(ts[a], ts[b]); c != 0 {
			return c
		}
		return compare(vs[a], vs[b])
	})
	switch f.Op {
	case schemas.OpMin, schemas.OpMax:
		best := vs[0]
		for _, v := range vs[1:] {
			if c := compare(v, best); f.Op == schemas.OpMin && c < 0 || f.Op == schemas.OpMax && c > 0 {
				best = v
			}
		}
		return Plain(best), true
	case schemas.OpMean:
		s := 0.0
		for _, v := range vs {
			s += v.AsFloat()
		}
		return s / float64(len(vs)), true
	case schemas.OpStddev:
		m := 0.0
		for _, v := range vs {
			m += v.AsFloat()
		}
		m /= float64(len(vs))
		ss := 0.0
		for _, v := range vs {
			ss += (v.AsFloat() - m) * (v.AsFloat() - m)
		}
		return math.Sqrt(ss / float64(len(vs))), true
	case schemas.OpFirst:
		return Plain(vs[idx[0]]), true
	case schemas.OpLast:
		return Plain(vs[idx[len(idx)-1]]), true
	case schemas.OpFirstK, schemas.OpLastK:
		if f.Op == schemas.OpLastK {
			slices.Reverse(idx)
		}
		var out []any
		for _, i := range idx[:min(f.K, len(idx))] {
			out = append(out, Plain(vs[i]))
		}
		return out, true
	case schemas.OpTopK:
		return topK(f, vs), true
	case schemas.OpApproxPercentile:
		return percentiles(f, vs), true
	}
	panic("brute: unknown op " + f.Op)
}

func histogram(f schemas.Feature, vs []schemas.Value) map[string]any {
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
	return map[string]any{"buckets": buckets, "overflow": overflow}
}

func topK(f schemas.Feature, vs []schemas.Value) *TopK {
	w := &TopK{Counts: map[any]int64{}, N: int64(len(vs)), K: f.K, Capacity: aggregate.TopKCapacity(f.K)}
	var distinct []schemas.Value
	for _, v := range vs {
		if w.Counts[Plain(v)] == 0 {
			distinct = append(distinct, v)
		}
		w.Counts[Plain(v)]++
	}
	slices.SortFunc(distinct, func(a, b schemas.Value) int {
		if c := cmp.Compare(w.Counts[Plain(b)], w.Counts[Plain(a)]); c != 0 {
			return c
		}
		return compare(a, b)
	})
	for _, v := range distinct[:min(f.K, len(distinct))] {
		w.Exact = append(w.Exact, map[string]any{"value": Plain(v), "count": w.Counts[Plain(v)]})
	}
	return w
}

func percentiles(f schemas.Feature, vs []schemas.Value) *Percentiles {
	w := &Percentiles{Lo: map[string]float64{}, Hi: map[string]float64{}, Direct: map[string]any{}, RelError: aggregate.PercentileRelativeError}
	sk, err := ddsketch.LogCollapsingLowestDenseDDSketch(aggregate.PercentileRelativeError, aggregate.PercentileMaxBins)
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
	for _, q := range f.Percentiles {
		name := schemas.PercentileName(q)
		x, err := sk.GetValueAtQuantile(q)
		if err != nil {
			panic(err)
		}
		w.Direct[name] = x
		rank := q * float64(len(xs)-1)
		w.Lo[name], w.Hi[name] = xs[int(math.Floor(rank))], xs[int(math.Ceil(rank))]
	}
	return w
}

// Agrees reports how got (canonical, nil for null) differs from want (what
// Value gave, nil where it was not ok), within the documented tolerances:
// exact for counts, integers, strings, bools, timestamps, lists and
// histograms; 1e-9 relative for floats; approx_count_distinct within 3
// standard errors of the sketch (at least 1); top_k and approx_percentile as
// TopK and Percentiles say. It returns "" when they agree.
func Agrees(f schemas.Feature, got, want any) string {
	if got == nil || want == nil {
		if got != nil || want != nil {
			return fmt.Sprintf("got %v, want %v", show(got), show(want))
		}
		return ""
	}
	switch w := want.(type) {
	case *TopK:
		return w.agrees(got)
	case *Percentiles:
		return w.agrees(got)
	case float64:
		g, ok := got.(float64)
		if !ok || !(math.Abs(g-w) <= 1e-9*max(1, math.Abs(w))) {
			return fmt.Sprintf("got %v, want %v", show(got), w)
		}
		return ""
	case int64:
		g, ok := got.(int64)
		if f.Op == schemas.OpApproxCountDistinct {
			if !ok || math.Abs(float64(g-w)) > max(1, 3*aggregate.HLLStdError*float64(w)) {
				return fmt.Sprintf("got %v, want %d ± 3σ", show(got), w)
			}
			return ""
		}
		if !ok || g != w {
			return fmt.Sprintf("got %v, want %d", show(got), w)
		}
		return ""
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Sprintf("got %v, want %v", show(got), show(want))
	}
	return ""
}

func (w *TopK) agrees(got any) string {
	if len(w.Counts) <= w.Capacity {
		if fmt.Sprint(got) != fmt.Sprint(w.Exact) {
			return fmt.Sprintf("got %v, want exactly %v (%d distinct values, capacity %d)", got, w.Exact, len(w.Counts), w.Capacity)
		}
		return ""
	}
	// Misra-Gries may report no value at all: when no value's true count
	// exceeds N/(c+1) (hundreds of distinct values, each seen once or
	// twice), none need survive the reduction, and the loop below checks
	// exactly that.
	l, ok := got.([]any)
	if !ok || len(l) > w.K {
		return fmt.Sprintf("got %v, want at most %d values with counts", got, w.K)
	}
	bound := float64(w.N) / float64(w.Capacity+1)
	reported := map[any]bool{}
	prev := int64(math.MaxInt64)
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return fmt.Sprintf("got %v: entry %v is no {value, count}", got, e)
		}
		c, _ := m["count"].(int64)
		truth := w.Counts[m["value"]]
		if c > prev {
			return fmt.Sprintf("got %v: counts not highest first", got)
		}
		prev = c
		if c > truth || float64(truth-c) > bound {
			return fmt.Sprintf("got %v: %v counted %d, true count %d, error bound N/(c+1) = %.2f", got, m["value"], c, truth, bound)
		}
		reported[m["value"]] = true
	}
	for v, truth := range w.Counts {
		if !reported[v] && len(l) == w.K && float64(truth-prev) > bound {
			return fmt.Sprintf("got %v: %v (true count %d) left out for a count of %d, beyond the bound %.2f", got, v, truth, prev, bound)
		}
		if !reported[v] && len(l) < w.K && float64(truth) > bound {
			return fmt.Sprintf("got %v: %v (true count %d > N/(c+1) = %.2f) left out", got, v, truth, bound)
		}
	}
	return ""
}

func (w *Percentiles) agrees(got any) string {
	g, ok := got.(map[string]any)
	if !ok || len(g) != len(w.Lo) {
		return fmt.Sprintf("got %v, want percentiles %v", got, w.Lo)
	}
	if w.Direct != nil && fmt.Sprint(g) != fmt.Sprint(w.Direct) {
		return fmt.Sprintf("got %v, want %v, the values of a DDSketch built directly", got, w.Direct)
	}
	for name, lo := range w.Lo {
		x, ok := g[name].(float64)
		hi := w.Hi[name]
		if !ok || math.Abs(x-lo) > w.RelError*math.Abs(lo)*(1+1e-9) && math.Abs(x-hi) > w.RelError*math.Abs(hi)*(1+1e-9) {
			return fmt.Sprintf("got %v: %s not within %v of the exact %v or %v", got, name, w.RelError, lo, hi)
		}
	}
	return ""
}

func show(v any) any {
	switch w := v.(type) {
	case *TopK:
		return w.Exact
	case *Percentiles:
		return w.Lo
	}
	return v
}

// Plain is a scalar value in canonical form: string, int64, float64, bool,
// or int64 Unix microseconds for a timestamp.
func Plain(v schemas.Value) any {
	switch v.Type {
	case schemas.String:
		return v.Str
	case schemas.Float64:
		return v.Float
	case schemas.Bool:
		return v.Int != 0
	}
	return v.Int
}

// compare orders values of one type: numbers numerically, strings
// bytewise, false before true.
func compare(a, b schemas.Value) int {
	switch a.Type {
	case schemas.String:
		return cmp.Compare(a.Str, b.Str)
	case schemas.Float64:
		return cmp.Compare(a.Float, b.Float)
	}
	return cmp.Compare(a.Int, b.Int)
}

// FromJSON turns the JSON of a value of feature f (as the feature API and
// the training output write it) into the canonical form; null is nil.
func FromJSON(f schemas.Feature, raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return nil, err
	}
	return Canon(f, x)
}

// Canon turns a value of feature f decoded from JSON (numbers as
// json.Number) into the canonical form.
func Canon(f schemas.Feature, x any) (any, error) { return CanonType(f.ResultType(), f.FieldType, x) }

// CanonType turns a value of result type typ (of elements of type elem, for
// lists and counts) decoded from JSON (numbers as json.Number) into the
// canonical form.
func CanonType(typ, elem schemas.Type, x any) (any, error) {
	if x == nil {
		return nil, nil
	}
	switch typ {
	case schemas.List:
		l, ok := x.([]any)
		if !ok {
			return nil, fmt.Errorf("%v is no list", x)
		}
		for i := range l {
			var err error
			if l[i], err = scalar(l[i], elem); err != nil {
				return nil, err
			}
		}
		return l, nil
	case schemas.Counts:
		l, ok := x.([]any)
		if !ok {
			return nil, fmt.Errorf("%v is no list", x)
		}
		for _, e := range l {
			m, ok := e.(map[string]any)
			if !ok || len(m) != 2 {
				return nil, fmt.Errorf("%v is no {value, count}", e)
			}
			var err1, err2 error
			m["value"], err1 = scalar(m["value"], elem)
			m["count"], err2 = scalar(m["count"], schemas.Int64)
			if err := cmp.Or(err1, err2); err != nil {
				return nil, err
			}
		}
		return l, nil
	case schemas.Quantiles:
		m, ok := x.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%v is no object", x)
		}
		for k, v := range m {
			var err error
			if m[k], err = scalar(v, schemas.Float64); err != nil {
				return nil, err
			}
		}
		return m, nil
	case schemas.Histogram:
		m, ok := x.(map[string]any)
		b, okb := m["buckets"].(map[string]any)
		if !ok || !okb || len(m) != 2 {
			return nil, fmt.Errorf("%v is no {buckets, overflow}", x)
		}
		for k, v := range b {
			var err error
			if b[k], err = scalar(v, schemas.Int64); err != nil {
				return nil, err
			}
		}
		var err error
		m["overflow"], err = scalar(m["overflow"], schemas.Int64)
		return m, err
	}
	return scalar(x, typ)
}

// scalar turns a JSON scalar into the canonical form of type typ; a value
// already in it stays (Canon may see a value twice: it converts in place).
func scalar(x any, typ schemas.Type) (any, error) {
	switch x.(type) {
	case int64:
		if typ == schemas.Int64 || typ == schemas.Timestamp {
			return x, nil
		}
	case float64:
		if typ == schemas.Float64 {
			return x, nil
		}
	}
	switch typ {
	case schemas.Int64, schemas.Float64:
		n, ok := x.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%v (%T) is no number", x, x)
		}
		if typ == schemas.Int64 {
			return n.Int64()
		}
		return n.Float64()
	case schemas.Timestamp:
		s, ok := x.(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if !ok || err != nil {
			return nil, fmt.Errorf("%v is no RFC 3339 instant", x)
		}
		return t.UnixMicro(), nil
	case schemas.Bool:
		if b, ok := x.(bool); ok {
			return b, nil
		}
	case schemas.String:
		if s, ok := x.(string); ok {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%v (%T) is no %s", x, x, typ)
}
