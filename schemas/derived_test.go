package schemas_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
)

const derivedSet = `
name: t
entity: {name: thing, key: id}
event_time: ts
fields: {id: string, x: float64, n: int64, s: string, ts: timestamp}
features:
  - {name: c_1h, op: count, window: 1h}
  - {name: x_sum_1h, op: sum, field: x, window: 1h}
  - {name: n_max_1h, op: max, field: n, window: 1h}
  - {name: s_last, op: last, field: s, window: 1d}
derived:
  - {name: x_per_c, expr: x_sum_1h / c_1h}
  - {name: n_or_0, expr: 'coalesce(n_max_1h, 0)'}
  - {name: big, expr: x_per_c > 10 or n_or_0 > 100}
  - {name: is_a, expr: 's_last == "a"'}
  - {name: c_plus, expr: c_1h + n_or_0}
`

func TestDerivedEval(t *testing.T) {
	set := schemastest.MustParse(t, derivedSet)
	if got, want := len(set.Derived), 5; got != want {
		t.Fatalf("%d derived features, want %d", got, want)
	}
	types := map[string]schemas.Type{"x_per_c": schemas.Float64, "n_or_0": schemas.Int64, "big": schemas.Bool, "is_a": schemas.Bool, "c_plus": schemas.Int64}
	for _, d := range set.Derived {
		if d.Type != types[d.Name] {
			t.Errorf("%s has type %s, want %s", d.Name, d.Type, types[d.Name])
		}
	}
	if diff := cmp.Diff([]int{0, 1, 2}, set.Derived[2].Inputs); diff != "" {
		t.Errorf("inputs of big (-want +got):\n%s", diff)
	}
	null := schemas.Value{}
	for _, tc := range []struct {
		name   string
		stored []schemas.Value
		asOf   []int64
		want   []schemas.Value
		wantAt []int64
	}{
		{"values", []schemas.Value{schemas.Int64Value(4), schemas.Float64Value(50), schemas.Int64Value(7), schemas.StringValue("a")}, []int64{0, 0, 0, 0},
			[]schemas.Value{schemas.Float64Value(12.5), schemas.Int64Value(7), schemas.BoolValue(true), schemas.BoolValue(true), schemas.Int64Value(11)}, []int64{0, 0, 0, 0, 0}},
		{"division by zero is null; null propagates but into coalesce", []schemas.Value{schemas.Int64Value(0), schemas.Float64Value(0), null, null}, []int64{0, 0, 0, 0},
			[]schemas.Value{null, schemas.Int64Value(0), null, null, schemas.Int64Value(0)}, []int64{0, 0, 0, 0, 0}}, // null or false is null
		{"null or true is true", []schemas.Value{schemas.Int64Value(0), schemas.Float64Value(1), schemas.Int64Value(101), null}, []int64{0, 0, 0, 0},
			[]schemas.Value{null, schemas.Int64Value(101), schemas.BoolValue(true), null, schemas.Int64Value(101)}, []int64{0, 0, 0, 0, 0}},
		{"as_of is the earliest of the inputs", []schemas.Value{schemas.Int64Value(2), schemas.Float64Value(3), schemas.Int64Value(1), schemas.StringValue("b")}, []int64{0, 500, 900, 100},
			[]schemas.Value{schemas.Float64Value(1.5), schemas.Int64Value(1), schemas.BoolValue(false), schemas.BoolValue(false), schemas.Int64Value(3)}, []int64{500, 900, 500, 100, 900}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := append(append([]schemas.Value{}, tc.stored...), make([]schemas.Value, len(set.Derived))...)
			asOf := append(append([]int64{}, tc.asOf...), make([]int64, len(set.Derived))...)
			set.EvalDerived(vals, asOf)
			if diff := cmp.Diff(tc.want, vals[len(set.Features):]); diff != "" {
				t.Errorf("EvalDerived values (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAt, asOf[len(set.Features):]); diff != "" {
				t.Errorf("EvalDerived as_of (-want +got):\n%s", diff)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() {
		vals := [9]schemas.Value{schemas.Int64Value(4), schemas.Float64Value(50), schemas.Int64Value(7), schemas.StringValue("a")}
		set.EvalDerived(vals[:], nil)
	}); n != 0 {
		t.Errorf("EvalDerived allocates %v times, want 0", n)
	}
}

func TestDerivedJSON(t *testing.T) {
	set := schemastest.MustParse(t, derivedSet)
	b, err := set.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"derived":[{"name":"x_per_c","expr":"x_sum_1h / c_1h","result_type":"float64"}`) {
		t.Errorf("MarshalJSON = %s, want the derived features with their result types", b)
	}
	var back schemas.FeatureSet
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(set.Derived, back.Derived); diff != "" {
		t.Errorf("derived after JSON (-want +got):\n%s", diff)
	}
	if i, ok := back.Output("big"); !ok || i != len(back.Features)+2 || back.OutputType(i) != schemas.Bool || back.OutputName(i) != "big" {
		t.Errorf("Output(big) = %d, %v", i, ok)
	}
	if diff := cmp.Diff([]int{0, 1, 2}, back.StoredInputs([]int{2, len(back.Features) + 2})); diff != "" {
		t.Errorf("StoredInputs (-want +got):\n%s", diff)
	}
}

func TestDerivedErrors(t *testing.T) {
	for _, tc := range []struct{ derived, want string }{
		{`{name: r, expr: x_sum_1h / c_1hh}`, `t.yaml:12: derived[0].expr: unknown name "c_1hh" at column 12 (did you mean c_1h?)`},
		{`{name: c_1h, expr: c_1h + 1}`, `derived[0].name: duplicate feature name "c_1h" (first defined at line 7)`},
		{`{name: r, expr: later + 1}`, `unknown name "later"`},
		{`{name: r, expr: r + 1}`, `unknown name "r"`}, // no cycles: only earlier names
		{`{name: r, expr: s_last / c_1h}`, `/ needs numbers, got string and int64`},
		{`{name: r, expr: 1 + 2}`, `derived[0].expr: reads no feature`},
		{`{name: r, exp: c_1h}`, `derived[0].exp: unknown key (did you mean expr?)`},
		{`{name: R, expr: c_1h}`, `derived[0].name: bad name "R"`},
	} {
		t.Run(tc.derived, func(t *testing.T) {
			def := strings.SplitAfter(derivedSet, "derived:\n")[0] + "  - " + tc.derived + "\n"
			_, err := schemas.Parse("t.yaml", []byte(def))
			if err == nil || !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(derived: %s) = %v, want an ErrInvalid containing %q", tc.derived, err, tc.want)
			}
		})
	}
}
