package aggregate

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tandem-fp/tandem/schemas"
)

var (
	null    = schemas.Value{}
	negZero = math.Copysign(0, -1)
	nan     = math.NaN()
)

func i64(i int64) schemas.Value   { return schemas.Int64Value(i) }
func f64(f float64) schemas.Value { return schemas.Float64Value(f) }
func str(s string) schemas.Value  { return schemas.StringValue(s) }
func ts(us int64) schemas.Value   { return schemas.Value{Type: schemas.Timestamp, Int: us} }

// at returns events of values vs at event times 1, 2, 3, ...
func at(vs ...schemas.Value) []event {
	evs := make([]event, len(vs))
	for i, v := range vs {
		evs[i] = event{v, int64(i + 1)}
	}
	return evs
}

func TestResult(t *testing.T) {
	tests := []struct {
		name   string
		op     schemas.Op
		typ    schemas.Type
		events []event
		want   result
	}{
		{"count/empty", schemas.OpCount, schemas.Null, nil, result{i64(0), true}},
		{"count/nulls count", schemas.OpCount, schemas.Null, at(null, i64(3), null), result{i64(3), true}},
		{"sum/int64/empty", schemas.OpSum, schemas.Int64, nil, result{i64(0), true}},
		{"sum/int64", schemas.OpSum, schemas.Int64, at(i64(1), null, i64(-5), i64(10)), result{i64(6), true}},
		{"sum/int64/only nulls", schemas.OpSum, schemas.Int64, at(null, null), result{i64(0), true}},
		{"sum/int64/wraps", schemas.OpSum, schemas.Int64, at(i64(math.MaxInt64), i64(2)), result{i64(math.MinInt64 + 1), true}},
		{"sum/int64/exact beyond 2^53", schemas.OpSum, schemas.Int64, at(i64(1<<60), i64(1), i64(1)), result{i64(1<<60 + 2), true}},
		{"sum/float64/empty", schemas.OpSum, schemas.Float64, nil, result{f64(0), true}},
		{"sum/float64", schemas.OpSum, schemas.Float64, at(f64(1.5), null, f64(2.25)), result{f64(3.75), true}},
		{"sum/float64/compensated", schemas.OpSum, schemas.Float64, at(f64(1), f64(1e100), f64(1), f64(-1e100)), result{f64(2), true}},
		{"sum/float64/inf", schemas.OpSum, schemas.Float64, at(f64(1), f64(math.Inf(1)), f64(1)), result{f64(math.Inf(1)), true}},
		{"sum/float64/inf-inf", schemas.OpSum, schemas.Float64, at(f64(math.Inf(-1)), f64(math.Inf(1))), result{f64(nan), true}},
		{"min/int64/empty", schemas.OpMin, schemas.Int64, nil, result{}},
		{"min/int64/only nulls", schemas.OpMin, schemas.Int64, at(null), result{}},
		{"min/int64", schemas.OpMin, schemas.Int64, at(i64(3), null, i64(-2), i64(7)), result{i64(-2), true}},
		{"max/int64", schemas.OpMax, schemas.Int64, at(i64(3), null, i64(-2), i64(7)), result{i64(7), true}},
		{"min/timestamp", schemas.OpMin, schemas.Timestamp, at(ts(30), ts(10), ts(20)), result{ts(10), true}},
		{"max/timestamp", schemas.OpMax, schemas.Timestamp, at(ts(30), ts(10), ts(20)), result{ts(30), true}},
		{"min/float64", schemas.OpMin, schemas.Float64, at(f64(2.5), f64(-1.5), f64(math.Inf(1))), result{f64(-1.5), true}},
		{"max/float64", schemas.OpMax, schemas.Float64, at(f64(2.5), f64(-1.5), f64(math.Inf(-1))), result{f64(2.5), true}},
		{"min/float64/-0 < +0", schemas.OpMin, schemas.Float64, at(f64(0), f64(negZero), f64(0)), result{f64(negZero), true}},
		{"max/float64/+0 > -0", schemas.OpMax, schemas.Float64, at(f64(negZero), f64(0), f64(negZero)), result{f64(0), true}},
		{"min/float64/NaN wins", schemas.OpMin, schemas.Float64, at(f64(1), f64(nan), f64(-1)), result{f64(nan), true}},
		{"max/float64/NaN wins", schemas.OpMax, schemas.Float64, at(f64(1), f64(nan), f64(-1)), result{f64(nan), true}},
		{"min/string", schemas.OpMin, schemas.String, at(str("b"), str("ab"), str("abc")), result{str("ab"), true}},
		{"max/string", schemas.OpMax, schemas.String, at(str("b"), str("ab"), str("é")), result{str("é"), true}},
		{"min/string/empty string", schemas.OpMin, schemas.String, at(str("b"), str("")), result{str(""), true}},
		{"mean/float64/empty", schemas.OpMean, schemas.Float64, nil, result{}},
		{"mean/float64", schemas.OpMean, schemas.Float64, at(f64(1), null, f64(2), f64(4.5)), result{f64(2.5), true}},
		{"mean/int64", schemas.OpMean, schemas.Int64, at(i64(1), i64(2)), result{f64(1.5), true}},
		{"last/string/empty", schemas.OpLast, schemas.String, nil, result{}},
		{"last/string", schemas.OpLast, schemas.String, []event{{str("b"), 5}, {str("c"), 9}, {str("a"), 7}, {null, 10}}, result{str("c"), true}},
		{"last/string/tie larger wins", schemas.OpLast, schemas.String, []event{{str("b"), 9}, {str("c"), 9}, {str("a"), 9}}, result{str("c"), true}},
		{"last/float64/tie +0 over -0", schemas.OpLast, schemas.Float64, []event{{f64(0), 9}, {f64(negZero), 9}}, result{f64(0), true}},
		{"last/bool", schemas.OpLast, schemas.Bool, []event{{schemas.BoolValue(true), 1}, {schemas.BoolValue(false), 2}}, result{schemas.BoolValue(false), true}},
		{"last/bool/canonical", schemas.OpLast, schemas.Bool, []event{{schemas.Value{Type: schemas.Bool, Int: 7}, 1}}, result{schemas.BoolValue(true), true}},
		{"last/int64/only the int is kept", schemas.OpLast, schemas.Int64, []event{{schemas.Value{Type: schemas.Int64, Int: 4, Str: "x"}, 1}}, result{i64(4), true}},
		{"last/timestamp", schemas.OpLast, schemas.Timestamp, []event{{ts(4), 2}, {ts(3), 1}}, result{ts(4), true}},
		{"approx_count_distinct/empty", schemas.OpApproxCountDistinct, schemas.String, nil, result{i64(0), true}},
		{"approx_count_distinct/only nulls", schemas.OpApproxCountDistinct, schemas.String, at(null), result{i64(0), true}},
		{"approx_count_distinct/string", schemas.OpApproxCountDistinct, schemas.String, at(str("a"), str("b"), str("a"), null, str("")), result{i64(3), true}},
		{"approx_count_distinct/float64/-0 is +0", schemas.OpApproxCountDistinct, schemas.Float64, at(f64(0), f64(negZero), f64(nan), f64(-nan)), result{i64(2), true}},
		{"approx_count_distinct/bool", schemas.OpApproxCountDistinct, schemas.Bool, at(schemas.BoolValue(true), schemas.Value{Type: schemas.Bool, Int: 2}), result{i64(1), true}},
		{"stddev/float64/empty", schemas.OpStddev, schemas.Float64, nil, result{}},
		{"stddev/float64/one", schemas.OpStddev, schemas.Float64, at(f64(3)), result{f64(0), true}},
		{"stddev/float64", schemas.OpStddev, schemas.Float64, at(f64(2), f64(4), f64(4), null, f64(4), f64(5), f64(5), f64(7), f64(9)), result{f64(2), true}},
		{"stddev/int64", schemas.OpStddev, schemas.Int64, at(i64(1), i64(3)), result{f64(1), true}},
		{"stddev/float64/large offset", schemas.OpStddev, schemas.Float64, at(f64(1e9+4), f64(1e9+7), f64(1e9+13), f64(1e9+16)), result{f64(4.743416490252569), true}},
		// A value of another type than the field's is a caller bug: skipped.
		{"sum/int64/skips other types", schemas.OpSum, schemas.Int64, at(i64(2), f64(5), str("7")), result{i64(2), true}},
		{"min/string/skips other types", schemas.OpMin, schemas.String, at(i64(2)), result{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := combo{tc.op, tc.typ}
			p := addAll(t, c, tc.events)
			opt := exactFloats
			if c.approx() {
				opt = approxFloats
			}
			if d := cmp.Diff(tc.want, resultOf(p), opt); d != "" {
				t.Errorf("Result() mismatch (-want +got):\n%s", d)
			}
			if got, want := p.Op(), tc.op; got != want {
				t.Errorf("Op() = %q, want %q", got, want)
			}
			if v, ok := p.Result(); ok && v.Type != tc.op.ResultType(tc.typ) {
				t.Errorf("Result() has type %s, want %s", v.Type, tc.op.ResultType(tc.typ))
			}
		})
	}
}

