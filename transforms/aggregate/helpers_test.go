package aggregate

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tandem-fp/tandem/schemas"
)

// combo is an op over a field type.
type combo struct {
	op  schemas.Op
	typ schemas.Type
}

func (c combo) String() string { return kind(c.op, c.typ) }

// approx reports whether c's result is a rounded float (compare within
// 1e-9 relative) rather than exact.
func (c combo) approx() bool {
	switch c.op {
	case schemas.OpMean, schemas.OpStddev:
		return true
	case schemas.OpSum:
		return c.typ == schemas.Float64
	}
	return false
}

// allCombos returns every op with every field type it accepts.
func allCombos() []combo {
	var cs []combo
	for _, op := range schemas.Ops {
		if op == schemas.OpCount {
			cs = append(cs, combo{op, schemas.Null})
			continue
		}
		for t := schemas.String; t <= schemas.Timestamp; t++ {
			if op.Accepts(t) {
				cs = append(cs, combo{op, t})
			}
		}
	}
	return cs
}

// event is one value at one event time.
type event struct {
	v schemas.Value
	t int64
}

var alphabet = []rune("abé")

// randValue returns a random value of type t, with many duplicates and edge
// cases (empty strings, ±0, huge and tiny magnitudes, extreme ints).
func randValue(r *rand.Rand, t schemas.Type) schemas.Value {
	switch t {
	case schemas.String:
		s := make([]rune, r.IntN(4))
		for i := range s {
			s[i] = alphabet[r.IntN(len(alphabet))]
		}
		return schemas.StringValue(string(s))
	case schemas.Int64:
		switch r.IntN(10) {
		case 0:
			return schemas.Int64Value(int64(r.Uint64())) // sums wrap
		case 1:
			return schemas.Int64Value([]int64{math.MinInt64, math.MaxInt64, 0, -1}[r.IntN(4)])
		}
		return schemas.Int64Value(r.Int64N(2001) - 1000)
	case schemas.Float64:
		switch r.IntN(10) {
		case 0:
			return schemas.Float64Value(r.NormFloat64() * 1e12)
		case 1:
			return schemas.Float64Value(r.NormFloat64() * 1e-6)
		case 2:
			return schemas.Float64Value([]float64{0, math.Copysign(0, -1), 1, -1}[r.IntN(4)])
		}
		return schemas.Float64Value(r.NormFloat64() * 1000)
	case schemas.Bool:
		return schemas.BoolValue(r.IntN(2) == 1)
	case schemas.Timestamp:
		return schemas.Value{Type: schemas.Timestamp, Int: 1_700_000_000_000_000 + r.Int64N(1e12)}
	}
	return schemas.Value{}
}

// randEvents returns n random events of field type t, about 10% null, with
// event times from a small range so that last sees many ties.
func randEvents(r *rand.Rand, t schemas.Type, n int) []event {
	evs := make([]event, n)
	for i := range evs {
		evs[i].t = 1_700_000_000_000_000 + r.Int64N(8)
		if t != schemas.Null && r.IntN(10) != 0 {
			evs[i].v = randValue(r, t)
		}
	}
	return evs
}

// testParams are the parameters of the property tests: small, so that
// last_k, first_k and histogram drop values (top_k's capacity, 128, is
// larger than the tests' events: its summaries stay exact).
var testParams = Params{K: 3, Percentiles: []float64{0.01, 0.25, 0.5, 0.9, 0.999}, Buckets: 4}

func mustNew(tb testing.TB, c combo) Partial {
	tb.Helper()
	p, err := NewWith(c.op, c.typ, testParams)
	if err != nil {
		tb.Fatalf("New(%s, %s) = %v", c.op, c.typ, err)
	}
	return p
}

// addAll returns the partial of c over evs, added in order.
func addAll(tb testing.TB, c combo, evs []event) Partial {
	tb.Helper()
	p := mustNew(tb, c)
	for _, e := range evs {
		p.Add(e.v, e.t)
	}
	return p
}

func mustMerge(tb testing.TB, into, other Partial) {
	tb.Helper()
	if err := into.Merge(other); err != nil {
		tb.Fatalf("Merge(%s into %s) = %v", kind(other.Op(), other.(partial).fieldType()), kind(into.Op(), into.(partial).fieldType()), err)
	}
}

func mustEncode(tb testing.TB, p Partial) []byte {
	tb.Helper()
	b, err := Encode(p)
	if err != nil {
		tb.Fatalf("Encode(%s) = %v", kind(p.Op(), p.(partial).fieldType()), err)
	}
	return b
}

func mustDecode(tb testing.TB, b []byte) Partial {
	tb.Helper()
	p, err := Decode(b)
	if err != nil {
		tb.Fatalf("Decode(%x) = %v", b, err)
	}
	return p
}

// result is a Partial's Result, for cmp.Diff.
type result struct {
	V  schemas.Value
	OK bool
}

func resultOf(p Partial) result {
	v, ok := p.Result()
	return result{v, ok}
}

// exactFloats compares floats bit for bit (so -0 != +0 and NaN == NaN).
var exactFloats = cmp.Comparer(func(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b)
})

// approxFloats compares floats within 1e-9 relative; results that are zero
// up to rounding (cancelling sums, constant stddev) get an absolute floor
// of 1e-12.
var approxFloats = cmp.Comparer(func(a, b float64) bool {
	if a == b || (math.IsNaN(a) && math.IsNaN(b)) {
		return true
	}
	return math.Abs(a-b) <= max(1e-9*max(math.Abs(a), math.Abs(b)), 1e-12)
})

// diffResults returns the difference of the results of want and got, as c
// compares them (exactly or within 1e-9).
func diffResults(c combo, want, got Partial) string {
	opt := exactFloats
	if c.approx() {
		opt = approxFloats
	}
	return cmp.Diff(resultOf(want), resultOf(got), opt)
}

// rngFor returns a random source seeded from the test's name, so every
// (sub)test has its own fixed sequence.
func rngFor(t testing.TB) *rand.Rand {
	t.Helper()
	var h uint64 = 14695981039346656037
	for _, c := range []byte(t.Name()) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return rand.New(rand.NewPCG(h, 0x5eed))
}
