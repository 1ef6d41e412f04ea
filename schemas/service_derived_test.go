package schemas

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const derivedService = validService + `derived:
  - {name: mean_per_view, expr: card_activity__amount_mean_24h / user_sessions__views_1h}
  - {name: busy, expr: "coalesce(mean_per_view, 0) > 10 or card_activity__txn_count_1h >= 5"}
`

func TestServiceDerived(t *testing.T) {
	svc, err := ParseService("svc.yaml", []byte(derivedService), serviceSets(t))
	if err != nil {
		t.Fatalf("ParseService error = %v", err)
	}
	cols := svc.FeatureColumns()
	wantCols := []Column{
		{"card_activity__txn_count_1h", Int64}, {"card_activity__amount_mean_24h", Float64},
		{"user_sessions__views_1h", Int64}, {"user_sessions__last_page", String},
	}
	if diff := cmp.Diff(wantCols, cols); diff != "" {
		t.Fatalf("FeatureColumns (-want +got):\n%s", diff)
	}
	if len(svc.Derived) != 2 || svc.Derived[0].Type != Float64 || svc.Derived[1].Type != Bool {
		t.Fatalf("derived = %+v, want mean_per_view float64 and busy bool", svc.Derived)
	}
	if diff := cmp.Diff([]int{0, 1, 2}, svc.Derived[1].Inputs); diff != "" {
		t.Errorf("busy's inputs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0, 1}, svc.DerivedEntries(0)); diff != "" {
		t.Errorf("mean_per_view's entries (-want +got):\n%s", diff)
	}
	if got := ServiceDerivedColumn(svc.Name, "busy"); got != "fraud_model__busy" {
		t.Errorf("column = %q", got)
	}

	for _, c := range []struct {
		name     string
		in       []Value // the four feature columns
		asOf     []int64
		want     []Value // mean_per_view, busy
		wantAsOf []int64
	}{
		{"values", []Value{Value{Type: Int64, Int: 2}, Value{Type: Float64, Float: 30}, Value{Type: Int64, Int: 2}, Value{Type: String, Str: "/"}}, []int64{0, 5, 0, 0},
			[]Value{Value{Type: Float64, Float: 15}, BoolValue(true)}, []int64{5, 5}},
		{"no views: division by zero is null", []Value{Value{Type: Int64, Int: 2}, Value{Type: Float64, Float: 30}, Value{Type: Int64, Int: 0}, {}}, []int64{0, 0, 0, 0},
			[]Value{{}, BoolValue(false)}, []int64{0, 0}},
		{"NOT_FOUND inputs", []Value{{}, {}, {}, {}}, []int64{0, 0, 0, 0},
			[]Value{{}, {}}, []int64{0, 0}},
	} {
		vals := append(append([]Value(nil), c.in...), Value{}, Value{})
		asOf := append(append([]int64(nil), c.asOf...), 0, 0)
		svc.EvalDerived(vals, asOf)
		if diff := cmp.Diff(c.want, vals[4:]); diff != "" {
			t.Errorf("%s: derived values (-want +got):\n%s", c.name, diff)
		}
		if diff := cmp.Diff(c.wantAsOf, asOf[4:]); diff != "" {
			t.Errorf("%s: derived as_of (-want +got):\n%s", c.name, diff)
		}
	}

	j, err := svc.MarshalJSON()
	if err != nil || !strings.Contains(string(j), `"derived":[{"name":"mean_per_view","expr":"card_activity__amount_mean_24h / user_sessions__views_1h","result_type":"float64"}`) {
		t.Errorf("JSON = %s, %v; want the derived features listed", j, err)
	}
}

func TestServiceDerivedRejects(t *testing.T) {
	for _, c := range []struct {
		name, derived, want string
	}{
		{"unknown column", `  - {name: x, expr: card_activity__txn_count_1 + 1}`,
			`svc.yaml:13: derived[0].expr: unknown name "card_activity__txn_count_1" at column 1 (did you mean card_activity__txn_count_1h?)`},
		{"feature not listed", `  - {name: x, expr: card_activity__merchants_7d}`,
			`svc.yaml:13: derived[0].expr: card_activity__merchants_7d is not among the service's features: list merchants_7d in the features of feature set card_activity to use it`},
		{"reads no feature", `  - {name: x, expr: 1 + 2}`, `svc.yaml:13: derived[0].expr: reads no feature`},
		{"type error", `  - {name: x, expr: user_sessions__last_page * 2}`, `svc.yaml:13: derived[0].expr:`},
		{"duplicate name", "  - {name: x, expr: user_sessions__views_1h}\n  - {name: x, expr: user_sessions__views_1h}",
			`svc.yaml:14: derived[1].name: duplicate feature name "x" (first defined at line 13)`},
		{"bad name", `  - {name: X, expr: user_sessions__views_1h}`, `svc.yaml:13: derived[0].name: bad name "X"`},
		{"missing expr", `  - {name: x}`, `svc.yaml:13: derived[0].expr: required key is missing`},
	} {
		_, err := ParseService("svc.yaml", []byte(validService+"derived:\n"+c.derived+"\n"), serviceSets(t))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want one containing %q", c.name, err, c.want)
		}
	}
	clash := strings.Replace(validService, "name: fraud_model", "name: card_activity", 1) + "derived:\n  - {name: txn_count_1h, expr: user_sessions__views_1h}\n"
	_, err := ParseService("svc.yaml", []byte(clash), serviceSets(t))
	if want := `svc.yaml:13: derived[0].expr: its column "card_activity__txn_count_1h" is also the column of the feature at line 6; rename it`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("column clash: error = %v, want one containing %q", err, want)
	}
}