// TestEmpty checks every op's result over no events and over only nulls.
func TestEmpty(t *testing.T) {
	for _, c := range allCombos() {
		t.Run(c.String(), func(t *testing.T) {
			want := result{}
			if c.op.HasEmptyValue() {
				want = result{V: schemas.Value{Type: c.op.ResultType(c.typ)}, OK: true}
				if want.V.Type.Composite() {
					want.V = schemas.CompositeValue(want.V.Type, 0, nil)
				}
			}
			for _, evs := range [][]event{nil, at(null, null)} {
				if c.op == schemas.OpCount && len(evs) > 0 {
					continue // count counts nulls
				}
				p := addAll(t, c, evs)
				if d := cmp.Diff(want, resultOf(p), exactFloats); d != "" {
					t.Errorf("Result() over %d nulls mismatch (-want +got):\n%s", len(evs), d)
				}
				// Merging empties stays empty, and so does a round trip.
				mustMerge(t, p, mustNew(t, c))
				q := mustDecode(t, mustEncode(t, p))
				if d := cmp.Diff(want, resultOf(q), exactFloats); d != "" {
					t.Errorf("Result() after merge and round trip mismatch (-want +got):\n%s", d)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		op      schemas.Op
		typ     schemas.Type
		wantErr bool
	}{
		{schemas.OpCount, schemas.Null, false},
		{schemas.OpCount, schemas.String, false}, // count ignores the type
		{schemas.OpSum, schemas.String, true},
		{schemas.OpSum, schemas.Bool, true},
		{schemas.OpSum, schemas.Timestamp, true},
		{schemas.OpMin, schemas.Bool, true},
		{schemas.OpMean, schemas.Null, true},
		{schemas.OpLast, schemas.Null, true},
		{schemas.OpLast, schemas.Type(99), true},
		{schemas.OpApproxCountDistinct, schemas.Type(6), true},
		{schemas.OpStddev, schemas.String, true},
		{"median", schemas.Float64, true},
		{"", schemas.Float64, true},
	}
	for _, c := range allCombos() {
		tests = append(tests, struct {
			op      schemas.Op
			typ     schemas.Type
			wantErr bool
		}{c.op, c.typ, false})
	}
	for _, tc := range tests {
		t.Run(kind(tc.op, tc.typ), func(t *testing.T) {
			p, err := New(tc.op, tc.typ)
			if tc.wantErr {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("New(%q, %s) = %v, want ErrUnsupported", tc.op, tc.typ, err)
				}
				if p != nil {
					t.Fatalf("New(%q, %s) returned a partial with its error", tc.op, tc.typ)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q, %s) = %v", tc.op, tc.typ, err)
			}
			if p.Op() != tc.op {
				t.Errorf("New(%q, %s).Op() = %q", tc.op, tc.typ, p.Op())
			}
		})
	}
}

func TestFor(t *testing.T) {
	f := schemas.Feature{Name: "spend_24h", Op: schemas.OpSum, Field: "amount", FieldType: schemas.Float64}
	p := For(f)
	p.Add(f64(2), 0)
	if d := cmp.Diff(result{f64(2), true}, resultOf(p)); d != "" {
		t.Errorf("For(%q) result mismatch (-want +got):\n%s", f.Name, d)
	}

	bad := schemas.Feature{Name: "bad", Op: schemas.OpSum, Field: "merchant", FieldType: schemas.String}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `"bad"`) {
			t.Errorf("For(invalid feature) panicked with %v, want a panic naming the feature", r)
		}
	}()
	For(bad)
}

func TestMergeMismatch(t *testing.T) {
	var nilCount *countPartial
	tests := []struct {
		name        string
		into, other Partial
	}{
		{"different ops", mustNew(t, combo{schemas.OpSum, schemas.Int64}), mustNew(t, combo{schemas.OpCount, schemas.Null})},
		{"sum int into float", mustNew(t, combo{schemas.OpSum, schemas.Float64}), mustNew(t, combo{schemas.OpSum, schemas.Int64})},
		{"min into max", mustNew(t, combo{schemas.OpMax, schemas.Int64}), mustNew(t, combo{schemas.OpMin, schemas.Int64})},
		{"min float into max float", mustNew(t, combo{schemas.OpMax, schemas.Float64}), mustNew(t, combo{schemas.OpMin, schemas.Float64})},
		{"min string into max string", mustNew(t, combo{schemas.OpMax, schemas.String}), mustNew(t, combo{schemas.OpMin, schemas.String})},
		{"min timestamp into min int64", mustNew(t, combo{schemas.OpMin, schemas.Int64}), mustNew(t, combo{schemas.OpMin, schemas.Timestamp})},
		{"mean int into float", mustNew(t, combo{schemas.OpMean, schemas.Float64}), mustNew(t, combo{schemas.OpMean, schemas.Int64})},
		{"last string into bool", mustNew(t, combo{schemas.OpLast, schemas.Bool}), mustNew(t, combo{schemas.OpLast, schemas.String})},
		{"distinct int into string", mustNew(t, combo{schemas.OpApproxCountDistinct, schemas.String}), mustNew(t, combo{schemas.OpApproxCountDistinct, schemas.Int64})},
		{"stddev int into float", mustNew(t, combo{schemas.OpStddev, schemas.Float64}), mustNew(t, combo{schemas.OpStddev, schemas.Int64})},
		{"first into last", mustNew(t, combo{schemas.OpLast, schemas.String}), mustNew(t, combo{schemas.OpFirst, schemas.String})},
		{"last_k into first_k", mustNew(t, combo{schemas.OpFirstK, schemas.String}), mustNew(t, combo{schemas.OpLastK, schemas.String})},
		{"last_k int into string", mustNew(t, combo{schemas.OpLastK, schemas.String}), mustNew(t, combo{schemas.OpLastK, schemas.Int64})},
		{"top_k int into string", mustNew(t, combo{schemas.OpTopK, schemas.String}), mustNew(t, combo{schemas.OpTopK, schemas.Int64})},
		{"percentile int into float", mustNew(t, combo{schemas.OpApproxPercentile, schemas.Float64}), mustNew(t, combo{schemas.OpApproxPercentile, schemas.Int64})},
		{"histogram into top_k", mustNew(t, combo{schemas.OpTopK, schemas.String}), mustNew(t, combo{schemas.OpHistogram, schemas.String})},
		{"nil", mustNew(t, combo{schemas.OpCount, schemas.Null}), nil},
		{"nil pointer", mustNew(t, combo{schemas.OpCount, schemas.Null}), nilCount},
		{"nil pointer of another op", mustNew(t, combo{schemas.OpSum, schemas.Int64}), nilCount},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			into := tc.into.(partial)
			typ := into.fieldType()
			if typ == schemas.Null {
				typ = schemas.Int64
			}
			r := rand.New(rand.NewPCG(1, 2))
			for _, e := range randEvents(r, typ, 5) {
				into.Add(e.v, e.t)
			}
			if !isNil(tc.other) {
				tc.other.Add(randValue(r, typ), 3)
			}
			before := mustEncode(t, into)
			if err := into.Merge(tc.other); !errors.Is(err, ErrMismatch) {
				t.Fatalf("Merge() = %v, want ErrMismatch", err)
			}
			if after := mustEncode(t, into); string(after) != string(before) {
				t.Errorf("failed Merge changed the receiver from %x to %x", before, after)
			}
		})
	}
}
