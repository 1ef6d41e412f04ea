package schemas_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
)

// exprSet declares one field of each type; its events feed the filter tests.
const exprSet = `
name: t
entity: {name: thing, key: id}
event_time: ts
fields: {id: string, status: string, n: int64, x: float64, ok: bool, ts: timestamp, at2: timestamp}
features:
  - {name: c_1h, op: count, window: 1h}
`

// exprEvent builds an event of exprSet; a nil value is null.
func exprEvent(set *schemas.FeatureSet, vals map[string]any) schemas.Event {
	ev := schemas.Event{Key: "k", Time: 1, Values: make([]schemas.Value, len(set.Fields))}
	for i, f := range set.Fields {
		switch v := vals[f.Name].(type) {
		case string:
			ev.Values[i] = schemas.StringValue(v)
		case int:
			if f.Type == schemas.Timestamp {
				ev.Values[i] = schemas.Value{Type: schemas.Timestamp, Int: int64(v)}
			} else {
				ev.Values[i] = schemas.Int64Value(int64(v))
			}
		case float64:
			ev.Values[i] = schemas.Float64Value(v)
		case bool:
			ev.Values[i] = schemas.BoolValue(v)
		}
	}
	return ev
}

func compileWhere(t testing.TB, set *schemas.FeatureSet, where string) (*schemas.FeatureSet, error) {
	t.Helper()
	def := strings.Replace(exprSet, "window: 1h}", "window: 1h, where: '"+strings.ReplaceAll(where, "'", "''")+"'}", 1)
	return schemas.Parse("t.yaml", []byte(def))
}

