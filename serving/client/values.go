package client

import (
	"encoding/json"
	"strconv"
)

// The typed views of list and map values (serving/openapi.yaml:
// ListValue, CountsValue, QuantilesValue, HistogramValue). Their elements
// are typed as Value.Value is: json.Number, string, bool.

// Counted is one entry of a top_k value.
type Counted struct {
	Value any   // the field's value
	Count int64 // how often it occurs in the window (a lower bound, see top_k)
}

// Histogram is a histogram value: the count per bucket and the count of
// the values in no bucket.
type Histogram struct {
	Buckets  map[string]int64
	Overflow int64
}

// List returns a last_k or first_k value: the field's values in order.
func (v Value) List() ([]any, bool) {
	l, ok := v.Value.([]any)
	return l, ok
}

// Counts returns a top_k value: the most frequent values, highest count
// first.
func (v Value) Counts() ([]Counted, bool) {
	l, ok := v.Value.([]any)
	if !ok {
		return nil, false
	}
	out := make([]Counted, len(l))
	for i, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, false
		}
		n, ok := int64Of(m["count"])
		if !ok {
			return nil, false
		}
		out[i] = Counted{Value: m["value"], Count: n}
	}
	return out, true
}

// Quantiles returns an approx_percentile value: percentile name ("p50",
// "p99.9") → value. Non-finite values come as the strings "NaN",
// "Infinity" and "-Infinity" and are decoded.
func (v Value) Quantiles() (map[string]float64, bool) {
	m, ok := v.Value.(map[string]any)
	if !ok {
		return nil, false
	}
	out := make(map[string]float64, len(m))
	for k, e := range m {
		f, ok := Value{Value: e}.Float64()
		if !ok {
			return nil, false
		}
		out[k] = f
	}
	return out, true
}

// Histogram returns a histogram value.
func (v Value) Histogram() (Histogram, bool) {
	m, ok := v.Value.(map[string]any)
	if !ok {
		return Histogram{}, false
	}
	b, ok := m["buckets"].(map[string]any)
	if !ok {
		return Histogram{}, false
	}
	h := Histogram{Buckets: make(map[string]int64, len(b))}
	for k, e := range b {
		n, ok := int64Of(e)
		if !ok {
			return Histogram{}, false
		}
		h.Buckets[k] = n
	}
	if h.Overflow, ok = int64Of(m["overflow"]); !ok {
		return Histogram{}, false
	}
	return h, true
}

// int64Of returns an integer decoded as a json.Number (or a float64, for
// values decoded without UseNumber).
func int64Of(x any) (int64, bool) {
	switch n := x.(type) {
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case float64:
		return int64(n), float64(int64(n)) == n
	case string:
		i, err := strconv.ParseInt(n, 10, 64)
		return i, err == nil
	}
	return 0, false
}
