package aggregate

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/google/go-cmp/cmp"
	"github.com/tandem-fp/tandem/schemas"
)

func list(vs ...schemas.Value) schemas.Value {
	items := make([]schemas.Item, len(vs))
	for i, v := range vs {
		items[i] = schemas.ItemOf(v)
	}
	return schemas.CompositeValue(schemas.List, 0, items)
}

// counts builds a top_k result from value, count pairs.
func counts(pairs ...any) schemas.Value {
	var items []schemas.Item
	for i := 0; i < len(pairs); i += 2 {
		it := schemas.ItemOf(pairs[i].(schemas.Value))
		it.Count = int64(pairs[i+1].(int))
		items = append(items, it)
	}
	return schemas.CompositeValue(schemas.Counts, 0, items)
}

// hist builds a histogram result from bucket, count pairs and overflow.
func hist(overflow int64, pairs ...any) schemas.Value {
	var items []schemas.Item
	for i := 0; i < len(pairs); i += 2 {
		items = append(items, schemas.Item{Type: schemas.String, Str: pairs[i].(string), Count: int64(pairs[i+1].(int))})
	}
	return schemas.CompositeValue(schemas.Histogram, overflow, items)
}

// TestResultNewOps checks first, last_k, first_k, top_k and histogram on
// small cases (with testParams: k 3, 4 buckets).
func TestResultNewOps(t *testing.T) {
	ties := []event{{str("b"), 9}, {str("c"), 9}, {str("a"), 9}, {str("d"), 9}}
	mixed := []event{{str("b"), 5}, {str("c"), 9}, {str("a"), 7}, {str("d"), 1}, {null, 10}}
	tests := []struct {
		name   string
		op     schemas.Op
		typ    schemas.Type
		events []event
		want   result
	}{
		{"first/empty", schemas.OpFirst, schemas.String, nil, result{}},
		{"first/string", schemas.OpFirst, schemas.String, mixed, result{str("d"), true}},
		{"first/string/tie smaller wins", schemas.OpFirst, schemas.String, ties, result{str("a"), true}},
		{"first/float64/tie -0 over +0", schemas.OpFirst, schemas.Float64, []event{{f64(0), 9}, {f64(negZero), 9}}, result{f64(negZero), true}},
		{"first/bool/canonical", schemas.OpFirst, schemas.Bool, []event{{schemas.Value{Type: schemas.Bool, Int: 7}, 1}}, result{schemas.BoolValue(true), true}},
		{"last_k/empty", schemas.OpLastK, schemas.String, at(null), result{}},
		{"last_k/string", schemas.OpLastK, schemas.String, mixed, result{list(str("c"), str("a"), str("b")), true}},
		{"last_k/string/ties larger first", schemas.OpLastK, schemas.String, ties, result{list(str("d"), str("c"), str("b")), true}},
		{"last_k/fewer than k", schemas.OpLastK, schemas.Int64, at(i64(4), i64(5)), result{list(i64(5), i64(4)), true}},
		{"last_k/repeats kept", schemas.OpLastK, schemas.String, at(str("x"), str("x"), str("x"), str("y")), result{list(str("y"), str("x"), str("x")), true}},
		{"first_k/empty", schemas.OpFirstK, schemas.String, nil, result{}},
		{"first_k/string", schemas.OpFirstK, schemas.String, mixed, result{list(str("d"), str("b"), str("a")), true}},
		{"first_k/string/ties smaller first", schemas.OpFirstK, schemas.String, ties, result{list(str("a"), str("b"), str("c")), true}},
		{"first_k/timestamp", schemas.OpFirstK, schemas.Timestamp, []event{{ts(40), 4}, {ts(10), 1}}, result{list(ts(10), ts(40)), true}},
		{"top_k/empty", schemas.OpTopK, schemas.String, at(null), result{}},
		{"top_k/string", schemas.OpTopK, schemas.String, at(str("a"), str("b"), str("a"), str("d"), str("a"), str("b"), str("c")),
			result{counts(str("a"), 3, str("b"), 2, str("c"), 1), true}},
		{"top_k/bool", schemas.OpTopK, schemas.Bool, at(schemas.BoolValue(true), schemas.BoolValue(false), schemas.Value{Type: schemas.Bool, Int: 5}),
			result{counts(schemas.BoolValue(true), 2, schemas.BoolValue(false), 1), true}},
		{"histogram/empty", schemas.OpHistogram, schemas.String, nil, result{hist(0), true}},
		{"histogram/under the limit", schemas.OpHistogram, schemas.String, at(str("b"), str("a"), str("b"), null), result{hist(0, "a", 1, "b", 2), true}},
		{"histogram/overflow", schemas.OpHistogram, schemas.String, at(str("e"), str("a"), str("c"), str("a"), str("b"), str("d"), str("f"), str("e")),
			result{hist(3, "a", 2, "b", 1, "c", 1, "d", 1), true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := combo{tc.op, tc.typ}
			p := addAll(t, c, tc.events)
			if d := cmp.Diff(tc.want, resultOf(p), exactFloats); d != "" {
				t.Errorf("Result() mismatch (-want +got):\n%s", d)
			}
			q := mustDecode(t, mustEncode(t, p))
			if d := cmp.Diff(tc.want, resultOf(q), exactFloats); d != "" {
				t.Errorf("Result() after a round trip mismatch (-want +got):\n%s", d)
			}
			if v, ok := p.Result(); ok && v.Type != tc.op.ResultType(tc.typ) {
				t.Errorf("Result() has type %s, want %s", v.Type, tc.op.ResultType(tc.typ))
			}
		})
	}
}

