package serving

import (
	"math"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
)

// TestAppendCompositeValue pins the JSON shapes of list and map values
// (serving/openapi.yaml: ListValue, CountsValue, QuantilesValue,
// HistogramValue), with the scalar conventions of the API inside them.
func TestAppendCompositeValue(t *testing.T) {
	it := schemas.ItemOf
	tests := []struct {
		v    schemas.Value
		want string
	}{
		{schemas.CompositeValue(schemas.List, 0, []schemas.Item{it(schemas.StringValue("a<b")), it(schemas.StringValue("c"))}), `["a\u003cb","c"]`},
		{schemas.CompositeValue(schemas.List, 0, []schemas.Item{it(schemas.Value{Type: schemas.Timestamp, Int: 1_000_000})}), `["1970-01-01T00:00:01Z"]`}, // fixed date: encoding only, nothing compares it with the clock
		{schemas.CompositeValue(schemas.Counts, 0, []schemas.Item{{Type: schemas.Int64, Int: 7, Count: 3}, {Type: schemas.Bool, Int: 1, Count: 1}}), `[{"value":7,"count":3},{"value":true,"count":1}]`},
		{schemas.CompositeValue(schemas.Quantiles, 0, []schemas.Item{{Type: schemas.Float64, Float: 1.5, Key: "p50"}, {Type: schemas.Float64, Float: math.Inf(1), Key: "p99.9"}}), `{"p50":1.5,"p99.9":"Infinity"}`},
		{schemas.CompositeValue(schemas.Histogram, 2, []schemas.Item{{Type: schemas.String, Str: "x", Count: 4}}), `{"buckets":{"x":4},"overflow":2}`},
		{schemas.CompositeValue(schemas.Histogram, 0, nil), `{"buckets":{},"overflow":0}`},
	}
	for _, tc := range tests {
		if got := string(appendValue(nil, tc.v)); got != tc.want {
			t.Errorf("appendValue(%v) = %s, want %s", tc.v, got, tc.want)
		}
	}
}
