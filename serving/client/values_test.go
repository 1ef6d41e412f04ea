package client

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCompositeValues decodes the list and map shapes of
// serving/openapi.yaml as the client does (numbers as json.Number).
func TestCompositeValues(t *testing.T) {
	decode := func(s string) Value {
		t.Helper()
		d := json.NewDecoder(bytes.NewReader([]byte(s)))
		d.UseNumber()
		var v Value
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	l, ok := decode(`{"value": ["a", "b"], "status": "PRESENT"}`).List()
	if d := cmp.Diff([]any{"a", "b"}, l); !ok || d != "" {
		t.Errorf("List() mismatch (-want +got):\n%s", d)
	}
	c, ok := decode(`{"value": [{"value": "a", "count": 3}, {"value": 7, "count": 1}], "status": "PRESENT"}`).Counts()
	if d := cmp.Diff([]Counted{{"a", 3}, {json.Number("7"), 1}}, c); !ok || d != "" {
		t.Errorf("Counts() mismatch (-want +got):\n%s", d)
	}
	q, ok := decode(`{"value": {"p50": 1.5, "p99.9": "Infinity"}, "status": "PRESENT"}`).Quantiles()
	if !ok || q["p50"] != 1.5 || q["p99.9"] <= 1e308 {
		t.Errorf("Quantiles() = %v, %v", q, ok)
	}
	h, ok := decode(`{"value": {"buckets": {"x": 2}, "overflow": 5}, "status": "PRESENT"}`).Histogram()
	if d := cmp.Diff(Histogram{Buckets: map[string]int64{"x": 2}, Overflow: 5}, h); !ok || d != "" {
		t.Errorf("Histogram() mismatch (-want +got):\n%s", d)
	}
	for _, s := range []string{`{"value": null, "status": "NOT_FOUND"}`, `{"value": 3, "status": "PRESENT"}`} {
		v := decode(s)
		if _, ok := v.List(); ok {
			t.Errorf("%s: List() ok", s)
		}
		if _, ok := v.Counts(); ok {
			t.Errorf("%s: Counts() ok", s)
		}
		if _, ok := v.Quantiles(); ok {
			t.Errorf("%s: Quantiles() ok", s)
		}
		if _, ok := v.Histogram(); ok {
			t.Errorf("%s: Histogram() ok", s)
		}
	}
}