// TestNewWithParams checks the parameter ranges and that For takes a
// feature's parameters.
func TestNewWithParams(t *testing.T) {
	bad := []struct {
		op     schemas.Op
		typ    schemas.Type
		params Params
	}{
		{schemas.OpLastK, schemas.String, Params{K: 101}},
		{schemas.OpFirstK, schemas.String, Params{K: -1}},
		{schemas.OpTopK, schemas.String, Params{K: 1000}},
		{schemas.OpApproxPercentile, schemas.Float64, Params{Percentiles: []float64{0.5, 1}}},
		{schemas.OpApproxPercentile, schemas.Float64, Params{Percentiles: []float64{0}}},
		{schemas.OpApproxPercentile, schemas.Float64, Params{Percentiles: []float64{0.5, 0.5}}},
		{schemas.OpApproxPercentile, schemas.Float64, Params{Percentiles: []float64{math.NaN()}}},
		{schemas.OpApproxPercentile, schemas.String, Params{}},
		{schemas.OpHistogram, schemas.String, Params{Buckets: 1001}},
		{schemas.OpHistogram, schemas.Int64, Params{}},
	}
	for _, tc := range bad {
		if p, err := NewWith(tc.op, tc.typ, tc.params); !errors.Is(err, ErrUnsupported) || p != nil {
			t.Errorf("NewWith(%s, %s, %+v) = %v, %v; want ErrUnsupported", tc.op, tc.typ, tc.params, p, err)
		}
	}
	f := schemas.Feature{Name: "p", Op: schemas.OpApproxPercentile, Field: "amount", FieldType: schemas.Float64, Percentiles: []float64{0.9}}
	p := For(f)
	p.Add(f64(10), 0)
	v, _ := p.Result()
	if len(v.Items()) != 1 || v.Items()[0].Key != "p90" {
		t.Errorf("For(percentiles [0.9]).Result() = %+v, want one item p90", v)
	}
	k := For(schemas.Feature{Name: "k", Op: schemas.OpLastK, Field: "m", FieldType: schemas.Int64, K: 1})
	k.Add(i64(1), 1)
	k.Add(i64(2), 2)
	if v, _ := k.Result(); len(v.Items()) != 1 || v.Items()[0].Int != 2 {
		t.Errorf("For(last_k k 1) = %+v, want [2]", v)
	}
}

// TestMergeSmallerParams checks that partials written under different k or
// bucket limits merge into the smaller, in either order.
func TestMergeSmallerParams(t *testing.T) {
	for _, op := range []schemas.Op{schemas.OpLastK, schemas.OpFirstK, schemas.OpTopK, schemas.OpHistogram} {
		t.Run(string(op), func(t *testing.T) {
			r := rngFor(t)
			evs := randEvents(r, schemas.String, 60)
			small, _ := NewWith(op, schemas.String, Params{K: 2, Buckets: 2})
			large, _ := NewWith(op, schemas.String, Params{K: 5, Buckets: 5})
			want, _ := NewWith(op, schemas.String, Params{K: 2, Buckets: 2})
			for i, e := range evs {
				want.Add(e.v, e.t)
				if i%2 == 0 {
					small.Add(e.v, e.t)
				} else {
					large.Add(e.v, e.t)
				}
			}
			a, b := small.Clone(), large.Clone()
			mustMerge(t, a, large)
			mustMerge(t, b, small)
			for _, got := range []Partial{a, b} {
				if d := diffResults(combo{}, want, got); d != "" {
					t.Errorf("merge of k/buckets 2 and 5 differs from k/buckets 2 (-want +got):\n%s", d)
				}
			}
		})
	}
}