func TestFilterEval(t *testing.T) {
	base := schemastest.MustParse(t, exprSet)
	row := map[string]any{"id": "k", "status": "declined", "n": 5, "x": 2.5, "ok": false, "ts": 100, "at2": 200}
	nulls := map[string]any{"id": "k", "ts": 100}
	for _, tc := range []struct {
		where string
		vals  map[string]any
		want  bool
	}{
		{`status == "declined"`, row, true},
		{`status == 'declined'`, row, true},
		{`status != "declined"`, row, false},
		{`status == "declined"`, nulls, false}, // null == x is null: dropped
		{`status != "declined"`, nulls, false},
		{`not (status == "declined")`, nulls, false}, // not null is null
		{`status is null`, nulls, true},
		{`status is not null`, nulls, false},
		{`status is not null`, row, true},
		{`n > 4 and x < 3`, row, true},
		{`n > 5 or x < 2`, row, false},
		{`n >= 5 and n <= 5`, row, true},
		{`n > 4.5`, row, true}, // int64 with float64
		{`x == 2.5`, row, true},
		{`n * 2 + 1 == 11`, row, true},
		{`n / 2 == 2.5`, row, true}, // / is float64
		{`n / 0 is null`, row, true},
		{`x - 2.5 == 0`, row, true},
		{`-n == -5`, row, true},
		{`not ok`, row, true},
		{`ok == false`, row, true},
		{`ok`, nulls, false},
		{`not ok`, nulls, false},
		{`ok or n is null`, nulls, true},       // null or true = true
		{`ok and n is null`, nulls, false},     // null and true = null
		{`ok and n is not null`, nulls, false}, // null and false = false
		{`not (ok and n is not null)`, nulls, true},
		{`status in ("declined", "refused")`, row, true},
		{`status not in ("declined", "refused")`, row, false},
		{`status in ("declined")`, nulls, false},
		{`n in (1, 5, 7)`, row, true},
		{`n in (1.5, 5.0)`, row, true},
		{`x in (2.5, -1)`, row, true},
		{`n in (-5)`, row, false},
		{`ts < at2`, row, true},
		{`ts == at2`, row, false},
		{`status < "e" and status > "d"`, row, true},
		{`coalesce(n, 0) == 0`, nulls, true},
		{`coalesce(n, 0) == 5`, row, true},
		{`coalesce(x, n, 1) == 1`, nulls, true},
		{`coalesce(status, "none") == "none"`, nulls, true},
		{`(n > 1 or x > 100) and not (status == "ok")`, row, true},
		{`n + 9223372036854775807 is null`, row, true}, // int64 overflow
		{`x * 1e308 * 10 is null`, row, true},          // not finite
	} {
		t.Run(tc.where, func(t *testing.T) {
			set, err := compileWhere(t, base, tc.where)
			if err != nil {
				t.Fatalf("Parse(where: %s): %v", tc.where, err)
			}
			f := set.Features[0]
			if got := f.Keeps(exprEvent(set, tc.vals)); got != tc.want {
				t.Errorf("Keeps(%v) with where %q = %v, want %v", tc.vals, tc.where, got, tc.want)
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	base := schemastest.MustParse(t, exprSet)
	for _, tc := range []struct{ where, want string }{
		{`stauts == "x"`, `t.yaml:7: features[0].where: unknown name "stauts" at column 1 (did you mean status?)`},
		{`status == 1`, `cannot compare string with int64 at column 8`},
		{`status = "x"`, `unexpected "=" at column 8 (use == to compare)`},
		{`n && ok`, `use and, or, not`},
		{`n + 1`, `expression has type int64, want bool`},
		{`status == null`, `null is not a value here`},
		{`ok < true`, `bools take == and != only, not <`},
		{`not n`, `not needs a bool operand, got int64`},
		{`ok and n`, `and needs bool operands, got bool and int64`},
		{`status + 1 > 0`, `+ needs numbers, got string and int64`},
		{`status in (n)`, `in takes a list of literals`},
		{`status in ("a", 1)`, `cannot compare string with int64`},
		{`"unterminated == status`, `unterminated string at column 1`},
		{`(n > 1`, `want ")", got end of expression at column 7`},
		{`n > 1)`, `unexpected ")" at column 6`},
		{`n > 99999999999999999999`, `bad integer`},
		{`coalesce(n, "x") == 1`, `coalesce needs arguments of one type`},
		{`ts > 5`, `cannot compare timestamp with int64`},
		{` `, `empty expression`},
		{`n > 1 n`, `unexpected "n"`},
	} {
		t.Run(tc.where, func(t *testing.T) {
			_, err := compileWhere(t, base, tc.where)
			if err == nil || !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(where: %s) = %v, want an ErrInvalid containing %q", tc.where, err, tc.want)
			}
		})
	}
}

// TestFilterJSON checks that a filter survives the JSON form pipelines ship
// their definition in.
func TestFilterJSON(t *testing.T) {
	set, err := compileWhere(t, nil, `status == "declined" and n > 1`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := set.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back schemas.FeatureSet
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatalf("UnmarshalJSON(%s): %v", b, err)
	}
	if back.Features[0].Where != set.Features[0].Where {
		t.Errorf("where after JSON = %q, want %q", back.Features[0].Where, set.Features[0].Where)
	}
	for _, n := range []int{0, 2} {
		ev := exprEvent(&back, map[string]any{"status": "declined", "n": n})
		if got, want := back.Features[0].Keeps(ev), n > 1; got != want {
			t.Errorf("after JSON, Keeps(n=%d) = %v, want %v", n, got, want)
		}
	}
}

// BenchmarkFilter measures a filter per event against the baseline of the
// same loop with no filter, and checks it does not allocate.
func BenchmarkFilter(b *testing.B) {
	for _, tc := range []struct{ name, where string }{
		{"none", ""},
		{"string_eq", `status == "declined"`},
		{"and_or", `(status == "declined" or status == "refused") and x > 100 and ok is not null`},
		{"in", `status in ("declined", "refused", "fraud")`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			def := exprSet
			if tc.where != "" {
				def = strings.Replace(exprSet, "window: 1h}", "window: 1h, where: '"+tc.where+"'}", 1)
			}
			set := schemastest.MustParse(b, def)
			evs := []schemas.Event{
				exprEvent(set, map[string]any{"status": "declined", "x": 150.0, "ok": true}),
				exprEvent(set, map[string]any{"status": "approved", "x": 15.0, "ok": true}),
				exprEvent(set, map[string]any{"x": 150.0}),
			}
			f := &set.Features[0]
			kept := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if f.Keeps(evs[i%len(evs)]) {
					kept++
				}
			}
			if kept == 0 && tc.where == "" {
				b.Fatal("nothing kept")
			}
		})
	}
}

// TestFilterNoAlloc checks the per-event promise: evaluating a filter on a
// decoded event allocates nothing.
func TestFilterNoAlloc(t *testing.T) {
	set, err := compileWhere(t, nil, `(status == "declined" or status in ("a", "b")) and coalesce(x, 0) * 2 > n and ok is not null`)
	if err != nil {
		t.Fatal(err)
	}
	ev := exprEvent(set, map[string]any{"status": "declined", "x": 150.0, "n": 3, "ok": true})
	f := &set.Features[0]
	if !f.Keeps(ev) {
		t.Fatal("Keeps = false, want true")
	}
	if n := testing.AllocsPerRun(100, func() { f.Keeps(ev) }); n != 0 {
		t.Errorf("Keeps allocates %v times per event, want 0", n)
	}
}
