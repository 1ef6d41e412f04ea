package schemas

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseOpParams checks the parameters of last_k, first_k, top_k,
// approx_percentile and histogram: what loads and what is rejected, with
// file:line: field: reason.
func TestParseOpParams(t *testing.T) {
	const line = "  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}"
	valid := []struct {
		feature string
		want    Feature
	}{
		{"{name: f, op: first, field: merchant, window: 7d}", Feature{Op: OpFirst}},
		{"{name: f, op: last_k, field: merchant, k: 5, window: 7d}", Feature{Op: OpLastK, K: 5}},
		{"{name: f, op: first_k, field: ts, k: 100, window: 7d}", Feature{Op: OpFirstK, K: 100}},
		{"{name: f, op: top_k, field: merchant, k: 3, window: 7d}", Feature{Op: OpTopK, K: 3}},
		{"{name: f, op: approx_percentile, field: amount, percentiles: [0.5, 0.9, 0.999], window: 7d}", Feature{Op: OpApproxPercentile, Percentiles: []float64{0.5, 0.9, 0.999}}},
		{"{name: f, op: histogram, field: merchant, window: 7d}", Feature{Op: OpHistogram, Buckets: DefaultBuckets}},
		{"{name: f, op: histogram, field: merchant, buckets: 5, window: 7d}", Feature{Op: OpHistogram, Buckets: 5}},
	}
	for _, tc := range valid {
		fs, err := Parse("x.yaml", []byte(strings.Replace(validYAML, line, "  - "+tc.feature, 1)))
		if err != nil {
			t.Errorf("Parse(%s) = %v", tc.feature, err)
			continue
		}
		f, _ := fs.Feature("f")
		got := Feature{Op: f.Op, K: f.K, Percentiles: f.Percentiles, Buckets: f.Buckets}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("Parse(%s) feature mismatch (-want +got):\n%s", tc.feature, d)
		}
	}

	rejects := []struct {
		feature string
		want    []string
	}{
		{"{name: f, op: last_k, field: merchant, window: 7d}", []string{`x.yaml:17: features[2].k: required key is missing: last_k needs k, 1 to 100`}},
		{"{name: f, op: top_k, field: merchant, k: 0, window: 7d}", []string{`x.yaml:17: features[2].k: "0" is not a whole number from 1 to 100`}},
		{"{name: f, op: first_k, field: merchant, k: 101, window: 7d}", []string{`x.yaml:17: features[2].k: "101" is not a whole number from 1 to 100`}},
		{"{name: f, op: last_k, field: merchant, k: 2.5, window: 7d}", []string{`x.yaml:17: features[2].k: "2.5" is not a whole number from 1 to 100`}},
		{"{name: f, op: last, field: merchant, k: 5, window: 7d}", []string{`x.yaml:17: features[2].k: last takes no k (only last_k, first_k and top_k do)`}},
		{"{name: f, op: approx_percentile, field: amount, window: 7d}", []string{`x.yaml:17: features[2].percentiles: required key is missing: approx_percentile needs percentiles, such as [0.5, 0.9, 0.99]`}},
		{"{name: f, op: approx_percentile, field: amount, percentiles: [0.5, 1.5], window: 7d}", []string{`x.yaml:17: features[2].percentiles[1]: percentile "1.5" not in (0, 1) (write 0.9 for p90)`}},
		{"{name: f, op: approx_percentile, field: amount, percentiles: [90], window: 7d}", []string{`x.yaml:17: features[2].percentiles[0]: percentile "90" not in (0, 1) (write 0.9 for p90)`}},
		{"{name: f, op: approx_percentile, field: amount, percentiles: [0, 0.5], window: 7d}", []string{`x.yaml:17: features[2].percentiles[0]: percentile "0" not in (0, 1) (write 0.9 for p90)`}},
		{"{name: f, op: approx_percentile, field: amount, percentiles: [0.5, 0.50], window: 7d}", []string{`x.yaml:17: features[2].percentiles: percentile 0.5 listed twice (as p50)`}},
		{"{name: f, op: approx_percentile, field: amount, percentiles: [], window: 7d}", []string{`x.yaml:17: features[2].percentiles: 0 percentiles, want 1 to 20`}},
		{"{name: f, op: approx_percentile, field: amount, percentiles: 0.5, window: 7d}", []string{`x.yaml:17: features[2].percentiles: want a list, got a float`}},
		{"{name: f, op: approx_percentile, field: merchant, percentiles: [0.5], window: 7d}", []string{`x.yaml:17: features[2].field: approx_percentile cannot take field "merchant" of type string`}},
		{"{name: f, op: mean, field: amount, percentiles: [0.5], window: 7d}", []string{`x.yaml:17: features[2].percentiles: mean takes no percentiles (only approx_percentile does)`}},
		{"{name: f, op: histogram, field: amount, window: 7d}", []string{`x.yaml:17: features[2].field: histogram cannot take field "amount" of type float64`}},
		{"{name: f, op: histogram, field: merchant, buckets: 1001, window: 7d}", []string{`x.yaml:17: features[2].buckets: "1001" is not a whole number from 1 to 1000`}},
		{"{name: f, op: top_k, field: merchant, k: 3, buckets: 4, window: 7d}", []string{`x.yaml:17: features[2].buckets: top_k takes no buckets (only histogram does)`}},
	}
	for _, tc := range rejects {
		_, err := Parse("x.yaml", []byte(strings.Replace(validYAML, line, "  - "+tc.feature, 1)))
		if err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%s) = %v, want %q", tc.feature, err, tc.want)
			continue
		}
		if d := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); d != "" {
			t.Errorf("Parse(%s) error mismatch (-want +got):\n%s", tc.feature, d)
		}
	}
}

// TestOpParamsJSON checks that the parameters survive the JSON form that
// pipelines ship to their workers.
func TestOpParamsJSON(t *testing.T) {
	in := strings.Replace(validYAML, "  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}", `  - {name: l, op: last_k, field: merchant, k: 5, window: 7d}
  - {name: p, op: approx_percentile, field: amount, percentiles: [0.5, 0.99], window: 7d}
  - {name: h, op: histogram, field: merchant, buckets: 7, window: 7d}`, 1)
	fs, err := Parse("x.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(fs)
	if err != nil {
		t.Fatal(err)
	}
	var back FeatureSet
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(fs.Features, back.Features); d != "" {
		t.Errorf("features after a JSON round trip differ (-loaded +decoded):\n%s", d)
	}
	if !strings.Contains(string(b), `"result_type":"list\u003cstring\u003e"`) || !strings.Contains(string(b), `"percentiles":[0.5,0.99]`) {
		t.Errorf("JSON %s lacks the composite result types", b)
	}
}