// TestTopKErrorBound adds many distinct values (far beyond the summary's
// capacity) with a few heavy ones, splits them at random and merges the
// parts along random trees: every reported count must be at most the true
// count and at least the true count − N/(c+1), and every value occurring
// more than N/(c+1) times must be kept.
func TestTopKErrorBound(t *testing.T) {
	r := rngFor(t)
	const k = 5
	c := TopKCapacity(k)
	for trial := range 20 {
		var evs []event
		truth := map[int64]int64{}
		for range 5000 + r.IntN(5000) {
			var x int64
			switch u := r.Float64(); {
			case u < 0.3:
				x = r.Int64N(4) // heavy hitters 0..3
			case u < 0.4:
				x = 10 + r.Int64N(20)
			default:
				x = 1000 + r.Int64N(5000) // the long tail
			}
			truth[x]++
			evs = append(evs, event{i64(x), 0})
		}
		n := int64(len(evs))
		bound := n / int64(c+1)
		parts := make([]Partial, 1+r.IntN(8))
		for i := range parts {
			parts[i], _ = NewWith(schemas.OpTopK, schemas.Int64, Params{K: k})
		}
		for _, e := range evs {
			parts[r.IntN(len(parts))].Add(e.v, e.t)
		}
		for len(parts) > 1 {
			i := r.IntN(len(parts) - 1)
			other := parts[i+1]
			if r.IntN(2) == 0 {
				other = mustDecode(t, mustEncode(t, other))
			}
			mustMerge(t, parts[i], other)
			parts = slices.Delete(parts, i+1, i+2)
		}
		sum := parts[0].(*topKPartial).reduced() // as Result and the encoding see it
		if len(sum.items) > c {
			t.Fatalf("trial %d: %d counters, capacity %d", trial, len(sum.items), c)
		}
		kept := map[int64]int64{}
		for _, x := range sum.items {
			kept[x.v.Int] = x.n
			if tr := truth[x.v.Int]; x.n > tr || x.n < tr-bound {
				t.Fatalf("trial %d: value %d counted %d, true %d, bound %d", trial, x.v.Int, x.n, tr, bound)
			}
		}
		for x, tr := range truth {
			if _, ok := kept[x]; tr > bound && !ok {
				t.Fatalf("trial %d: value %d occurs %d > N/(c+1) = %d times but has no counter", trial, x, tr, bound)
			}
		}
		v, ok := parts[0].Result()
		if !ok || len(v.Items()) != k {
			t.Fatalf("trial %d: Result() = %v, %v; want %d items", trial, v, ok, k)
		}
		for i := range 4 { // the heavy hitters, by far the most frequent
			if v.Items()[i].Int > 3 {
				t.Fatalf("trial %d: top %d is %d, want one of the heavy values 0..3: %+v", trial, i, v.Items()[i].Int, v.Items())
			}
		}
	}
}

// exactRanks returns the values of ranks ⌊q·(n−1)⌋ and ⌈q·(n−1)⌉ of the
// sorted values, between which DDSketch estimates (the floor among
// positive values, the ceiling among negative ones).
func exactRanks(sorted []float64, q float64) (lo, hi float64) {
	rank := float64(q * float64(len(sorted)-1))
	return sorted[int(math.Floor(rank))], sorted[int(math.Ceil(rank))]
}

// within reports whether got is within the relative error of want.
func within(got, want float64) bool {
	return math.Abs(got-want) <= PercentileRelativeError*math.Abs(want)*(1+1e-9)
}

// TestPercentileMatchesDDSketch checks approx_percentile against a sketch
// that sketches-go builds directly from the same values (bit for bit) and
// against the exact percentiles of the sorted values (within the relative
// error), over random splits and merges.
func TestPercentileMatchesDDSketch(t *testing.T) {
	r := rngFor(t)
	qs := []float64{0.01, 0.1, 0.5, 0.9, 0.99, 0.999}
	gens := map[string]func() float64{
		"lognormal": func() float64 { return math.Exp(r.NormFloat64()*2 + 8) },
		"signed":    func() float64 { return r.NormFloat64() * 1000 },
		"ints":      func() float64 { return float64(r.Int64N(50) - 10) },
	}
	for name, gen := range gens {
		t.Run(name, func(t *testing.T) {
			for range 30 {
				n := 1 + r.IntN(3000)
				vals := make([]float64, n)
				direct, err := ddsketch.LogCollapsingLowestDenseDDSketch(PercentileRelativeError, PercentileMaxBins)
				if err != nil {
					t.Fatal(err)
				}
				parts := make([]Partial, 1+r.IntN(5))
				for i := range parts {
					parts[i], _ = NewWith(schemas.OpApproxPercentile, schemas.Float64, Params{Percentiles: qs})
				}
				for i := range vals {
					vals[i] = gen()
					if err := direct.Add(vals[i]); err != nil {
						t.Fatal(err)
					}
					parts[r.IntN(len(parts))].Add(f64(vals[i]), 0)
				}
				for _, q := range parts[1:] {
					mustMerge(t, parts[0], mustDecode(t, mustEncode(t, q)))
				}
				v, ok := parts[0].Result()
				if !ok || len(v.Items()) != len(qs) {
					t.Fatalf("Result() = %+v, %v", v, ok)
				}
				sort.Float64s(vals)
				for i, q := range qs {
					want, err := direct.GetValueAtQuantile(q)
					if err != nil {
						t.Fatal(err)
					}
					got := v.Items()[i]
					if got.Key != schemas.PercentileName(q) || math.Float64bits(got.Float) != math.Float64bits(want) {
						t.Fatalf("%s over %d values = %v, the sketch built directly says %v", schemas.PercentileName(q), n, got.Float, want)
					}
					if lo, hi := exactRanks(vals, q); !within(got.Float, lo) && !within(got.Float, hi) {
						t.Fatalf("%s over %d values = %v, exact %v to %v: beyond the relative error %v", got.Key, n, got.Float, lo, hi, PercentileRelativeError)
					}
				}
			}
		})
	}
}

// TestPercentileSkipsNonFinite checks that NaN and ±Inf do not enter the
// sketch, and that int64 fields are sketched as their float64 values.
func TestPercentileSkipsNonFinite(t *testing.T) {
	p := addAll(t, combo{schemas.OpApproxPercentile, schemas.Float64}, at(f64(math.NaN()), f64(math.Inf(1)), f64(math.Inf(-1))))
	if _, ok := p.Result(); ok {
		t.Errorf("approx_percentile over NaN and ±Inf has a value, want none")
	}
	q := addAll(t, combo{schemas.OpApproxPercentile, schemas.Int64}, at(i64(100), i64(100), i64(100)))
	v, ok := q.Result()
	if !ok || math.Abs(v.Items()[2].Float-100) > 1 {
		t.Errorf("approx_percentile over int64 100s = %+v, want about 100", v)
	}
}

// TestNewOpsRandomSplitsAgainstBruteForce checks last_k, first_k and
// histogram against brute force over the events (sorting and counting),
// after random splits, merges and round trips.
func TestNewOpsRandomSplitsAgainstBruteForce(t *testing.T) {
	r := rngFor(t)
	for range trials {
		evs := randEvents(r, schemas.String, r.IntN(100))
		var nonNull []event
		for _, e := range evs {
			if !e.v.IsNull() {
				nonNull = append(nonNull, e)
			}
		}
		byTime := slices.Clone(nonNull)
		slices.SortStableFunc(byTime, func(a, b event) int {
			if a.t != b.t {
				return int(b.t - a.t)
			}
			return -compareValues(a.v, b.v)
		})
		var last, first []schemas.Value
		for i := range min(3, len(byTime)) {
			last = append(last, byTime[i].v)
			first = append(first, byTime[len(byTime)-1-i].v)
		}
		countBy := map[string]int64{}
		for _, e := range nonNull {
			countBy[e.v.Str]++
		}
		keys := make([]string, 0, len(countBy))
		for k := range countBy {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var buckets []schemas.Item
		var overflow int64
		for i, k := range keys {
			if i < testParams.Buckets {
				buckets = append(buckets, schemas.Item{Type: schemas.String, Str: k, Count: countBy[k]})
			} else {
				overflow += countBy[k]
			}
		}
		wantHist := schemas.CompositeValue(schemas.Histogram, overflow, buckets)
		for _, tc := range []struct {
			op   schemas.Op
			want result
		}{
			{schemas.OpLastK, result{list(last...), len(last) > 0}},
			{schemas.OpFirstK, result{list(first...), len(first) > 0}},
			{schemas.OpHistogram, result{wantHist, true}},
		} {
			if !tc.want.OK {
				tc.want = result{}
			}
			c := combo{tc.op, schemas.String}
			parts := []Partial{mustNew(t, c), mustNew(t, c), mustNew(t, c)}
			for _, e := range evs {
				parts[r.IntN(3)].Add(e.v, e.t)
			}
			mustMerge(t, parts[2], mustDecode(t, mustEncode(t, parts[1])))
			mustMerge(t, parts[0], parts[2])
			if d := cmp.Diff(tc.want, resultOf(parts[0])); d != "" {
				t.Fatalf("%s over %d events differs from brute force (-want +got):\n%s", tc.op, len(evs), d)
			}
		}
	}
}

// TestTopKMergeOrder merges the same tiles in many orders and trees, with
// more distinct values between them than the counters (each tile within
// them): the result and the encoding are the same every time, so a
// window's value does not depend on the order its tiles are merged in (the
// server's and the training pipeline's differ).
func TestTopKMergeOrder(t *testing.T) {
	r := rngFor(t)
	const k = 2
	c := TopKCapacity(k)
	var tiles []Partial
	distinct := map[int64]bool{}
	for range 8 {
		p, _ := NewWith(schemas.OpTopK, schemas.Int64, Params{K: k})
		for range 400 {
			p.Add(i64(r.Int64N(100)+r.Int64N(3)*int64(r.IntN(300))), 0)
		}
		tile := mustDecode(t, mustEncode(t, p)) // stored: reduced to its counters
		if n := len(tile.(*topKPartial).items); n > c {
			t.Fatalf("a stored tile holds %d counters, more than its %d", n, c)
		}
		for _, x := range tile.(*topKPartial).items {
			distinct[x.v.Int] = true
		}
		tiles = append(tiles, tile)
	}
	var want []byte
	var wantV schemas.Value
	for trial := range 50 {
		parts := make([]Partial, len(tiles))
		for i, j := range r.Perm(len(tiles)) {
			parts[i] = tiles[j].Clone()
		}
		for len(parts) > 1 { // a random merge tree
			i := r.IntN(len(parts) - 1)
			mustMerge(t, parts[i], parts[i+1])
			parts = slices.Delete(parts, i+1, i+2)
		}
		got := mustEncode(t, parts[0])
		v, _ := parts[0].Result()
		if trial == 0 {
			want, wantV = got, v
			if len(distinct) <= c {
				t.Fatalf("the tiles hold %d distinct values between them, want more than the %d counters", len(distinct), c)
			}
			continue
		}
		if !bytes.Equal(got, want) || !reflect.DeepEqual(v, wantV) {
			t.Fatalf("merge order %d: %v, want %v", trial, v, wantV)
		}
	}
}

// TestTopKAddOrder adds the same values to a tile in many orders, more
// distinct values than its counters: the stored tile is the same every
// time (a stream tile, built in arrival order, equals the batch and
// training one, built in time order).
func TestTopKAddOrder(t *testing.T) {
	r := rngFor(t)
	const k = 3
	var vals []schemas.Value
	for range 3000 {
		vals = append(vals, i64(r.Int64N(20)+r.Int64N(2)*r.Int64N(1000)))
	}
	var want []byte
	for trial := range 20 {
		p, _ := NewWith(schemas.OpTopK, schemas.Int64, Params{K: k})
		for _, i := range r.Perm(len(vals)) {
			p.Add(vals[i], 0)
		}
		if distinct := len(slices.CompactFunc(slices.SortedFunc(slices.Values(vals), func(a, b schemas.Value) int { return int(a.Int - b.Int) }), func(a, b schemas.Value) bool { return a.Int == b.Int })); trial == 0 && distinct <= TopKCapacity(k) {
			t.Fatalf("%d distinct values, want more than the %d counters", distinct, TopKCapacity(k))
		}
		got := mustEncode(t, p)
		if trial == 0 {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Fatalf("add order %d: the stored tile differs", trial)
		}
	}
}
